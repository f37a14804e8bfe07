"""Slurm: a job array submitted with ``sbatch``, one array task per group of shards, followed until it ends.

The opened ShardJob and the store are pickled once into the store's hidden folder (``.streamv2d/jobs/``),
which every node reaches by definition; each task loads it and runs its group (``python -m
streamv2d.engines.slurm JOBFILE TASK``). Tasks inherit the submitting environment (``sbatch`` exports it), so
they need the same Python environment and, for an object store, credentials from the environment or fsspec
config rather than ``storage_options`` given in Python.

``distributor_args``: ``shards_per_task`` (default 1), ``max_parallel`` (array tasks at once), ``sbatch_args``
(a list, e.g. ``["--partition=cpu", "--cpus-per-task=4"]``), ``python`` (default this interpreter),
``log_dir`` (default the store's hidden folder, or the scratch folder for object stores), ``poll_seconds``."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from typing import Any, Dict, List, Sequence

import fsspec

from ..cache.layout import meta_dir
from .base import POLL_SECONDS, follow, last_line, poll_store, run_shard, shard_groups


def run(shard_job, store, todo: List[int], args: Dict[str, Any], *, progress: bool, detach: bool):
    groups = shard_groups(todo, int(args.get("shards_per_task", 1)))
    job_file = f"{meta_dir(store.root)}/jobs/{uuid.uuid4().hex}.pkl"
    if store.location.local:
        os.makedirs(os.path.dirname(job_file), exist_ok=True)
    with store.location.open(job_file, "wb") as f:
        pickle.dump((shard_job, store, groups), f)
    job_id = submit(store.location.display(job_file), len(groups), args, _log_dir(store, args))
    if detach:
        return job_id
    events = poll_store(store, todo, lambda: running(job_id), lambda: _failures(store, todo),
                        float(args.get("poll_seconds", POLL_SECONDS)))
    return follow(store, todo, events, progress, f"slurm {job_id}")


def _log_dir(store, args: Dict[str, Any]) -> str:
    folder = args.get("log_dir") or os.path.join(store.work or meta_dir(store.root), "slurm")
    os.makedirs(folder, exist_ok=True)
    return folder


def submit(job_file: str, tasks: int, args: Dict[str, Any], log_dir: str) -> str:
    """Submit the array of ``tasks`` tasks running ``job_file``; its job id (ValueError with sbatch's message)."""
    array = f"0-{tasks - 1}" + (f"%{int(args['max_parallel'])}" if args.get("max_parallel") else "")
    script = f"#!/bin/sh\nexec {args.get('python', sys.executable)} -m streamv2d.engines.slurm {job_file} " \
             "$SLURM_ARRAY_TASK_ID\n"
    command = ["sbatch", "--parsable", f"--array={array}", "--job-name=streamv2d",
               f"--output={os.path.join(log_dir, '%A_%a.log')}", *list(args.get("sbatch_args") or [])]
    try:
        done = subprocess.run(command, input=script, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ValueError("distributor slurm: sbatch is not on PATH (run on a Slurm login node)") from None
    if done.returncode != 0:
        raise ValueError(f"distributor slurm: sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


def running(job_id: str) -> bool:
    """Whether any task of array job ``job_id`` is still pending or running."""
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def _failures(store, todo: Sequence[int]) -> Dict[int, str]:
    """The errors tasks recorded on the store for shards of ``todo``."""
    found = {}
    for shard_id in todo:
        record = store.location.read_json(store.paths(shard_id).failure)
        if record is not None:
            found[shard_id] = record.get("error", "failed")
    return found


def task_main(job_file: str, task: int) -> int:
    """One array task: the shards of group ``task``; exit 1 when any of them failed (the others still run)."""
    with fsspec.open(job_file, "rb") as f:   # credentials for a store come from the environment
        shard_job, store, groups = pickle.load(f)
    status = 0
    for shard_id in groups[task]:
        try:
            run_shard(shard_job, store, shard_id)
        except Exception as exc:
            print(f"shard {shard_id} failed: {last_line(exc)}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(task_main(sys.argv[1], int(sys.argv[2])))
