"""Ray: one task per shard (retried when its worker dies); the ShardJob and store are put in the object store once
and opened once per worker process, so a worker's tasks share its thread pool and connections.

``distributor_args``: ``address`` (a cluster; default ``RAY_ADDRESS`` or a local one), ``init`` (more
``ray.init`` keywords), ``retries`` (per task, default 3), ``num_cpus_per_task`` (default 1). A Ray already
initialised by the caller is used as is."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

import ray

from .base import Event, follow, last_line, opened_once, run_shard


def run(shard_job, store, todo: List[int], args: Dict[str, Any], *, progress: bool, detach: bool) -> List[int]:
    if detach:
        raise ValueError("--detach: Ray tasks belong to the driver that submits them; use the slurm distributor, "
                         "or run the driver itself detached (ray job submit)")
    cpus = args.get("num_cpus_per_task", 1)
    if not ray.is_initialized():
        init = dict(args.get("init") or {})
        if args.get("address"):
            init["address"] = args["address"]
        ray.init(**{"include_dashboard": False, "log_to_driver": False, **init})
    task = ray.remote(num_cpus=cpus, max_retries=int(args.get("retries", 3)), retry_exceptions=False)(run_shipped)
    shipped = [ray.put((shard_job, store))]   # in a list: Ray passes the reference, not a fresh copy per task
    refs = {task.remote(shipped, k, cpus): k for k in todo}
    return follow(store, todo, _events(refs), progress, "ray")


def run_shipped(shipped: List[Any], shard_id: int, cpus: float = 1) -> int:
    """The task: shard ``shard_id`` of the job whose (ShardJob, store) reference is ``shipped[0]``, fetched and
    unpickled once per worker process, decoding on the task's ``cpus`` (Ray runs as many tasks on a node as its
    CPUs hold)."""
    ref = shipped[0]
    return run_shard(*opened_once(ref.hex(), lambda: ray.get(ref)), shard_id, cpus)


def _events(refs: Dict[Any, int]) -> Iterator[Event]:
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                ray.get(ref)
                yield refs[ref], None
            except Exception as exc:   # the task's own error, or its worker lost past the retries
                yield refs[ref], last_line(exc)
