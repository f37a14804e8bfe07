"""Platform pages (and HTML pages that embed a video) through yt-dlp, used as a library, never a shell."""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict

from ..errors import FetchError
from .config import FetchConfig

log = logging.getLogger("streamv2d")

#: Hosts whose pages are never direct media; ``yt_dlp="auto"`` sends them to yt-dlp straight away.
PLATFORM_HOSTS = ("youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "tiktok.com", "twitch.tv",
                  "facebook.com", "instagram.com", "x.com", "twitter.com", "bilibili.com")


def is_platform_url(host: str) -> bool:
    host = host.lower().split(":")[0]
    return any(host == h or host.endswith("." + h) for h in PLATFORM_HOSTS)


class _QuietLogger:
    """yt-dlp's messages, sent to the ``streamv2d`` logger at debug level."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    info = warning = error = debug


def ydl_options(config: FetchConfig, directory: str) -> Dict[str, Any]:
    """Our safe defaults under the user's ``yt_dlp_options`` (which win): single-file formats that need no
    ffmpeg merge, the size cap and socket timeout from the fetch config, quiet, no playlists."""
    options: Dict[str, Any] = {
        "format": "best[ext=mp4]/best",
        "max_filesize": config.max_bytes,
        "socket_timeout": config.read_timeout,
        "retries": config.retries,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "http_headers": {"User-Agent": config.user_agent, **config.headers},
        "logger": _QuietLogger(),   # yt-dlp's ERROR lines would land in progress bars; the error is re-raised
    }
    options.update(config.yt_dlp_options)
    options["outtmpl"] = os.path.join(directory, "media.%(ext)s")   # always ours: bytes never leave the temp dir
    options["paths"] = {"home": directory, "temp": directory}
    return options


def fetch_with_ytdlp(url: str, config: FetchConfig) -> bytes:
    """Download ``url`` through yt-dlp into a private temporary directory and return the media bytes."""
    try:
        import yt_dlp
    except ImportError as exc:  # pragma: no cover - yt-dlp is a core dependency
        raise FetchError("yt-dlp is not installed", permanent=True) from exc
    with tempfile.TemporaryDirectory(prefix="streamv2d-ytdlp-") as directory:
        try:
            with yt_dlp.YoutubeDL(ydl_options(config, directory)) as ydl:
                ydl.download([url])
        except yt_dlp.utils.DownloadError as exc:
            message = str(exc).replace("ERROR: ", "").strip()
            permanent = any(s in message for s in ("Unsupported URL", "HTTP Error 4", "not available", "Private"))
            raise FetchError(f"yt-dlp: {message[:300]}", permanent=permanent) from None
        files = [f for f in os.listdir(directory) if f.startswith("media.") and not f.endswith((".part", ".ytdl"))]
        if not files:
            raise FetchError("yt-dlp produced no file (over max_filesize, or no downloadable format)", permanent=True)
        path = os.path.join(directory, files[0])
        if os.path.getsize(path) > config.max_bytes:
            raise FetchError(f"yt-dlp download exceeds max_bytes={config.max_bytes}", permanent=True)
        with open(path, "rb") as f:
            return f.read()
