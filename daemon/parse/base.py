"""What every reader shares: the error it raises."""


class ParseError(ValueError):
    """A file that cannot be turned into regions; the message says why."""
