"""A bounded, ordered thread-pool map: at most ``window`` items in flight, results in input order."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], executor: ThreadPoolExecutor, window: int) -> Iterator[R]:
    """Like ``executor.map`` but lazy over ``items`` and bounded: memory stays O(window) whatever the input.

    Closing the generator early cancels what has not started; running calls finish in the background."""
    pending: Deque[Future] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
