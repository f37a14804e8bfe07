"""``mix``: several datasets drawn by weight into one stream, before batching, deterministic from the seed and
resumable: the state holds each source's position and epoch and the number of draws made."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from dataclasses import astuple
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch.utils.data import IterableDataset

from ..batching import Collate, collate_samples
from ..distribute import World
from .nodes import Batcher, Node

EXHAUSTED = ("stop", "drop", "restart")
STATE_VERSION = 1


class MixStream(Node):
    """Draw ``n`` picks a source with probability proportional to its weight among the active ones, from
    ``(key, n)`` alone. A source that runs out ends the mix (``stop``), leaves it (``drop``) or starts its next
    epoch (``restart``: an endless stream, for step-based training)."""

    def __init__(self, open_source: Callable[[int, int, Optional[Dict[str, Any]]], Node], weights: Sequence[float],
                 epoch: int, key: str, on_exhausted: str):
        self._open, self._weights, self._key, self._on_exhausted = open_source, list(weights), key, on_exhausted
        self._first_epoch = epoch
        self.reset(None)

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        state = initial_state or {}
        count = len(self._weights)
        self._draws = int(state.get("draws", 0))
        self._epochs: List[int] = list(state.get("epochs", [self._first_epoch] * count))
        self._active: List[bool] = list(state.get("active", [True] * count))
        sources = state.get("sources", [None] * count)
        self._sources = [self._open(i, self._epochs[i], sources[i]) for i in range(count)]

    def get_state(self) -> Dict[str, Any]:
        return {"draws": self._draws, "epochs": list(self._epochs), "active": list(self._active),
                "sources": [s.get_state() for s in self._sources]}

    def _pick(self) -> int:
        weights = [w if on else 0.0 for w, on in zip(self._weights, self._active)]
        point = random.Random(f"{self._key}/{self._draws}").random() * sum(weights)
        self._draws += 1
        for index, weight in enumerate(weights):
            point -= weight
            if point < 0 and weight > 0:
                return index
        return max(i for i, w in enumerate(weights) if w > 0)

    def __next__(self) -> Any:
        restarts_in_a_row = 0
        while any(self._active):
            index = self._pick()
            try:
                return next(self._sources[index])
            except StopIteration:
                if self._on_exhausted == "stop":
                    self._active = [False] * len(self._active)
                elif self._on_exhausted == "drop":
                    self._active[index] = False
                else:
                    restarts_in_a_row += 1
                    if restarts_in_a_row > 2 * len(self._sources):
                        raise RuntimeError("mix: every source is empty; cannot restart them forever") from None
                    self._epochs[index] += 1
                    self._sources[index] = self._open(index, self._epochs[index], None)
        raise StopIteration

    def close(self) -> None:
        for source in self._sources:
            source.close()


class MixedDataset(IterableDataset):
    """See :func:`mix`."""

    def __init__(self, datasets: Sequence[Any], weights: Optional[Sequence[float]] = None, seed: int = 0, *,
                 resampled: bool = False, on_exhausted: str = "stop", batch_size: Optional[int] = None,
                 collate_fn: Optional[Collate] = None):
        super().__init__()
        if not datasets:
            raise ValueError("mix: no datasets given")
        weights = [1.0] * len(datasets) if weights is None else [float(w) for w in weights]
        if len(weights) != len(datasets) or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"mix: weights must be one positive number per dataset, got {weights}")
        if on_exhausted not in EXHAUSTED:
            raise ValueError(f"mix: on_exhausted={on_exhausted!r} is not one of {', '.join(EXHAUSTED)}")
        for i, ds in enumerate(datasets):
            if getattr(ds, "batch_size", None):
                raise ValueError(f"mix: datasets[{i}] batches itself; batch the mix instead (mix(..., batch_size=))")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"mix: batch_size: {batch_size!r} is not an integer >= 1")
        if collate_fn is not None and batch_size is None:
            raise ValueError("mix: collate_fn: given without batch_size; set batch_size too, or drop collate_fn")
        self.datasets, self.weights, self.seed = list(datasets), weights, seed
        self.on_exhausted = "restart" if resampled else on_exhausted
        self.batch_size, self.collate_fn = batch_size, collate_fn or collate_samples
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._resume_from: Optional[Dict[str, Any]] = None
        self._current: Optional[Any] = None

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """The epoch every source starts at (each then counts its own restarts)."""
        self._epoch.fill_(int(epoch))

    def world(self) -> World:
        return self.datasets[0].world()

    def identity(self) -> str:
        document = [[ds.identity() for ds in self.datasets], self.weights, self.seed, self.on_exhausted,
                    self.batch_size]
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]

    def _stream(self, world: World, epoch: int, state: Optional[Dict[str, Any]]) -> Node:
        def open_source(index: int, source_epoch: int, source_state: Optional[Dict[str, Any]]) -> Node:
            return self.datasets[index].stream(world, source_epoch, source_state)

        node: Node = MixStream(open_source, self.weights, epoch, f"mix/{self.seed}/{epoch}/{world}", self.on_exhausted)
        if self.batch_size:
            node = Batcher(node, self.batch_size, self.collate_fn)
        if state is not None:
            node.reset(state)
        return node

    def __iter__(self) -> Iterator[Any]:
        world, state = self.world(), self._resume_from
        self._resume_from = None
        if state is not None and list(state["world"]) != list(astuple(world)):
            raise ValueError(f"this mix state was saved by consumer {World(*state['world'])}, not {world}")
        epoch = self.epoch if state is None else int(state["epoch"])
        stream = self._stream(world, epoch, None if state is None else state["loader"])
        self._current = (world, epoch, stream)
        return stream

    def state_dict(self) -> Dict[str, Any]:
        """Where this process's iteration of the mix stands (see ``VideoDataset.state_dict``)."""
        if self._resume_from is not None:   # not resumed yet: that state is still where this mix stands
            return copy.deepcopy(self._resume_from)
        if self._current is None:
            world, epoch = self.world(), self.epoch
            loader = self._stream(world, epoch, None).get_state()
        else:
            world, epoch, stream = self._current
            loader = stream.get_state()
        return {"version": STATE_VERSION, "kind": "mix", "job": self.identity(), "world": list(astuple(world)),
                "epoch": epoch, "loader": loader}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Make the next ``iter`` resume at ``state``; refuses a state of another mix."""
        if not isinstance(state, dict) or state.get("kind") != "mix" or state.get("job") != self.identity():
            raise ValueError("this state was not saved by this mix (other datasets, weights, seed or settings)")
        self._epoch.fill_(int(state["epoch"]))
        self._resume_from = state


def mix(datasets: Sequence[Any], weights: Optional[Sequence[float]] = None, seed: int = 0, *,
        resampled: bool = False, on_exhausted: str = "stop", batch_size: Optional[int] = None,
        collate_fn: Optional[Collate] = None) -> MixedDataset:
    """One stream from several ``VideoDataset``\\ s, each sample drawn from a source with probability
    ``weights[i] / sum(weights)`` — deterministic from ``seed``, epoch and consumer, resumable by
    ``state_dict``. ``on_exhausted``: ``stop`` (the mix ends with its first exhausted source), ``drop`` (it goes on
    with the others) or ``restart`` (that source starts its next epoch); ``resampled=True`` is ``restart``: an
    endless stream for step-based training. Mixing happens before ``batch_size`` batching, so a batch holds
    several sources. Each source keeps its own fetch pool working ahead (its window of rows in flight) while
    another is drawn, so one source's slow fetches do not stop the others' decoding."""
    return MixedDataset(datasets, weights, seed, resampled=resampled, on_exhausted=on_exhausted,
                        batch_size=batch_size, collate_fn=collate_fn)
