"""What every reader shares: the errors it raises, each with the short `reason` code that error
records and metrics use."""


class ParseError(ValueError):
    """A file that cannot be turned into regions; the message says why."""

    reason = "parse"


class EmptySpectrum(ParseError):
    """A file or message whose regions hold no signal (all counts equal, or none)."""

    reason = "empty"
