"""A bounded, ordered thread-pool map: at most ``window`` items in flight, results in input order."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], executor: ThreadPoolExecutor, window: int,
                initial: int = 1) -> Iterator[R]:
    """Like ``executor.map`` but lazy over ``items`` and bounded: memory stays O(window) whatever the input.

    The window opens like TCP's slow start: ``initial`` items (by default one) are in flight at first, and each
    result yielded doubles the window, up to ``window``. The first sample then has the network, the server and the
    interpreter to itself (with 16 rows fetched at once it took 0.74 s on loopback instead of 0.52 s,
    ``benchmarks/floor.py``), and the pipeline is full after a handful of rows. Closing the generator early
    cancels what has not started; running calls finish in the background."""
    pending: Deque[Future] = deque()
    source = iter(items)
    limit = max(1, min(initial, window))
    try:
        for item in source:
            pending.append(executor.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
                limit = min(window, 2 * limit)
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
