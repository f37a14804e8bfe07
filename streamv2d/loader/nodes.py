"""Stateful loader stages, as in torchdata.nodes: each is an iterator whose ``get_state()`` describes the position
right after the last item it yielded and whose ``reset(state)`` resumes exactly there. The state is small and
JSON-serialisable: positions, counters and (for the shuffle buffer) the positions of what it holds."""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..sample import Sample, is_success

log = logging.getLogger("streamv2d")

#: Where a sample comes from: (shard id, row in the shard, index among the row's outputs).
Position = Tuple[int, int, int]
#: What is left of one shard for a consumer: [shard id, first row, outputs of that row already delivered], and
#: a fourth item, the row to stop before, when the consumer has only a piece of the shard.
Segment = List[int]


class Node(Iterator[Any]):
    """A loader stage: iterate it, ``get_state()`` between two ``next`` calls, ``reset(state)`` to resume."""

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        raise NotImplementedError

    def get_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop early: what is in flight is dropped (a write-through shard stays unpublished, resumable)."""
        upstream = getattr(self, "upstream", None)
        if upstream is not None:
            upstream.close()


class ShardReader(Node):
    """One consumer's samples: its shards' segments in order, each row from where the last delivery left off.

    ``row_groups(shard, start_row, stop_row)`` yields ``(row, outputs)`` for rows ``[start_row, stop_row)`` (rows
    before it are never fetched or decoded; None: to the shard's end). Failure records are consumed but only yielded with ``yield_failures``; ``pending``
    samples (single positions, e.g. a resharded shuffle buffer's) come first."""

    def __init__(self, row_groups: Callable[[int, int, Optional[int]], Iterator[Tuple[int, List[Sample]]]],
                 segments: Sequence[Segment], yield_failures: bool = False):
        self._row_groups, self._yield_failures = row_groups, yield_failures
        self.reset({"segments": [list(s) for s in segments], "pending": []})

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        state = initial_state or {"segments": [], "pending": []}
        self._segments: List[Segment] = [list(s) for s in state["segments"]]
        self._pending: List[Position] = [tuple(p) for p in state.get("pending", [])]
        self.last: Optional[Position] = None
        if getattr(self, "_it", None) is not None:
            self._it.close()
        self._it = self._run()

    def get_state(self) -> Dict[str, Any]:
        return {"segments": [list(s) for s in self._segments], "pending": [list(p) for p in self._pending]}

    def __next__(self) -> Sample:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    def sample_at(self, position: Position) -> Optional[Sample]:
        """The sample at ``position``, made again (its row fetched and processed once more); None when the row does
        not make it this time (its fetch failed: fewer outputs, or a failure record that is not to be yielded)."""
        shard, row, index = position
        for found_row, outputs in self._row_groups(shard, row, row + 1):
            if found_row == row and index < len(outputs) and (self._yield_failures or is_success(outputs[index])):
                return outputs[index]
            break
        log.warning("shard %d row %d: output %d is not made again (the row failed this time); left out",
                    shard, row, index)
        return None

    def _run(self) -> Iterator[Sample]:
        while self._pending:
            position = self._pending[0]
            sample = self.sample_at(position)
            self._pending.pop(0)
            if sample is not None:
                self.last = position
                yield sample
        while self._segments:
            shard, start, skip, *stop = self._segments[0]
            for row, outputs in self._row_groups(shard, start, stop[0] if stop else None):
                for index, sample in enumerate(outputs):
                    if row == start and index < skip:
                        continue
                    last_of_row = index == len(outputs) - 1
                    self._segments[0][1:3] = [row + 1, 0] if last_of_row else [row, index + 1]
                    if self._yield_failures or is_success(sample):
                        self.last = (shard, row, index)
                        yield sample
            self._segments.pop(0)


class Shuffler(Node):
    """A reservoir shuffle buffer of ``size`` items over a :class:`ShardReader` (or anything with its ``last``
    and ``sample_at``): filled to ``initial`` items (default: ``size``), then each item drawn at random and
    replaced by the next — by two while the buffer is below ``size``, so it grows to it (webdataset's
    ``initial``: the first sample comes after ``initial`` rows, not ``size``). Its state holds the
    upstream position and the positions of the buffered samples, so a resumed run rebuilds the buffer (those
    rows are fetched again) and continues in the uninterrupted order. Draw ``n`` is made from ``(key, n)``."""

    def __init__(self, upstream: ShardReader, size: int, key: str, initial: Optional[int] = None):
        self.upstream, self.size, self.key = upstream, size, key
        self.initial = size if initial is None else initial
        self.reset(None)

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        state = initial_state or {}
        if "upstream" in state:
            self.upstream.reset(state["upstream"])
        self._draws = int(state.get("draws", 0))
        self._exhausted = bool(state.get("exhausted", False))
        rebuilt = ((tuple(p), self.upstream.sample_at(tuple(p))) for p in state.get("buffer", []))
        self._buffer: List[Tuple[Position, Sample]] = [(p, s) for p, s in rebuilt if s is not None]

    def get_state(self) -> Dict[str, Any]:
        return {"upstream": self.upstream.get_state(), "buffer": [list(p) for p, _ in self._buffer],
                "draws": self._draws, "exhausted": self._exhausted}

    def _draw(self, bound: int) -> int:
        pick = random.Random(f"{self.key}/{self._draws}").randrange(bound)
        self._draws += 1
        return pick

    def _pull(self) -> None:
        try:
            sample = next(self.upstream)
        except StopIteration:
            self._exhausted = True
            return
        self._buffer.append((self.upstream.last, sample))

    def __next__(self) -> Sample:
        while not self._exhausted and len(self._buffer) < self.initial:
            self._pull()
        for _ in range(2):
            if not self._exhausted and len(self._buffer) < self.size:
                self._pull()
        if not self._buffer:
            raise StopIteration
        index = self._draw(len(self._buffer))
        self._buffer[index], self._buffer[-1] = self._buffer[-1], self._buffer[index]
        return self._buffer.pop()[1]


class Batcher(Node):
    """Groups ``size`` items of ``upstream`` and collates them; the last batch may be smaller. Between two
    ``next`` calls its bucket is empty, so its state is its upstream's."""

    def __init__(self, upstream: Node, size: int, collate: Callable[[List[Any]], Any]):
        self.upstream, self.size, self.collate = upstream, size, collate

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        self.upstream.reset(initial_state)

    def get_state(self) -> Dict[str, Any]:
        return self.upstream.get_state()

    def __next__(self) -> Any:
        bucket: List[Any] = []
        for item in self.upstream:
            bucket.append(item)
            if len(bucket) == self.size:
                break
        if not bucket:
            raise StopIteration
        return self.collate(bucket)


class FixedLength(Node):
    """Exactly ``target`` items for one consumer of the fixed-length (DDP) mode: passes over ``pools[level]``,
    the narrowest pool first, moving to the next pool when a whole pass yields no success (failure records
    count when yielded). Raises when even the widest pool yields nothing, rather than spinning forever."""

    def __init__(self, make_reader: Callable[[Sequence[Segment]], ShardReader], pools: Sequence[Sequence[int]],
                 target: int):
        self._make_reader, self._pools, self._target = make_reader, [list(p) for p in pools], target
        self.reset(None)

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        state = initial_state or {}
        self._produced = int(state.get("produced", 0))
        self._level = int(state.get("level", 0))
        self._succeeded = bool(state.get("succeeded", False))
        self._reader = self._make_reader(self._pass())
        if "reader" in state:
            self._reader.reset(state["reader"])

    def _pass(self) -> List[Segment]:
        return [[shard, 0, 0] for shard in self._pools[self._level]] if self._pools else []

    def get_state(self) -> Dict[str, Any]:
        return {"produced": self._produced, "level": self._level, "succeeded": self._succeeded,
                "reader": self._reader.get_state()}

    @property
    def last(self) -> Optional[Position]:
        return self._reader.last

    def close(self) -> None:
        self._reader.close()

    def sample_at(self, position: Position) -> Optional[Sample]:
        """A sample counted as produced, made again for a buffer downstream; one that is not made again is
        produced once more, so the epoch keeps its length."""
        sample = self._reader.sample_at(position)
        if sample is None:
            self._produced -= 1
        return sample

    def __next__(self) -> Sample:
        if self._produced >= self._target or not self._pools:
            raise StopIteration
        for _ in range(2 * len(self._pools) + 1):
            try:
                sample = next(self._reader)
            except StopIteration:
                if not self._succeeded:
                    if self._level == len(self._pools) - 1:
                        raise RuntimeError(f"fixed-length mode: no shard produced a sample; cannot fill "
                                           f"{self._target} samples") from None
                    self._level += 1
                self._succeeded = False
                self._reader = self._make_reader(self._pass())
                continue
            widest = self._level == len(self._pools) - 1   # nothing wider to try: a yielded failure record counts
            self._succeeded = self._succeeded or is_success(sample) or widest
            self._produced += 1
            return sample
        raise RuntimeError("fixed-length mode: no shard produced a sample")


class Endless(Node):
    """Epoch after epoch of ``open_epoch(epoch, state)``: a resampled, never-ending stream for step-based
    training; its state is the current epoch and that epoch's stages' state."""

    def __init__(self, open_epoch: Callable[[int, Optional[Dict[str, Any]]], Node], epoch: int):
        self._open, self._first = open_epoch, epoch
        self.reset(None)

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        state = initial_state or {}
        self._epoch = int(state.get("epoch", self._first))
        self._node = self._open(self._epoch, state.get("stages"))

    def get_state(self) -> Dict[str, Any]:
        return {"epoch": self._epoch, "stages": self._node.get_state()}

    def __next__(self) -> Any:
        for _ in range(2):
            try:
                return next(self._node)
            except StopIteration:
                self._epoch += 1
                self._node = self._open(self._epoch, None)
        raise RuntimeError("resampled: two epochs in a row yielded nothing; the source is empty")

    def close(self) -> None:
        self._node.close()
