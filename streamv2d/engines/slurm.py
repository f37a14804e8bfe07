"""Slurm: a job array submitted with ``sbatch``, one array task per group of shards, followed until it ends.

The opened ShardJob and the store are pickled once into the store's hidden folder (``.streamv2d/jobs/``),
which every node reaches by definition; each task loads it and runs its group (``python -m
streamv2d.engines.slurm JOBFILE TASK``). The file is signed (HMAC-SHA256) with a key made for the submission
that reaches the tasks only through their environment (``STREAMV2D_JOB_KEY``, exported by ``sbatch``, never on a
command line or in the store): a task unpickles nothing anyone with write access to the store could have put
there. Tasks inherit the submitting environment (``sbatch`` exports it), so they need the same Python
environment; the store's ``storage_options`` given in Python reach them the same way as the key
(``STREAMV2D_JOB_STORAGE``, JSON), so the tasks can read the job file from an object store.

``distributor_args``: ``shards_per_task`` (default 1), ``max_parallel`` (array tasks at once), ``sbatch_args``
(a list, e.g. ``["--partition=cpu", "--cpus-per-task=4"]``), ``python`` (default this interpreter),
``log_dir`` (default the store's hidden folder, or the scratch folder for object stores), ``poll_seconds``."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
import subprocess
import sys
import uuid
from typing import Any, Dict, List, Optional, Sequence

import fsspec

from ..cache.layout import meta_dir
from .base import POLL_SECONDS, follow, last_line, poll_store, run_shard, shard_groups


#: The environment variables carrying a submission's signing key, and its store's storage options, to its tasks.
KEY_VARIABLE, STORAGE_VARIABLE = "STREAMV2D_JOB_KEY", "STREAMV2D_JOB_STORAGE"


def run(shard_job, store, todo: List[int], args: Dict[str, Any], *, progress: bool, detach: bool):
    groups = shard_groups(todo, int(args.get("shards_per_task", 1)))
    job_file = f"{meta_dir(store.root)}/jobs/{uuid.uuid4().hex}.pkl"
    if store.location.local:
        os.makedirs(os.path.dirname(job_file), exist_ok=True)
    key = secrets.token_hex(32)
    payload = pickle.dumps((shard_job, store, groups))
    with store.location.open(job_file, "wb") as f:
        f.write(_signature(key, payload) + payload)
    environment = {KEY_VARIABLE: key, STORAGE_VARIABLE: _options_text(store.location.storage_options)}
    job_id = submit(store.location.display(job_file), len(groups), args, _log_dir(store, args), environment)
    if detach:
        return job_id
    events = poll_store(store, todo, lambda: running(job_id), lambda: _failures(store, todo),
                        float(args.get("poll_seconds", POLL_SECONDS)))
    return follow(store, todo, events, progress, f"slurm {job_id}")


def _log_dir(store, args: Dict[str, Any]) -> str:
    folder = args.get("log_dir") or os.path.join(store.work or meta_dir(store.root), "slurm")
    os.makedirs(folder, exist_ok=True)
    return folder


def _options_text(options: Dict[str, Any]) -> str:
    try:
        return json.dumps(options or {})
    except TypeError as exc:
        raise ValueError(f"distributor slurm: storage_options must be JSON to reach the tasks ({exc}); give the "
                         "store's credentials through the environment or fsspec's config instead") from None


def _signature(key: str, payload: bytes) -> bytes:
    return hmac.new(bytes.fromhex(key), payload, hashlib.sha256).digest()


def submit(job_file: str, tasks: int, args: Dict[str, Any], log_dir: str, environment: Dict[str, str]) -> str:
    """Submit the array of ``tasks`` tasks running ``job_file``, with ``environment`` added to what they inherit;
    its job id (ValueError with sbatch's message)."""
    array = f"0-{tasks - 1}" + (f"%{int(args['max_parallel'])}" if args.get("max_parallel") else "")
    script = f"#!/bin/sh\nexec {args.get('python', sys.executable)} -m streamv2d.engines.slurm {job_file} " \
             "$SLURM_ARRAY_TASK_ID\n"
    command = ["sbatch", "--parsable", f"--array={array}", "--job-name=streamv2d",
               f"--output={os.path.join(log_dir, '%A_%a.log')}", *list(args.get("sbatch_args") or [])]
    try:
        done = subprocess.run(command, input=script, capture_output=True, text=True, check=False,
                              env={**os.environ, **environment})
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


def allocated_cpus(environ=os.environ) -> Optional[int]:
    """The CPUs Slurm allocated this task on its node (``SLURM_CPUS_ON_NODE``: ``--cpus-per-task``, or the node
    with ``--exclusive``), which its decoders keep busy; None outside Slurm. Array tasks share a node's cores."""
    text = environ.get("SLURM_CPUS_ON_NODE", "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def task_main(job_file: str, task: int) -> int:
    """One array task: the shards of group ``task``; exit 1 when any of them failed (the others still run)."""
    with fsspec.open(job_file, "rb", **json.loads(os.environ.get(STORAGE_VARIABLE) or "{}")) as f:
        signed = f.read()
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        raise SystemExit(f"{job_file}: {KEY_VARIABLE} is not set: this task was not submitted by streamv2d")
    signature, payload = signed[:32], signed[32:]
    if not hmac.compare_digest(signature, _signature(key, payload)):
        raise SystemExit(f"{job_file}: the signature does not match: the job file was changed after submission; "
                         "nothing of it is run")
    shard_job, store, groups = pickle.loads(payload)
    status, granted = 0, allocated_cpus()
    for shard_id in groups[task]:
        try:
            run_shard(shard_job, store, shard_id, granted)
        except Exception as exc:
            print(f"shard {shard_id} failed: {last_line(exc)}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(task_main(sys.argv[1], int(sys.argv[2])))
