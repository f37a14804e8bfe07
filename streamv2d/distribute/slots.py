"""This process's decode slots: how many rows may decode (or transcode) at once, and which goes first.

The fetch pool runs many rows at once so downloads overlap; letting all of them decode at once too only makes
every sample finish late (the first one included) and the cores thrash between codecs, without adding
throughput."""
from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from .world import core_share


class _OrderedSlots:
    """``count`` slots granted to the earliest row first (arrival order for rows without a sequence): rows leave
    the pipeline in row order, so decoding a later row while an earlier one waits would only delay both
    (head-of-line blocking). Row order, not key order: a tar shard's keys need not be sorted."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: List[Tuple[float, int]] = []
        self._tickets = itertools.count()
        self._cv = threading.Condition()

    @contextmanager
    def hold(self, seq: Optional[int]) -> Iterator[None]:
        ticket = (math.inf if seq is None else seq, next(self._tickets))
        with self._cv:
            heapq.heappush(self._waiting, ticket)
            try:
                while self._free == 0 or self._waiting[0] != ticket:
                    self._cv.wait()
            except BaseException:   # interrupted while queued: leave the queue, or the next in line waits forever
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                self._cv.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cv.notify_all()
        try:
            yield
        finally:
            with self._cv:
                self._free += 1
                self._cv.notify_all()


class _DecodeSlots:
    """This process's share of the cores for decoding (:func:`core_share`): sized on first use, and anew when the
    share changes (a Ray or Spark worker process runs the tasks of jobs granted other CPU counts)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a DataLoader worker or materialize process sizes its own

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._slots: Optional[_OrderedSlots] = None
        self._size = 0

    def __call__(self) -> _OrderedSlots:
        share = core_share()
        with self._lock:
            if self._slots is None or share != self._size:
                self._slots, self._size = _OrderedSlots(share), share
            return self._slots


decode_slot = _DecodeSlots()
