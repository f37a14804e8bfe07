"""Fetch settings: one plain, picklable record shared by every fetcher, checked when it is made."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Union

from ..decode.media import MAX_PIXELS
from .trust import unsafe_yt_dlp_options

YT_DLP_MODES = ("auto", "always", "never")


@dataclass
class FetchConfig:
    """How bytes are fetched. Defaults suit a shared cluster: bounded size, time, memory and retries, and URL
    tables trusted with nothing but the network.

    Limits apply to every scheme (http(s), remote fsspec stores, yt-dlp): ``connect_timeout`` and
    ``read_timeout`` per network wait, ``max_seconds`` per download attempt, ``max_bytes`` per body,
    ``retries`` with ``backoff``. ``max_bytes_in_flight`` bounds the bytes all of a process's downloads hold
    together: 8 threads each buffering a 256 MiB body would need 2 GiB; with the budget, a worker's bodies stay
    under 512 MiB whatever the input, so its peak RSS stays under 1 GB (torch and PyAV take ~350 MB).
    ``max_bytes`` (256 MiB, about 7 minutes of 5 Mb/s 1080p) bounds one body; raise both for long videos.
    Sizes accept ``"50MB"``, ``"2GiB"`` or bytes; numbers may be given as strings (``"20"``) from YAML.

    ``allow_local_files`` lets URL tables name local paths and ``file://`` URLs; ``allow_url_chains`` lets them
    name fsspec chains (``simplecache::s3://…``; never over http(s)), their cache written to a private temp folder
    removed after each fetch. Both are off: a table from elsewhere must not read this machine's files.
    ``allow_pickle_members`` lets tar sources pass members webdataset would unpickle (``.pth``, ``.pyd``, …);
    ``max_pixels`` (8K UHD) refuses, from the stream header, video whose frames are larger.

    ``yt_dlp``: ``"auto"`` uses yt-dlp for known platform hosts and for http pages that turn out to be
    HTML rather than media; ``"always"`` or ``"never"`` force it. ``yt_dlp_options`` are passed
    to ``yt_dlp.YoutubeDL`` (``format``, ``cookiefile``, ``max_filesize``, …); options that run commands or write
    outside our temp folder (``postprocessors`` of kind Exec, ``external_downloader``, ``outtmpl``, ``paths``,
    ``download_archive``, …) are refused unless ``unsafe_yt_dlp_options`` is true.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_seconds: float = 300.0         # whole-download deadline, against trickling servers
    retries: int = 2
    backoff: float = 0.5               # seconds before the first retry; doubles each time, with jitter
    max_bytes: int = 256 << 20         # larger bodies are abandoned mid-stream
    max_bytes_in_flight: int = 512 << 20   # all bodies being downloaded by one process, together
    threads: int = 8                   # concurrent fetches inside each worker
    user_agent: str = "streamv2d/0.1 (+https://github.com/streamv2d/streamv2d)"
    headers: Dict[str, str] = field(default_factory=dict)
    max_pixels: int = MAX_PIXELS       # largest video frame decoded, read from the stream header first
    allow_local_files: bool = False
    allow_url_chains: bool = False
    allow_pickle_members: bool = False
    yt_dlp: str = "auto"
    yt_dlp_options: Dict[str, Any] = field(default_factory=dict)
    unsafe_yt_dlp_options: bool = False
    storage_options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "max_seconds"):
            setattr(self, name, _number(name, getattr(self, name), float, "a number of seconds > 0", minimum=0.0))
        self.backoff = _number("backoff", self.backoff, float, "a number of seconds >= 0", minimum=0.0, strict=False)
        self.retries = _number("retries", self.retries, int, "an integer >= 0", minimum=0, strict=False)
        self.threads = _number("threads", self.threads, int, "an integer >= 1", minimum=1, strict=False)
        self.max_bytes = _size("max_bytes", self.max_bytes)
        self.max_bytes_in_flight = _size("max_bytes_in_flight", self.max_bytes_in_flight)
        if self.max_bytes > self.max_bytes_in_flight:
            raise ValueError(f"fetch.max_bytes={self.max_bytes} exceeds fetch.max_bytes_in_flight="
                             f"{self.max_bytes_in_flight}: one body must fit in the process budget; raise both")
        self.max_pixels = _number("max_pixels", self.max_pixels, int, "an integer >= 1 (pixels a frame)", minimum=1,
                                  strict=False)
        for name in ("allow_local_files", "allow_url_chains", "allow_pickle_members", "unsafe_yt_dlp_options"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"fetch.{name}={getattr(self, name)!r}: must be true or false")
        for name in ("headers", "yt_dlp_options", "storage_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"fetch.{name}={getattr(self, name)!r}: must be a mapping")
        if self.yt_dlp not in YT_DLP_MODES:
            raise ValueError(f"fetch.yt_dlp={self.yt_dlp!r}: must be 'auto', 'always' or 'never'")
        unsafe = unsafe_yt_dlp_options(self.yt_dlp_options)
        if unsafe and not self.unsafe_yt_dlp_options:
            option, why = unsafe[0]
            raise ValueError(f"fetch.yt_dlp_options {option} refused: it {why}; set fetch.unsafe_yt_dlp_options: "
                             "true if this config is trusted")

    @classmethod
    def from_any(cls, value: Union["FetchConfig", Mapping[str, Any], None]) -> "FetchConfig":
        """Accept a FetchConfig, a dict (from YAML) or None; unknown keys are an error, not ignored."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown fetch option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(value))


def merged(config: FetchConfig, **overrides: Optional[Any]) -> FetchConfig:
    """A copy of ``config`` with the non-None ``overrides`` applied."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FetchConfig(**values)


def _number(name: str, value: Any, kind: type, allowed: str, minimum: float, strict: bool = True) -> Any:
    """``value`` as ``kind`` (a numeric string like ``"20"`` is accepted), at least ``minimum`` (above it when
    ``strict``); anything else is a one-line ValueError naming the setting."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = kind(value.strip()) if isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(f"fetch.{name}={value!r}: must be {allowed}")
    return number


def _size(name: str, value: Any) -> int:
    """Bytes from an int or a size like ``"50MB"``/``"2GiB"``, at least 1."""
    from ..cache.evict import parse_size   # lazily: the cache package imports the pipeline, which imports us

    try:
        size = None if isinstance(value, (bool, float)) else parse_size(value)
    except ValueError:
        size = None
    if size is None or size < 1:
        raise ValueError(f"fetch.{name}={value!r}: must be a size in bytes >= 1, like 50000000, '50MB' or '2GiB'")
    return size
