"""Spark: one task per shard; the ShardJob and store go to the executors once, as a broadcast.

``distributor_args``: ``master`` (default ``local[2]``; ignored when a session is active), ``conf`` (more
Spark settings). A shard's error is returned by its task (so the others go on) and reported as its failure."""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from pyspark import cloudpickle

from .base import follow, log, poll_store, run_shard

#: The shipped (ShardJob, store) of each broadcast, unpickled once per Python worker (by the payload's id).
_SHIPPED: Dict[int, Any] = {}


def run(shard_job, store, todo: List[int], args: Dict[str, Any], *, progress: bool, detach: bool) -> List[int]:
    if detach:
        raise ValueError("--detach: Spark tasks belong to the driver that submits them; use the slurm distributor")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(args.get("master", "local[2]")).appName("streamv2d materialize")
    for key, value in (args.get("conf") or {}).items():
        builder = builder.config(key, value)
    context = builder.getOrCreate().sparkContext
    shipped = context.broadcast(cloudpickle.dumps((shard_job, store)))
    results: List[Tuple[int, Optional[str]]] = []

    def collect() -> None:
        try:
            results.extend(context.parallelize(todo, len(todo)).map(lambda k: _task(shipped, k)).collect())
        except Exception as exc:   # the Spark job itself failed (an executor lost past its retries)
            log.error("spark job failed: %s", exc)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    events = poll_store(store, todo, collector.is_alive, lambda: {k: e for k, e in results if e is not None})
    failed = follow(store, todo, events, progress, "spark")
    collector.join()
    return failed


def _task(shipped, shard_id: int) -> Tuple[int, Optional[str]]:
    """Runs on an executor: shard ``shard_id``, its error as a message rather than a failed Spark job."""
    payload = shipped.value   # the same bytes object for every task of this worker (Spark caches it)
    if id(payload) not in _SHIPPED:
        _SHIPPED[id(payload)] = (payload, cloudpickle.loads(payload))   # the bytes kept: their id stays theirs
    shard_job, store = _SHIPPED[id(payload)][1]
    try:
        run_shard(shard_job, store, shard_id)
        return shard_id, None
    except Exception as exc:
        return shard_id, f"{type(exc).__name__}: {exc}"
