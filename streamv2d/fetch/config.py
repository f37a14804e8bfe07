"""Fetch settings: one plain, picklable record shared by every fetcher."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Union


@dataclass
class FetchConfig:
    """How bytes are fetched. Defaults suit a shared cluster: bounded size, time and retries.

    ``yt_dlp``: ``"auto"`` uses yt-dlp for known platform hosts and for http pages that turn out to be
    HTML rather than media; ``"always"`` or ``"never"`` force it. ``yt_dlp_options`` are passed
    to ``yt_dlp.YoutubeDL`` unchanged (``format``, ``cookiefile``, ``max_filesize``, …).
    """

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_seconds: float = 300.0         # whole-download deadline, against trickling servers
    retries: int = 2
    backoff: float = 0.5               # seconds before the first retry; doubles each time, with jitter
    max_bytes: int = 1 << 30           # larger bodies are abandoned mid-stream
    threads: int = 8                   # concurrent fetches inside each worker
    user_agent: str = "streamv2d/0.1 (+https://github.com/streamv2d/streamv2d)"
    headers: Dict[str, str] = field(default_factory=dict)
    yt_dlp: str = "auto"
    yt_dlp_options: Dict[str, Any] = field(default_factory=dict)
    storage_options: Dict[str, Any] = field(default_factory=dict)

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
        config = cls(**dict(value))
        if config.yt_dlp not in ("auto", "always", "never"):
            raise ValueError(f"fetch yt_dlp must be 'auto', 'always' or 'never', not {config.yt_dlp!r}")
        return config


def merged(config: FetchConfig, **overrides: Optional[Any]) -> FetchConfig:
    """A copy of ``config`` with the non-None ``overrides`` applied."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FetchConfig(**values)
