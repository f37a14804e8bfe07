"""HTTP(S) downloads: pooled connections, timeouts, bounded retries, size and memory caps, truncation checks."""
from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Optional, Tuple
from urllib.parse import urlparse

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import FetchError
from .body import BodyReader
from .config import FetchConfig
from .policy import Retryable, joined, network_failure, with_retries

#: Statuses that say the resource will not come back (others, like 403, may be a passing block or rate limit).
_GONE = (404, 410, 451)
#: Redirects followed per request (requests' default is 30).
_MAX_REDIRECTS = 10


class HttpFetcher:
    """Downloads one URL into memory; safe to share between the threads of one process, and across fork
    (a forked DataLoader worker gets a fresh session instead of sharing the parent's sockets)."""

    def __init__(self, config: FetchConfig):
        self.config = config
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._session: Optional[requests.Session] = None

    def __getstate__(self):  # sessions and locks stay in the process that made them
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    @property
    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=16, pool_maxsize=max(4, self.config.threads), max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.max_redirects = _MAX_REDIRECTS
                # media is not compressed: identity spares decoding work and decompression bombs
                session.headers.update({"User-Agent": self.config.user_agent, "Accept-Encoding": "identity",
                                        **self.config.headers})
                self._session = session
            return self._session

    def fetch(self, url: str, headers: Optional[dict] = None) -> Tuple[bytes, str]:
        """``(body, content_type)``; raises :class:`FetchError` (``permanent`` for 4xx and caps)."""
        return with_retries(lambda: self._once(url, headers), self.config)

    def _once(self, url: str, headers: Optional[dict]) -> Tuple[bytes, str]:
        cfg = self.config
        host = urlparse(url).netloc
        deadline = time.monotonic() + cfg.max_seconds
        try:
            response = self.session.get(url, stream=True, headers=headers,
                                        timeout=(cfg.connect_timeout, cfg.read_timeout))
        except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema) as exc:
            category = "redirect to a non-http(s) URL" if isinstance(exc, requests.exceptions.InvalidSchema) \
                else "invalid URL"
            raise FetchError(category, permanent=True, detail=host) from None
        except requests.exceptions.TooManyRedirects:
            raise FetchError("too many redirects", permanent=True, detail=host) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise network_failure(exc, host) from None
        with response:
            status = response.status_code
            if status >= 500 or status in (408, 429):
                raise Retryable(f"HTTP {status}", detail=host)
            if status >= 400:   # not retried now; remembered as permanent only when the resource is gone
                raise FetchError(f"HTTP {status}", permanent=status in _GONE, detail=host)
            declared = _content_length(response)
            if declared is not None and declared > cfg.max_bytes:
                raise FetchError("body exceeds max_bytes", permanent=True,
                                 detail=f"{host}; Content-Length {declared} > {cfg.max_bytes}")
            body = self._read_body(response, declared, deadline, host)
            return body, response.headers.get("Content-Type", "")

    def _read_body(self, response: requests.Response, declared: Optional[int], deadline: float, host: str) -> bytes:
        """The body, read a receive at a time (``read1``) so a trickling server meets the deadline."""
        reader = BodyReader(self.config, deadline)
        try:
            body = reader.read_all(lambda n: response.raw.read1(n, decode_content=True), host, declared)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            failure = network_failure(exc, host)
            failure.detail = joined(failure.detail, f"after {reader.received} of {declared or '?'} bytes")
            raise failure from None
        if declared is not None and len(body) < declared and "Content-Encoding" not in response.headers:
            raise Retryable("truncated body", detail=f"{host}; {len(body)} of {declared} bytes")
        return body


_live: "weakref.WeakSet[HttpFetcher]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child must not reuse pooled connections (both processes would read the same sockets) nor a lock
    that a parent thread held at the fork."""
    for fetcher in list(_live):
        fetcher._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _content_length(response: requests.Response) -> Optional[int]:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
