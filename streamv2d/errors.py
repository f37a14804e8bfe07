"""Exceptions raised to the user; per-sample problems are failure records, never these."""


class StreamV2DError(Exception):
    """Base class of streamv2d's errors."""


class SourceError(StreamV2DError, ValueError):
    """The source cannot be used: missing file or column, unreadable table, unknown format, no rows."""


class FetchError(StreamV2DError):
    """One fetch failed; ``permanent`` says whether retrying later can help (404 vs timeout). The message is a
    stable category ("HTTP 404", "read timeout") that groups in stats; ``detail`` holds what varies (host, sizes)."""

    def __init__(self, message: str, *, permanent: bool = False, detail: str = ""):
        super().__init__(message)
        self.permanent = permanent
        self.detail = detail
