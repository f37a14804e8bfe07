"""Fetch: turn a row's URL into media bytes, or into a counted failure record."""
from __future__ import annotations

from typing import Tuple
from urllib.parse import urlparse

import fsspec

from ..errors import FetchError
from ..sample import FAILED_TO_DOWNLOAD, SUCCESS, Sample, mark_failed
from .config import FetchConfig, merged
from .http import HttpFetcher
from .sniff import looks_like_html, sniff_container
from .ytdlp import fetch_with_ytdlp, is_platform_url


class Fetcher:
    """Routes a URL to http, yt-dlp or fsspec, and checks that what came back is media."""

    def __init__(self, config: FetchConfig):
        self.config = config
        self.http = HttpFetcher(config)

    def fetch(self, url: str) -> Tuple[bytes, str]:
        """``(media bytes, container extension)``; raises :class:`FetchError`."""
        if not url or not isinstance(url, str):
            raise FetchError(f"missing url: {url!r}", permanent=True)
        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_http(url)
        return self._checked(self._read_fsspec(url), url)   # local paths and any fsspec protocol

    def _fetch_http(self, url: str) -> Tuple[bytes, str]:
        mode = self.config.yt_dlp
        if mode == "always" or (mode == "auto" and is_platform_url(urlparse(url).netloc)):
            return self._checked(fetch_with_ytdlp(url, self.config), url)
        body, content_type = self.http.fetch(url)
        ext = sniff_container(body)
        if ext:
            return body, ext
        if looks_like_html(body, content_type) and mode == "auto":
            return self._checked(fetch_with_ytdlp(url, self.config), url)
        raise FetchError(_not_media(body, content_type), permanent=True)

    def _read_fsspec(self, url: str) -> bytes:
        try:
            fs, path = fsspec.core.url_to_fs(url, **self.config.storage_options)
            size = fs.size(path)
            if size is not None and size > self.config.max_bytes:
                raise FetchError(f"file of {size} bytes exceeds max_bytes={self.config.max_bytes}", permanent=True)
            with fs.open(path, "rb") as f:
                data = f.read(self.config.max_bytes + 1)
        except FileNotFoundError:
            raise FetchError(f"no such file: {url}", permanent=True) from None
        except OSError as exc:
            raise FetchError(f"cannot read {url}: {exc}") from None
        if len(data) > self.config.max_bytes:
            raise FetchError(f"file exceeds max_bytes={self.config.max_bytes}", permanent=True)
        return data

    @staticmethod
    def _checked(data: bytes, url: str) -> Tuple[bytes, str]:
        ext = sniff_container(data)
        if ext is None:
            raise FetchError(_not_media(data, ""), permanent=True)
        return data, ext

    def fetch_sample(self, sample: Sample) -> Tuple[Sample, int]:
        """Fill ``sample`` with its media under the container's extension; a failure becomes a record.

        Returns the sample and the number of bytes downloaded."""
        meta = sample["json"]
        try:
            data, ext = self.fetch(meta.get("url"))
        except FetchError as exc:
            failed = mark_failed(sample, FAILED_TO_DOWNLOAD, str(exc))
            failed["json"]["permanent"] = exc.permanent
            return failed, 0
        except Exception as exc:  # a fetcher bug must not end the epoch: count it, keep going
            return mark_failed(sample, FAILED_TO_DOWNLOAD, exc), 0
        meta.update(status=SUCCESS, error_message=None)
        sample[ext] = data
        return sample, len(data)


def _not_media(data: bytes, content_type: str) -> str:
    if looks_like_html(data, content_type):
        return "not media: an HTML page"
    if not data:
        return "not media: empty body"
    return f"not media: unrecognised leading bytes {data[:8].hex()}"


__all__ = ["FetchConfig", "FetchError", "Fetcher", "merged", "sniff_container"]
