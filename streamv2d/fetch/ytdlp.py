"""Platform pages (and HTML pages that embed a video) through yt-dlp, used as a library, never a shell."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlparse

from ..errors import FetchError
from .body import BodyReader
from .config import FetchConfig
from .policy import Retryable, joined, within_deadline, with_retries

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


class _Abandoned(Exception):
    """Raised from a progress hook to stop yt-dlp: the body passed ``max_bytes`` or the deadline passed."""


def ydl_options(config: FetchConfig, directory: str, stop: Optional[Callable[[dict], None]] = None) -> Dict[str, Any]:
    """Our safe defaults under the user's ``yt_dlp_options`` (which win; unsafe ones were refused by the config):
    single-file formats that need no ffmpeg merge, the size cap and socket timeout from the fetch config, quiet, no
    playlists, no cache outside ``directory``; ``stop`` is called with each progress report and may raise."""
    options: Dict[str, Any] = {
        "format": "best[ext=mp4]/best",
        "max_filesize": config.max_bytes,
        "socket_timeout": config.read_timeout,
        "retries": config.retries,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "cachedir": False,
        "http_headers": {"User-Agent": config.user_agent, **config.headers},
        "logger": _QuietLogger(),   # yt-dlp's ERROR lines would land in progress bars; the error is re-raised
    }
    options.update(config.yt_dlp_options)
    options["outtmpl"] = os.path.join(directory, "media.%(ext)s")   # always ours: bytes never leave the temp dir
    options["paths"] = {"home": directory, "temp": directory}
    if stop is not None:
        options["progress_hooks"] = [*options.get("progress_hooks", ()), stop]
    return options


def fetch_with_ytdlp(url: str, config: FetchConfig) -> bytes:
    """Download ``url`` through yt-dlp into a private temporary directory and return the media bytes, under the
    fetch policy: retries, ``max_seconds`` per attempt (even when yt-dlp blocks), ``max_bytes``, the memory budget;
    the directory is removed on every path."""
    host = urlparse(url).netloc

    def attempt() -> bytes:
        directory = tempfile.mkdtemp(prefix="streamv2d-ytdlp-")
        try:
            return within_deadline(lambda cancelled: _download(url, config, directory, cancelled), config,
                                   f"yt-dlp {host}")
        finally:   # also when the download thread is abandoned: it fails writing into the removed folder
            shutil.rmtree(directory, ignore_errors=True)

    return with_retries(attempt, config)


def _download(url: str, config: FetchConfig, directory: str, cancelled: threading.Event) -> bytes:
    import yt_dlp

    host = urlparse(url).netloc
    deadline = time.monotonic() + config.max_seconds

    def stop(progress: dict) -> None:
        if (progress.get("downloaded_bytes") or 0) > config.max_bytes:
            raise _Abandoned("body exceeds max_bytes")
        if time.monotonic() > deadline or cancelled.is_set():
            raise _Abandoned("download exceeded max_seconds")

    try:
        with yt_dlp.YoutubeDL(ydl_options(config, directory, stop)) as ydl:
            info = ydl.extract_info(url, download=True)
    except _Abandoned as exc:
        raise _abandoned(str(exc), host, config) from None
    except yt_dlp.utils.DownloadError as exc:
        if isinstance(exc.exc_info[1], _Abandoned):
            raise _abandoned(str(exc.exc_info[1]), host, config) from None
        raise _download_error(str(exc), host) from None
    path = _downloaded_file(info, directory)
    if path is None:
        raise FetchError("yt-dlp: no file (over max_filesize, or no downloadable format)", permanent=True, detail=host)
    with open(path, "rb") as f:
        return BodyReader(config, deadline, cancelled).read_all(f.read, f"yt-dlp {host}", os.path.getsize(path))


def _downloaded_file(info: Optional[dict], directory: str) -> Optional[str]:
    """The media file yt-dlp wrote into ``directory`` (not a sidecar such as ``.info.json``), or None."""
    for download in (info or {}).get("requested_downloads") or ():
        path = download.get("filepath")
        if path and os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == os.path.abspath(directory):
            return path
    return None


def _abandoned(category: str, host: str, config: FetchConfig) -> FetchError:
    """The failure of a download our progress hook stopped: over the cap (permanent) or past the deadline."""
    if category == "body exceeds max_bytes":
        return FetchError(category, permanent=True, detail=f"yt-dlp {host}; over {config.max_bytes} bytes")
    return Retryable(category, detail=f"yt-dlp {host}; max_seconds={config.max_seconds}")


#: yt-dlp error texts and the category each one means, with whether it is permanent.
_YT_DLP_ERRORS = (("Unsupported URL", "yt-dlp: unsupported URL", True),
                  ("HTTP Error 404", "yt-dlp: HTTP 404", True), ("HTTP Error 410", "yt-dlp: HTTP 410", True),
                  ("HTTP Error 4", "yt-dlp: HTTP 4xx", False), ("HTTP Error 5", "yt-dlp: HTTP 5xx", False),
                  ("Private", "yt-dlp: video not available", True),
                  ("not available", "yt-dlp: video not available", True),
                  ("timed out", "yt-dlp: read timeout", False),
                  ("Connection refused", "yt-dlp: connection refused", False))


def _download_error(message: str, host: str) -> FetchError:
    """A stable category for a yt-dlp error; its text (which varies with the video) goes to the detail."""
    message = message.replace("ERROR: ", "").strip()
    category, permanent = next(((c, p) for text, c, p in _YT_DLP_ERRORS if text in message),
                               ("yt-dlp: download failed", False))
    return FetchError(category, permanent=permanent, detail=joined(host, message[:300]))
