"""One fetch policy for every scheme: bounded retries with backoff, a whole-download deadline that also cuts
foreign code (fsspec, yt-dlp) blocked past our timeouts, and failures named by stable categories."""
from __future__ import annotations

import random
import socket
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable, Iterator, TypeVar

import requests
import urllib3

from ..errors import FetchError
from .config import FetchConfig

T = TypeVar("T")


class Retryable(FetchError):
    """A failure worth another try: 5xx, 429, a dropped connection, a timeout, a truncated body."""


def with_retries(attempt: Callable[[], T], config: FetchConfig) -> T:
    """``attempt()``, tried ``config.retries`` more times on :class:`Retryable` with jittered exponential backoff;
    the last failure is raised as a transient FetchError of the same category."""
    attempts = config.retries + 1
    for n in range(attempts):
        try:
            return attempt()
        except Retryable as exc:
            if n == attempts - 1:
                raise FetchError(str(exc), detail=joined(exc.detail, f"after {attempts} attempts")) from None
            time.sleep(config.backoff * (2 ** n) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def within_deadline(task: Callable[[threading.Event], T], config: FetchConfig, what: str) -> T:
    """Run ``task(cancelled)`` in a helper thread and wait at most ``max_seconds`` for it: fsspec and yt-dlp calls
    can block past every timeout we pass them. On expiry ``cancelled`` is set (the task stops at its next chunk)
    and the thread is abandoned; it ends when its blocked call returns."""
    cancelled = threading.Event()
    result: Future = Future()

    def run() -> None:
        try:
            result.set_result(task(cancelled))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            result.set_exception(exc)

    threading.Thread(target=run, name="streamv2d-fetch-guarded", daemon=True).start()
    if not wait([result], timeout=config.max_seconds).done:
        cancelled.set()
        raise Retryable("download exceeded max_seconds", detail=f"{what}; max_seconds={config.max_seconds}")
    return result.result()


def network_failure(exc: BaseException, where: str) -> Retryable:
    """The transient failure a network exception means, named by its cause ("connection refused",
    "read timeout"…) with ``where`` (a host) as the detail."""
    causes = list(_causes(exc))

    def having(*types: type) -> bool:
        return any(isinstance(c, types) for c in causes)

    if having(ConnectionRefusedError):
        category = "connection refused"
    elif having(ConnectionResetError, BrokenPipeError):
        category = "connection reset"
    elif having(socket.gaierror, urllib3.exceptions.NameResolutionError):
        category = "host not found"
    elif having(urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout):
        category = "read timeout"
    elif having(requests.exceptions.ConnectTimeout) or any(
            isinstance(c, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(c, urllib3.exceptions.NewConnectionError) for c in causes):
        category = "connect timeout"
    elif having(TimeoutError):
        category = "read timeout"
    elif having(urllib3.exceptions.IncompleteRead):
        category = "truncated body"
    elif having(ConnectionError, requests.exceptions.ConnectionError, urllib3.exceptions.ProtocolError):
        category = "connection dropped"
    else:
        category = "connection failed"
    return Retryable(category, detail=joined(where, type(exc).__name__))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, ``__context__``, urllib3's ``reason``, exception ``args``."""
    seen, todo = set(), [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [e for e in inner if isinstance(e, BaseException)]


def joined(*parts: str) -> str:
    """Detail fragments joined with '; ', empty ones left out."""
    return "; ".join(p for p in parts if p)
