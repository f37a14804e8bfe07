"""What every engine shares: the task body around ``ShardJob.run``, the torchrun rank split, and following
progress to the end with the usual bar."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..distribute.world import share_cores_among

log = logging.getLogger("streamv2d")

#: Seconds between two looks at the store when an engine has no channel of its own.
POLL_SECONDS = 1.0

Event = Tuple[int, Optional[str]]   # (shard id, error message or None)

#: The (ShardJob, store) this worker process opened, by the key of its shipment: every task of a job on one worker
#: shares one (unpickled once; its thread pool, HTTP connections and table cursor reused across shards).
_OPENED: Dict[str, Tuple[Any, Any]] = {}


def run_shard(shard_job, store, shard_id: int, granted: Optional[float] = None) -> int:
    """The task body every engine runs: shard ``shard_id`` to completion, decoding on the ``granted`` CPUs its
    engine gave the task (None: the machine's); a failure is recorded on the store (for ``status``) and raised.
    Returns the shard id."""
    share_cores_among(1, granted)
    try:
        shard_job.run(shard_id, store)
    except Exception as exc:
        store.record_failure(shard_id, f"{type(exc).__name__}: {exc}")
        raise
    return shard_id


def opened_once(key: str, load: Callable[[], Tuple[Any, Any]]) -> Tuple[Any, Any]:
    """The (ShardJob, store) shipped under ``key``, ``load()``-ed the first time this process sees ``key``; one job
    at a time (an earlier job's is dropped, its pool with it)."""
    if key not in _OPENED:
        _OPENED.clear()
        _OPENED[key] = load()
    return _OPENED[key]


def rank_shards(ids: Sequence[int], distributor: str, environ=os.environ) -> List[int]:
    """The shards this rank takes: ``ids[rank::world_size]`` from ``RANK``/``WORLD_SIZE`` (torchrun), all
    of them without; ``torchrun`` requires the variables."""
    if "WORLD_SIZE" not in environ:
        if distributor == "torchrun":
            raise ValueError("distributor torchrun: RANK/WORLD_SIZE are not set; start it with torchrun "
                             "--nproc-per-node N -m streamv2d.cli materialize …")
        return list(ids)
    rank, world = int(environ.get("RANK", 0)), int(environ["WORLD_SIZE"])
    if not 0 <= rank < world:
        raise ValueError(f"RANK/WORLD_SIZE: rank {rank} is not in 0..{world - 1}")
    return list(ids[rank::world])


def shard_groups(todo: Sequence[int], per_task: int) -> List[List[int]]:
    """``todo`` cut into consecutive groups of ``per_task`` shards, one per task (fewer, longer tasks: an engine's
    per-task cost is paid once per group); ValueError naming the setting when ``per_task`` < 1."""
    if per_task < 1:
        raise ValueError(f"distributor_args.shards_per_task: {per_task} is not >= 1")
    return [list(todo[i:i + per_task]) for i in range(0, len(todo), per_task)]


def poll_store(store, todo: Iterable[int], running: Callable[[], bool],
               errors: Callable[[], Dict[int, str]] = dict, every: float = POLL_SECONDS,
               wait: Callable[[float], object] = time.sleep) -> Iterator[Event]:
    """Events of shards ``todo`` as they appear complete on the store (one listing per look), while
    ``running()``; then the ``errors()`` of those that did not complete. Between looks it calls ``wait(every)``:
    an engine that can tell when its job ends passes a wait that returns then (no idle interval at the end)."""
    pending = set(todo)
    while pending:
        alive = running()
        store.location.fresh()
        done = pending & {int(n) for n in store.location.published_names(store.root)}
        for shard_id in sorted(done):
            yield shard_id, None
        pending -= done
        if not alive:
            break
        wait(every)
    failures = errors()
    for shard_id in sorted(pending & set(failures)):
        yield shard_id, failures[shard_id]


def follow(store, todo: Sequence[int], events: Iterable[Event], progress: bool, what: str) -> List[int]:
    """Show ``events`` on a progress bar (samples/s and success rate from each done shard's stats); the
    shards that failed or never completed."""
    bar = tqdm(total=len(todo), unit="shard", disable=not progress, dynamic_ncols=True, desc=what)
    samples = successes = rows = 0
    failed: List[int] = []
    start = time.perf_counter()
    try:
        for shard_id, error in events:
            bar.update(1)
            if error is not None:
                failed.append(shard_id)
                log.error("shard %d failed: %s", shard_id, error)
                continue
            stats = store.stats(shard_id)
            samples, successes, rows = samples + stats.samples, successes + stats.successes, rows + stats.count
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{samples / elapsed:.1f} samples/s, {successes / max(rows, 1):.0%} ok",
                                refresh=False)
    finally:
        bar.close()
    lost = [k for k in todo if k not in failed and not store.is_complete(k)]
    return sorted(failed + lost)


def last_line(exc: BaseException) -> str:
    """A remote exception's message in one line (engines wrap the task's traceback)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
