"""HTTP(S) downloads: pooled connections, timeouts, bounded retries, a size cap and truncation checks."""
from __future__ import annotations

import os
import random
import threading
import time
import weakref
from typing import Optional, Tuple

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import FetchError
from .config import FetchConfig

_CHUNK = 1 << 16
#: Statuses that say the resource will not come back (others, like 403, may be a passing block or rate limit).
_GONE = (404, 410, 451)


class _Retryable(Exception):
    """A failure worth another try: 5xx, 429, a dropped connection, a timeout, a truncated body."""


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
                session.headers.update({"User-Agent": self.config.user_agent, **self.config.headers})
                self._session = session
            return self._session

    def fetch(self, url: str, headers: Optional[dict] = None) -> Tuple[bytes, str]:
        """``(body, content_type)``; raises :class:`FetchError` (``permanent`` for 4xx and caps)."""
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return self._once(url, headers)
            except _Retryable as exc:
                if attempt == attempts - 1:
                    raise FetchError(f"{exc} (after {attempts} attempts)") from None
                time.sleep(self.config.backoff * (2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _once(self, url: str, headers: Optional[dict]) -> Tuple[bytes, str]:
        cfg = self.config
        try:
            response = self.session.get(url, stream=True, headers=headers,
                                        timeout=(cfg.connect_timeout, cfg.read_timeout))
        except requests.exceptions.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", permanent=True) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}") from None
        with response:
            status = response.status_code
            if status >= 500 or status in (408, 429):
                raise _Retryable(f"HTTP {status}")
            if status >= 400:   # not retried now; remembered as permanent only when the resource is gone
                raise FetchError(f"HTTP {status}", permanent=status in _GONE)
            declared = _content_length(response)
            if declared is not None and declared > cfg.max_bytes:
                raise FetchError(f"body of {declared} bytes exceeds max_bytes={cfg.max_bytes}", permanent=True)
            body = self._read_body(response, declared)
            return body, response.headers.get("Content-Type", "")

    def _read_body(self, response: requests.Response, declared: Optional[int]) -> bytes:
        cfg = self.config
        deadline = time.monotonic() + cfg.max_seconds
        body = bytearray()
        try:
            while True:   # read1 returns what one receive brings, so a trickling server meets the deadline
                chunk = response.raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > cfg.max_bytes:
                    raise FetchError(f"body exceeds max_bytes={cfg.max_bytes}", permanent=True)
                if time.monotonic() > deadline:
                    raise _Retryable(f"download exceeded max_seconds={cfg.max_seconds}")
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            got = f"{len(body)} of {declared}" if declared is not None else str(len(body))
            raise _Retryable(f"truncated body: connection dropped after {got} bytes ({type(exc).__name__})") from None
        if declared is not None and len(body) < declared and "Content-Encoding" not in response.headers:
            raise _Retryable(f"truncated body: {len(body)} of {declared} bytes")
        return bytes(body)


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
