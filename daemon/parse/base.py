"""What every reader shares: the errors it raises, each with the short `reason` code that error
records and metrics use."""


class ParseError(ValueError):
    """A file that cannot be turned into regions; the message says why."""

    reason = "parse"


class EmptySpectrum(ParseError):
    """A file or message whose regions hold no signal (all counts equal, or none)."""

    reason = "empty"


class UnsupportedFormat(ParseError):
    """A file of a format whose reader is not installed (the message names the extra)."""

    reason = "unsupported"


def error_reason(err: BaseException) -> str:
    """The reason code of a file that was refused: `io`, a ParseError's own (`parse`, `empty`,
    `unsupported`), `parse` for another ValueError, `internal` for anything else."""
    if isinstance(err, OSError):
        return "io"
    if isinstance(err, ValueError):
        return getattr(err, "reason", "parse")
    return "internal"
