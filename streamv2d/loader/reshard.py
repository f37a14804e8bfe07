"""``reshard_state``: resume with another number of DataLoader workers or ranks.

``StatefulDataLoader.load_state_dict`` refuses a state taken with another ``num_workers``, and a rank's state
knows nothing of the other ranks' work. This gathers what every old consumer had left — the rest of its current
shard from its position, its untouched shards, the samples in its shuffle buffer — and deals it round-robin to
the new consumers, as a state each new loader accepts. Guaranteed: every sample the uninterrupted run had still
to yield is yielded exactly once, nothing already delivered is fetched again (buffered samples' rows are).
Not guaranteed: the order (samples are redistributed, and pass through the new shuffle buffers again)."""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence, Union

from .nodes import Position, Segment

State = Dict[str, Any]


def reshard_state(state: Union[State, Sequence[State]], *, num_workers: int, world_size: Optional[int] = None,
                  rank: Optional[int] = None) -> State:
    """A ``StatefulDataLoader`` (or plain ``VideoDataset``) state for ``rank`` of ``world_size`` with
    ``num_workers`` workers, from ``state``: one loader state, or the states of every rank when the number of
    ranks changes. ``world_size``/``rank`` default to the old ones (rank 0 when there was one)."""
    loader_states = list(state) if isinstance(state, (list, tuple)) else [state]
    consumers = [c for s in loader_states for c in _consumer_states(s)]
    if not consumers:
        raise ValueError("reshard_state: no streamv2d VideoDataset state found in the given state(s)")
    jobs, epochs = {c["job"] for c in consumers}, {c["epoch"] for c in consumers}
    if len(jobs) > 1 or len(epochs) > 1:
        raise ValueError(f"reshard_state: the states come from different jobs or epochs ({jobs}, {epochs})")
    old_size = consumers[0]["world"][1]
    world_size = old_size if world_size is None else world_size
    rank = (consumers[0]["world"][0] if old_size == world_size else 0) if rank is None else rank
    if not 0 <= rank < world_size or num_workers < 0:
        raise ValueError(f"reshard_state: rank {rank} of world_size {world_size} with {num_workers} workers")
    if world_size != old_size:
        have = {c["world"][0] for c in consumers}
        if have != set(range(old_size)):
            raise ValueError(f"reshard_state: changing world_size from {old_size} to {world_size} needs the states "
                             f"of all {old_size} ranks (got ranks {sorted(have)})")
    else:   # the same ranks: each keeps its own work, spread over its new workers
        consumers = [c for c in consumers if c["world"][0] == rank]
        if not consumers:
            raise ValueError(f"reshard_state: no state of rank {rank} given")
    segments, pending, shuffled = _remaining(sorted(consumers, key=lambda c: c["world"]))
    ranks = world_size if world_size != old_size else 1   # the same ranks: only this rank's work is dealt
    mine = 0 if ranks == 1 else rank
    workers = max(num_workers, 1)
    dealt = [_consumer(consumers[0], shuffled, [rank, world_size, w, workers],
                       [s for i, s in enumerate(segments) if _owner(i, ranks, workers) == (mine, w)],
                       [p for i, p in enumerate(pending) if _owner(i, ranks, workers) == (mine, w)])
             for w in range(workers)]
    yielded = sum(_yielded(s) for s in loader_states) // max(len(loader_states), 1)
    return _loader_state(dealt, num_workers, yielded, _base_seed(loader_states[0]))


def _owner(index: int, world_size: int, workers: int) -> "tuple[int, int]":
    """The new consumer of the ``index``-th piece of work: dealt to ranks first, then to each rank's workers."""
    return index % world_size, (index // world_size) % workers


def _consumer_states(state: State) -> List[State]:
    """Our per-consumer states inside a loader state (single-process or per worker) or a dataset state."""
    if "version" in state and "loader" in state:
        return [state]
    if "_snapshot" in state:
        snapshots = state["_snapshot"].get("_worker_snapshots", {})
        return [s["dataset_state"] for s in snapshots.values() if s.get("dataset_state")]
    return [state["dataset_state"]] if state.get("dataset_state") else []


#: Loader states whose counts are per consumer, so they cannot be dealt to others: how to tell them, and why.
UNRESHARDABLE = (("produced", "the fixed-length (samples_per_rank) mode cannot be resharded"),
                 ("stages", "a resampled=True state cannot be resharded: each consumer counts its own epochs"),
                 ("sources", "a mix (sv.mix) state cannot be resharded: its draws are per consumer"))


def _reader(loader: State) -> State:
    """The shard reader's part of a stages' state (under a shuffle buffer's ``upstream``); ValueError for the
    stages whose state cannot be dealt to other consumers."""
    reader = loader["upstream"] if "upstream" in loader else loader
    for marker, reason in UNRESHARDABLE:
        if marker in loader or marker in reader:
            raise ValueError(f"reshard_state: {reason}")
    return reader


def _remaining(consumers: List[State]) -> "tuple[List[Segment], List[Position], bool]":
    """Every old consumer's remaining segments and single samples (pending and buffered), in consumer order,
    and whether the stages had a shuffle buffer."""
    segments: List[Segment] = []
    pending: List[Position] = []
    shuffled = False
    for consumer in consumers:
        loader = consumer["loader"]
        reader = _reader(loader)
        segments += [list(s) for s in reader["segments"]]
        pending += [list(p) for p in reader.get("pending", [])]
        if "buffer" in loader:
            shuffled = True
            pending += [list(p) for p in loader["buffer"]]
    return segments, pending, shuffled


def _consumer(template: State, shuffled: bool, world: List[int], segments: List[Segment],
              pending: List[Position]) -> State:
    reader = {"segments": segments, "pending": pending}
    loader = {"upstream": reader, "buffer": [], "draws": 0, "exhausted": False} if shuffled else reader
    return {**copy.deepcopy({k: v for k, v in template.items() if k not in ("world", "loader")}),
            "world": world, "loader": loader}


def _yielded(state: State) -> int:
    if "_snapshot" in state:
        return int(state["_snapshot"].get("_snapshot_step", 0))
    return int(state.get("_num_yielded", 0))


def _base_seed(state: State) -> Optional[int]:
    return state.get("_snapshot", {}).get("_main_snapshot", {}).get("_base_seed")


def _loader_state(consumers: List[State], num_workers: int, yielded: int, base_seed: Optional[int]) -> State:
    """A state in ``StatefulDataLoader``'s layout for ``num_workers`` workers (0: the single-process one)."""
    if num_workers == 0:
        return {"_index_sampler_state": None, "_sampler_iter_state": None, "_sampler_iter_yielded": yielded,
                "_num_yielded": yielded, "_IterableDataset_len_called": None, "_shared_seed": None,
                "fetcher_state": {"dataset_iter_state": None, "fetcher_ended": False},
                "dataset_state": consumers[0], "_iterator_finished": False}
    main = {"_num_workers": num_workers, "_sampler_iter_state": None, "_index_sampler_state": None,
            "_sampler_iter_yielded": yielded, "_IterableDataset_len_called": None, "_shared_seed": None,
            "_base_seed": base_seed or 0}   # seeds the workers' own RNGs, not the sample stream
    workers = {f"worker_{i}": {"worker_id": i, "dataset_state": consumer,
                               "fetcher_state": {"fetcher_ended": False, "dataset_iter_state": None}}
               for i, consumer in enumerate(consumers)}
    return {"_snapshot": {"_snapshot_step": yielded, "_last_yielded_worker_id": num_workers - 1,
                          "_main_snapshot": main, "_worker_snapshots": workers},
            "_steps_since_snapshot": 0, "_iterator_finished": False}
