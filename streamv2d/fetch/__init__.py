"""Fetch: turn a row's URL into media bytes, or into a counted failure record."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlparse

import fsspec

from ..errors import FetchError
from ..sample import FAILED_TO_DOWNLOAD, SUCCESS, Sample, mark_failed
from .body import BodyReader
from .config import FetchConfig, merged
from .http import HttpFetcher
from .policy import joined, network_failure, with_retries, within_deadline
from .sniff import looks_like_html, sniff_container
from .trust import CACHING, check_url, protocols
from .ytdlp import fetch_with_ytdlp, is_platform_url


class Fetcher:
    """Routes a URL to http, yt-dlp or fsspec under one policy (trust, time, size, memory, retries), and checks
    that what came back is media."""

    def __init__(self, config: FetchConfig):
        self.config = config
        self.http = HttpFetcher(config)

    def fetch(self, url: str) -> Tuple[bytes, str]:
        """``(media bytes, container extension)``; raises :class:`FetchError`."""
        if not url or not isinstance(url, str):
            raise FetchError("missing url", permanent=True, detail=repr(url)[:100])
        cfg = self.config
        if check_url(url, cfg.allow_local_files, cfg.allow_url_chains) == "http":
            return self._fetch_http(url)
        return _checked(self._read_fsspec(url))

    def _fetch_http(self, url: str) -> Tuple[bytes, str]:
        mode = self.config.yt_dlp
        if mode == "always" or (mode == "auto" and is_platform_url(_host(url))):
            return _checked(fetch_with_ytdlp(url, self.config))
        body, content_type = self.http.fetch(url)
        ext = sniff_container(body)
        if ext:
            return body, ext
        if looks_like_html(body, content_type) and mode == "auto":
            return _checked(fetch_with_ytdlp(url, self.config))
        raise _not_media(body, content_type)

    def _read_fsspec(self, url: str) -> bytes:
        """A remote store's (or, when allowed, a local) file, under the same retries, deadline and caps as http;
        a caching layer's copy goes to a private folder removed whatever happens."""
        def attempt() -> bytes:
            cache = tempfile.mkdtemp(prefix="streamv2d-fsspec-") if set(protocols(url)) & CACHING else None
            try:
                return within_deadline(lambda cancelled: self._fsspec_once(url, cache, cancelled), self.config,
                                       _where(url))
            finally:
                if cache is not None:
                    shutil.rmtree(cache, ignore_errors=True)

        return with_retries(attempt, self.config)

    def _fsspec_once(self, url: str, cache: Optional[str], cancelled: threading.Event) -> bytes:
        cfg, where = self.config, _where(url)
        deadline = time.monotonic() + cfg.max_seconds
        try:
            fs, path = fsspec.core.url_to_fs(url, **fsspec_options(url, cfg, cache))
            size = fs.size(path)
            if size is not None and size > cfg.max_bytes:
                raise FetchError("body exceeds max_bytes", permanent=True, detail=f"{where}; {size} > {cfg.max_bytes}")
            with fs.open(path, "rb") as f:
                return BodyReader(cfg, deadline, cancelled).read_all(f.read, where, size)
        except FileNotFoundError:
            raise FetchError("no such file", permanent=True, detail=where) from None
        except IsADirectoryError:
            raise FetchError("not a file", permanent=True, detail=where) from None
        except PermissionError:
            raise FetchError("permission denied", permanent=True, detail=where) from None
        except (OSError, EOFError) as exc:   # fsspec's network errors are OSErrors (timeouts, refusals, resets)
            raise network_failure(exc, where) from None
        except FetchError:
            raise
        except Exception as exc:   # a store's own error types (auth, bad options): named by type, not retried
            raise FetchError("storage error", detail=joined(where, f"{type(exc).__name__}: {exc}"[:300])) from None

    def fetch_sample(self, sample: Sample) -> Tuple[Sample, int]:
        """Fill ``sample`` with its media under the container's extension; a failure becomes a record.

        Returns the sample and the number of bytes downloaded (see :meth:`fetch_outcome`)."""
        sample, nbytes, _ = self.fetch_outcome(sample)
        return sample, nbytes

    def fetch_outcome(self, sample: Sample) -> Tuple[Sample, int, bool]:
        """``(sample or failure record, bytes downloaded, permanent)``: ``permanent`` says another try cannot
        change a failure (a 404, not media), so it may be remembered — an explicit result, never a json field."""
        meta = sample["json"]
        try:
            data, ext = self.fetch(meta.get("url"))
        except FetchError as exc:
            return mark_failed(sample, FAILED_TO_DOWNLOAD, str(exc), detail=exc.detail), 0, exc.permanent
        except Exception as exc:  # a fetcher bug must not end the epoch: count it, keep going
            failed = mark_failed(sample, FAILED_TO_DOWNLOAD, f"internal error: {type(exc).__name__}", detail=str(exc))
            return failed, 0, False
        meta.update(status=SUCCESS, error_message=None)
        sample[ext] = data
        return sample, len(data), False


def fsspec_options(url: str, config: FetchConfig, cache: Optional[str]) -> Dict[str, Any]:
    """The user's ``storage_options`` with our timeouts for the stores whose options we know (the user's own
    values win), and each caching layer pointed at the private folder ``cache``."""
    layers = protocols(url)
    ours: Dict[str, Dict[str, Any]] = {
        "ftp": {"timeout": config.read_timeout},
        "sftp": {"timeout": config.connect_timeout}, "ssh": {"timeout": config.connect_timeout},
        "s3": {"config_kwargs": {"connect_timeout": config.connect_timeout, "read_timeout": config.read_timeout}},
    }
    ours["s3a"] = ours["s3"]
    # a fresh instance per fetch: fsspec's instance cache would keep one per (removed) folder
    ours.update({p: {"cache_storage": cache, "skip_instance_cache": True} for p in CACHING if cache is not None})
    options = dict(config.storage_options)
    if len(layers) == 1:
        return {**ours.get(layers[0], {}), **options}
    for protocol in layers:   # a chain: options per layer, under the protocol's name
        if protocol in ours:
            options[protocol] = {**ours[protocol], **options.get(protocol, {})}
    return options


def _checked(data: bytes) -> Tuple[bytes, str]:
    ext = sniff_container(data)
    if ext is None:
        raise _not_media(data, "")
    return data, ext


def _not_media(data: bytes, content_type: str) -> FetchError:
    """What a non-media body is, never echoing its bytes (they may be a local file's or a page's secrets)."""
    if looks_like_html(data, content_type):
        category = "not media (HTML page)"
    elif not data:
        category = "not media (empty body)"
    else:
        category = "not media (unrecognised bytes)"
    detail = joined(f"{len(data)} bytes", f"Content-Type {content_type[:60]!r}" if content_type else "")
    return FetchError(category, permanent=True, detail=detail)


def _host(url: str) -> str:
    return urlparse(url).netloc


def _where(url: str) -> str:
    """The detail naming a fetched URL: its protocol and host; a local path as given."""
    layers = protocols(url)
    target = url.split("::")[-1]
    return f"{'::'.join(layers)} {_host(target)}" if "://" in target and _host(target) else target[:200]


__all__ = ["FetchConfig", "FetchError", "Fetcher", "merged", "sniff_container"]
