"""Exceptions raised to the user; per-sample problems are failure records, never these."""


class StreamV2DError(Exception):
    """Base class of streamv2d's errors."""


class SourceError(StreamV2DError, ValueError):
    """The source cannot be used: missing file or column, unreadable table, unknown format, no rows."""


class FetchError(StreamV2DError):
    """One fetch failed; ``permanent`` says whether retrying later can help (404 vs timeout)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent
