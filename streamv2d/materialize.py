"""``streamv2d materialize``: the dataset's write-through iterator, run to completion by N processes.

Each process takes the next incomplete input shard from a shared queue and drains ``write_through`` for it —
the very generator a training epoch uses — so a materialized folder is exactly what a cached epoch would hold.
Complete shards are skipped, a killed job resumes from the journal, and progress flows back to one tqdm bar.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import time
from dataclasses import dataclass
from typing import Any, List, Optional

from tqdm import tqdm

from .cache import CacheStore, write_through
from .config import JobConfig
from .pipeline import ShardProcessor
from .report import Summary, summarize
from .sample import is_success, media_key
from .sources import open_source

log = logging.getLogger("streamv2d")

_REPORT_EVERY = 0.5   # seconds between a worker's progress messages


@dataclass
class MaterializeResult:
    """What a run did: shards skipped as already complete, shards written, shards that failed, and totals."""

    skipped: int
    written: int
    failed: List[int]
    summary: Summary


def materialize(source: Any, output: str, job: Optional[JobConfig] = None, *, processes: Optional[int] = None,
                progress: bool = True) -> MaterializeResult:
    """Process every incomplete shard of ``source`` into ``output``; see the module docstring."""
    job = job or JobConfig()
    processes = max(1, processes or job.processes)
    processor = ShardProcessor(open_source(source, **job.reading), job.fetch, job.subsamplers)
    store = CacheStore.for_processor(output, processor, fmt=job.output_format, flat=True)
    shards = processor.source.shards()
    todo = [s.id for s in shards if not store.is_complete(s.id)]
    skipped = len(shards) - len(todo)
    if skipped:
        print(f"{skipped} of {len(shards)} shards already complete in {output}; skipping them")
    failed: List[int] = []
    if 0 < len(todo) < processes:
        print(f"{len(todo)} shard(s) to process: running {len(todo)} process(es) rather than {processes} "
              "(a shard is one process's unit of work; lower samples_per_shard for more parallelism)")
    if todo:
        failed = _run(processor, store, todo, min(processes, len(todo)), progress)
    summary = summarize(store.root)
    return MaterializeResult(skipped, len(todo) - len(failed), failed, summary)


def _run(processor: ShardProcessor, store: CacheStore, todo: List[int], processes: int, progress: bool) -> List[int]:
    ctx = mp.get_context("fork")
    tasks, events = ctx.Queue(), ctx.Queue()
    for shard_id in todo:
        tasks.put(shard_id)
    for _ in range(processes):
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(processor, store, tasks, events), daemon=True)
               for _ in range(processes)]
    for w in workers:
        w.start()
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
        bar.close()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
    lost = [s for s in todo if not store.is_complete(s) and s not in failed]
    return sorted(failed + lost)


def _worker(processor: ShardProcessor, store: CacheStore, tasks, events) -> None:
    """Drain ``write_through`` for shard ids from ``tasks`` until a None arrives; report counts on ``events``.
    Ctrl-C is the parent's to handle: it stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        shard_id = tasks.get()
        if shard_id is None:
            return
        counts, last = [0, 0, 0], time.perf_counter()
        try:
            for sample in write_through(processor, processor.source.shards()[shard_id], store):
                counts[0] += 1
                if is_success(sample):
                    counts[1] += 1
                    ext = media_key(sample)
                    counts[2] += len(sample[ext]) if ext else 0
                if time.perf_counter() - last > _REPORT_EVERY:
                    events.put(("progress", shard_id, counts))
                    counts, last = [0, 0, 0], time.perf_counter()
            events.put(("done", shard_id, counts))
        except Exception as exc:  # a bug or a disk error on one shard: report it, keep the others going
            events.put(("error", shard_id, counts + [f"{type(exc).__name__}: {exc}"]))
