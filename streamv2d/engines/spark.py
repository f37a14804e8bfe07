"""Spark: one task per group of shards (``shards_per_task``, default 1); the ShardJob and store go to the
executors once, as a broadcast, and are unpickled once per Python worker, which Spark reuses across tasks.

``distributor_args``: ``master`` (default ``local[2]``; ignored when a session is active), ``conf`` (more
Spark settings), ``shards_per_task`` (a Spark task costs a few hundred ms of scheduling and Python hand-off: group
small shards). A shard's error is returned by its task (so the others go on) and reported as its failure."""
from __future__ import annotations

import os
import sys
import threading
import uuid
from typing import Any, Dict, List, Optional, Tuple

from pyspark import TaskContext, cloudpickle

from .base import follow, log, opened_once, poll_store, run_shard, shard_groups

#: Settings of a session this engine starts (``conf`` overrides them): Python workers reused across tasks, so a
#: worker imports streamv2d and opens the job once rather than per task.
SESSION_DEFAULTS = {"spark.python.worker.reuse": "true"}


def run(shard_job, store, todo: List[int], args: Dict[str, Any], *, progress: bool, detach: bool) -> List[int]:
    if detach:
        raise ValueError("--detach: Spark tasks belong to the driver that submits them; use the slurm distributor")
    groups = shard_groups(todo, int(args.get("shards_per_task", 1)))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(args.get("master", "local[2]")).appName("streamv2d materialize")
    for key, value in {**SESSION_DEFAULTS, **(args.get("conf") or {})}.items():
        builder = builder.config(key, value)
    context = builder.getOrCreate().sparkContext
    shipped, token = context.broadcast(cloudpickle.dumps((shard_job, store))), uuid.uuid4().hex
    results: List[Tuple[int, Optional[str]]] = []

    def collect() -> None:
        try:
            tasks = context.parallelize(groups, len(groups))
            results.extend(tasks.flatMap(lambda group: [_task(shipped, token, k) for k in group]).collect())
        except Exception as exc:   # the Spark job itself failed (an executor lost past its retries)
            log.error("spark job failed: %s", exc)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    events = poll_store(store, todo, collector.is_alive, lambda: {k: e for k, e in results if e is not None},
                        wait=collector.join)   # the last look comes as the Spark job ends, not up to a poll later
    failed = follow(store, todo, events, progress, "spark")
    collector.join()
    return failed


def _task(shipped, token: str, shard_id: int) -> Tuple[int, Optional[str]]:
    """Runs on an executor: shard ``shard_id`` on the task's CPUs (``spark.task.cpus``: an executor runs as many
    tasks at once as its cores hold), its error as a message rather than a failed Spark job."""
    shard_job, store = opened_once(token, lambda: cloudpickle.loads(shipped.value))
    context = TaskContext.get()
    try:
        run_shard(shard_job, store, shard_id, context.cpus() if context is not None else None)
        return shard_id, None
    except Exception as exc:
        return shard_id, f"{type(exc).__name__}: {exc}"
