"""Bodies in memory, bounded: at most ``max_bytes`` each, at most ``max_bytes_in_flight`` for all the downloads of
one process together, and no reallocation copies (a body is one buffer, returned without a final copy)."""
from __future__ import annotations

import heapq
import io
import itertools
import os
import threading
import time
from typing import Callable, Dict, List, Optional

from ..errors import FetchError
from .config import FetchConfig
from .policy import Retryable, joined

_CHUNK = 1 << 16
#: Budget added at a time when a body outgrows its declared size.
_GRANT = 4 << 20


class BodyBudget:
    """Bytes held by the bodies this process is downloading, at most ``capacity``.

    A download reserves what its body may need before reading a byte (its declared length, else ``max_bytes``)
    and waits, holding nothing, until that is free: downloads never wait on each other while holding parts of the
    budget, so they cannot deadlock. Waiters are served oldest first, so a large body is not starved by small ones."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._changed = threading.Condition()
        self._waiting: List[int] = []   # heap of the tickets of waiting downloads; the smallest is the oldest

    def reserve(self, nbytes: int, ticket: int, deadline: float) -> bool:
        """Take ``nbytes`` for download ``ticket``, waiting until ``deadline`` at most; False if it gave up."""
        with self._changed:
            heapq.heappush(self._waiting, ticket)
            try:
                while not (self._waiting[0] == ticket and self.used + nbytes <= self.capacity):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                self.used += nbytes
                return True
            finally:
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                self._changed.notify_all()

    def try_reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` now if nobody waits and they are free (a body longer than its declared size)."""
        with self._changed:
            if self._waiting or self.used + nbytes > self.capacity:
                return False
            self.used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._changed:
            self.used -= nbytes
            self._changed.notify_all()


_budgets: Dict[int, BodyBudget] = {}
_budgets_lock = threading.Lock()
_tickets = itertools.count()


def budget_for(capacity: int) -> BodyBudget:
    """This process's budget of ``capacity`` bytes, shared by every fetcher configured with that capacity."""
    with _budgets_lock:
        return _budgets.setdefault(capacity, BodyBudget(capacity))


def _after_fork_in_child() -> None:
    """A child holds none of its parent's downloads (nor a lock a parent thread held at the fork)."""
    global _budgets_lock
    _budgets.clear()
    _budgets_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class BodyReader:
    """Reads one body into memory under the size cap, the deadline and the process budget. ``received`` counts the
    bytes kept so far, for the failure detail when the read function raises."""

    def __init__(self, config: FetchConfig, deadline: float, cancelled: Optional[threading.Event] = None):
        self.config = config
        self.deadline = deadline
        self.cancelled = cancelled
        self.received = 0

    def read_all(self, read: Callable[[int], bytes], source: str = "", expected: Optional[int] = None) -> bytes:
        """Every byte ``read(n)`` returns until it returns b"" (``read`` may return fewer than ``n``);
        ``expected`` is the declared size, when known (what is reserved from the budget up front)."""
        cfg = self.config
        budget = budget_for(cfg.max_bytes_in_flight)
        held = min(cfg.max_bytes, expected) if expected is not None else cfg.max_bytes
        if not budget.reserve(held, next(_tickets), self.deadline):
            raise Retryable("fetch memory budget exhausted",
                            detail=joined(source, f"waited max_seconds={cfg.max_seconds} for {held} of "
                                                  f"max_bytes_in_flight={cfg.max_bytes_in_flight}"))
        body = io.BytesIO()
        try:
            while True:
                room = cfg.max_bytes - self.received
                chunk = read(min(_CHUNK, room + 1))   # one byte past the cap tells an over-cap body, unkept
                if not chunk:
                    return body.getvalue()            # the buffer itself, not a copy
                if len(chunk) > room:
                    raise FetchError("body exceeds max_bytes", permanent=True,
                                     detail=joined(source, f"over {cfg.max_bytes} bytes"))
                if self.received + len(chunk) > held:   # longer than declared
                    extra = min(max(_GRANT, len(chunk)), cfg.max_bytes - held)
                    if not budget.try_reserve(extra):
                        raise Retryable("fetch memory budget exhausted",
                                        detail=joined(source, f"body longer than its declared {expected} bytes"))
                    held += extra
                body.write(chunk)
                self.received += len(chunk)
                self._check_time(source)
        finally:
            budget.release(held)

    def _check_time(self, source: str) -> None:
        if time.monotonic() > self.deadline or (self.cancelled is not None and self.cancelled.is_set()):
            raise Retryable("download exceeded max_seconds",
                            detail=joined(source, f"{self.received} bytes in max_seconds={self.config.max_seconds}"))
