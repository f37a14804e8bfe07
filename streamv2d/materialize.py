"""``streamv2d materialize``: every shard job of a :class:`~streamv2d.job.Job`, run to completion by N processes
(or by a cluster engine, :mod:`streamv2d.engines`; under torchrun each rank takes shards ``rank::world_size``).

Each process takes the next incomplete input shard from a shared queue and runs its unit of work
(:meth:`ShardJob.run`: the very write-through stage a training epoch uses), so a materialized folder is exactly
what a cached epoch would hold. Complete shards are skipped, a killed job resumes from the shards' journals, a
shard another run holds is left to it (and waited for at the end, or taken over if its holder dies), and
progress flows back to one tqdm bar. Workers die with their parent, whatever kills it.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from tqdm import tqdm

from .cache import CacheStore, write_through
from .cache.through import ShardBusy
from .cache.lease import LEASE_SECONDS
from .distribute.world import local_ranks, machine_cores, share_cores_among
from .engines import run_engine
from .engines.base import rank_shards
from .job import Job, positive_int
from .report import Summary, summarize
from .sample import is_success, media_key
from .shard import ShardJob

log = logging.getLogger("streamv2d")

#: Distributors run by this module's local processes (torchrun: one such run per rank).
LOCAL = ("multiprocessing", "torchrun")

_REPORT_EVERY = 0.5   # seconds between a worker's progress messages


@dataclass
class MaterializeResult:
    """What a run did: shards skipped as already complete, shards written, shards that failed, and totals;
    ``submitted`` is the cluster job id of a detached run (which did not wait)."""

    skipped: int
    written: int
    failed: List[int]
    summary: Summary
    submitted: Optional[str] = None


def materialize(source: Any, output: str, job: Optional[Job] = None, *, processes: Optional[int] = None,
                progress: bool = True, distributor: Optional[str] = None,
                distributor_args: Optional[Mapping[str, Any]] = None, detach: bool = False,
                storage_options: Optional[Dict[str, Any]] = None, tmp_dir: Optional[str] = None,
                lease_seconds: float = LEASE_SECONDS) -> MaterializeResult:
    """Process every incomplete shard of ``job`` on ``source`` (None: the job's own) into ``output`` (a folder
    or an fsspec URL, opened with ``storage_options``); see the module docstring. ``distributor`` (default the
    job's) runs the shards elsewhere (:mod:`streamv2d.engines`); ``detach`` returns once they are submitted.
    Spools and journals for an object store go to ``tmp_dir``. Stages a shard cannot hold (``Frames``) are
    refused before anything runs."""
    changes: Dict[str, Any] = {"source": source} if source is not None else {}
    if distributor is not None:
        changes.update(distributor=distributor, distributor_args=distributor_args or {})
    elif distributor_args is not None:
        changes["distributor_args"] = distributor_args
    job = (job or Job()).replace(**changes)
    job.require_cacheable("materialize")
    asked = positive_int("processes", processes if processes is not None else job.processes, allow_none=True)
    local_ranks()   # a bad LOCAL_WORLD_SIZE stops the job here, not in every row's decode
    shard_job = ShardJob(job)
    store = CacheStore.for_job(output, shard_job, fmt=job.output_format, flat=True, storage_options=storage_options,
                               tmp_dir=tmp_dir, lease_seconds=lease_seconds)
    mine = rank_shards([s.id for s in shard_job.shards()], job.distributor)
    store.location.fresh()
    done = {int(n) for n in store.location.published_names(store.root)}
    todo = [k for k in mine if k not in done or not store.is_complete(k)]
    skipped = len(mine) - len(todo)
    if skipped:
        print(f"{skipped} of {len(mine)} shards already complete in {output}; skipping them")
    failed: List[int] = []
    submitted = None
    if job.distributor in LOCAL:
        if asked is not None and 0 < len(todo) < asked:
            print(f"{len(todo)} shard(s) to process: running {len(todo)} process(es) rather than {asked} "
                  "(a shard is one process's unit of work; lower samples_per_shard for more parallelism)")
        if detach:
            raise ValueError("--detach: local processes end with the command; use the slurm distributor")
        if todo:
            failed = _run(shard_job, store, todo, min(asked or usable_cpus(), len(todo)), progress)
    elif todo:
        outcome = run_engine(job.distributor, shard_job, store, todo, job.distributor_args, progress=progress,
                             detach=detach)
        failed, submitted = ([], outcome) if detach else (outcome, None)
    summary = summarize(store.location.display(store.root), store.location.storage_options)
    written = 0 if detach else len(todo) - len(failed)
    return MaterializeResult(skipped, written, failed, summary, submitted)


def usable_cpus() -> int:
    """The default number of local processes: the CPUs this process may run on (its affinity, as a container or
    ``taskset`` limits it), shared with the other torchrun ranks on this machine."""
    return max(1, machine_cores() // local_ranks())


def _run(shard_job: ShardJob, store: CacheStore, todo: List[int], processes: int, progress: bool) -> List[int]:
    ctx = mp.get_context("fork")
    tasks, events = ctx.Queue(), ctx.Queue()
    for shard_id in todo:
        tasks.put(shard_id)
    for _ in range(processes):
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(shard_job, store, tasks, events, processes), daemon=True)
               for _ in range(processes)]
    for w in workers:
        w.start()
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)   # kill: stop the workers too
    bar = tqdm(total=len(todo), unit="shard", disable=not progress, dynamic_ncols=True)
    samples = successes = nbytes = 0
    failed: List[int] = []
    start, finished = time.perf_counter(), 0
    try:
        while finished < len(todo):
            try:
                kind, shard_id, counts = events.get(timeout=1.0)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                continue
            samples += counts[0]
            successes += counts[1]
            nbytes += counts[2]
            if kind in ("done", "error"):
                finished += 1
                bar.update(1)
                if kind == "error":
                    failed.append(shard_id)
                    log.error("shard %d failed: %s", shard_id, counts[3])
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{samples / elapsed:.1f} samples/s, {successes / max(samples, 1):.0%} ok, "
                                f"{nbytes / elapsed / 1e6:.1f} MB/s", refresh=False)
    except KeyboardInterrupt:
        for w in workers:          # journaled rows are safe; the rest is redone on the next run
            w.terminate()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        bar.close()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
    lost = [s for s in todo if not store.is_complete(s) and s not in failed]
    return sorted(failed + lost)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), even by ``kill -9``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: the parent's SIGTERM handler still stops us
        return
    if os.getppid() == 1:               # the parent died before the request took effect
        os._exit(1)


def _worker(shard_job: ShardJob, store: CacheStore, tasks, events, processes: int) -> None:
    """Run the unit of work for shard ids from ``tasks`` until a None arrives; report counts on ``events``.
    A shard another process holds is left for last, then waited for: done by its holder, or taken over when
    the holder dies (its lease goes with it). Ctrl-C is the parent's to handle: it stops the workers. One of
    ``processes`` on this machine, it decodes on its share of the cores."""
    share_cores_among(processes)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    deferred: List[int] = []
    while True:
        shard_id = tasks.get()
        if shard_id is None:
            break
        if not _run_one(shard_job, store, shard_id, events):
            deferred.append(shard_id)
    while deferred:   # each is published by its holder, or taken over once the holder died
        shard_id = deferred.pop(0)
        with store.lease(shard_id) as lease:
            lease.acquire(exclusive=False, wait=True)   # returns once the holder published or died
        if not _run_one(shard_job, store, shard_id, events):
            deferred.append(shard_id)


def _run_one(shard_job: ShardJob, store: CacheStore, shard_id: int, events) -> bool:
    """Run shard ``shard_id`` to completion, reporting on ``events``; False (nothing fetched) when another
    process holds it — the lease is taken in the same step that would write it, so two runs never both fetch."""
    counts, last = [0, 0, 0], time.perf_counter()
    try:
        for sample in write_through(shard_job, shard_id, store, on_disk_error="raise", if_busy="raise"):
            counts[0] += 1
            if is_success(sample):
                counts[1] += 1
                ext = media_key(sample)
                counts[2] += len(sample[ext]) if ext else 0
            if time.perf_counter() - last > _REPORT_EVERY:
                events.put(("progress", shard_id, counts))
                counts, last = [0, 0, 0], time.perf_counter()
        events.put(("done", shard_id, counts))
    except ShardBusy:
        return False
    except Exception as exc:  # a bug or a disk error on one shard: report it, keep the others going
        store.record_failure(shard_id, f"{type(exc).__name__}: {exc}")
        events.put(("error", shard_id, counts + [f"{type(exc).__name__}: {exc}"]))
    return True
