"""Who is consuming: this process's distributed rank and DataLoader worker."""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class World:
    """One consumer's coordinates: ``rank`` of ``world_size`` ranks, ``worker`` of ``num_workers`` workers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self):
        if not (0 <= self.rank < self.world_size) or not (0 <= self.worker < self.num_workers):
            raise ValueError(f"invalid world {self}")


def current_world(rank: Optional[int] = None, world_size: Optional[int] = None) -> World:
    """The calling consumer: explicit arguments, else torch.distributed when initialised, else the
    ``RANK``/``WORLD_SIZE`` environment (torchrun, Slurm wrappers), else a single rank; the worker comes
    from ``torch.utils.data.get_worker_info()``."""
    if rank is None or world_size is None:
        detected_rank, detected_size = _distributed()
        rank = detected_rank if rank is None else rank
        world_size = detected_size if world_size is None else world_size
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    local_ranks()   # a bad LOCAL_WORLD_SIZE stops the epoch before its first row, not each row's decode
    return World(rank, world_size, worker, num_workers)


def _distributed() -> "tuple[int, int]":
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except (ImportError, RuntimeError):
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


_SHARING = {"processes": 1, "granted": None}   # how this process shares the machine (share_cores_among)


def machine_cores() -> int:
    """The CPUs this process may run on: its affinity, as a container, ``taskset`` or a Slurm cgroup limits it."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def share_cores_among(processes: int, granted: Optional[float] = None) -> None:
    """Declare this process one of ``processes`` of a job that share ``granted`` cores (default the machine's):
    each of materialize's local processes does, and an engine's task with the CPUs its engine granted it (Ray's
    ``num_cpus_per_task``, Spark's ``spark.task.cpus``, the Slurm allocation), so its decoders keep only its share
    busy."""
    if granted is not None and not granted > 0:
        raise ValueError(f"granted cores must be positive, got {granted!r}")
    _SHARING.update(processes=max(1, processes), granted=granted)


def local_ranks(environ=os.environ) -> int:
    """Ranks of this job on this machine, sharing its cores: torchrun's ``LOCAL_WORLD_SIZE``; 1 without it, or
    when this rank was pinned to its share (it may run on fewer CPUs than its cgroup allows: a Slurm allocation or a
    container limits the cgroup, and so every rank, alike)."""
    text = environ.get("LOCAL_WORLD_SIZE")
    if text is None:
        return 1
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise ValueError(f"LOCAL_WORLD_SIZE: {text!r} is not a positive number of ranks")
    return 1 if machine_cores() < (cgroup_cpus() or os.cpu_count() or 1) else ranks


@functools.lru_cache(maxsize=1)
def cgroup_cpus() -> Optional[int]:
    """How many CPUs this process's cgroup allows (cgroup v2's ``cpuset.cpus.effective``, v1's
    ``cpuset.effective_cpus``), or None where that cannot be read; read once per process (every row asks)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    files = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0":
            files.append(f"/sys/fs/cgroup{path.rstrip('/')}/cpuset.cpus.effective")
        elif "cpuset" in controllers.split(","):
            files.append(f"/sys/fs/cgroup/cpuset{path.rstrip('/')}/cpuset.effective_cpus")
    for name in files:
        try:
            with open(name) as f:
                count = cpu_list_size(f.read())
        except (OSError, ValueError):
            continue
        if count:
            return count
    return None


def cpu_list_size(text: str) -> int:
    """The CPUs of a kernel CPU list (``0-3,8-11`` is 8)."""
    count = 0
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def core_share() -> int:
    """Cores this process may keep busy: the machine's (:func:`machine_cores`, or fewer granted to its task),
    divided among the ranks on this machine (:func:`local_ranks`), then among the DataLoader workers of this
    process's rank or the job's local processes (:func:`share_cores_among`); at least 1."""
    cores = machine_cores()
    if _SHARING["granted"] is not None:
        cores = min(cores, max(1, int(_SHARING["granted"])))
    cores //= local_ranks()
    data = sys.modules.get("torch.utils.data")   # not imported: no DataLoader worker, and a curation job stays
    info = data.get_worker_info() if data is not None else None   # without torch
    return max(1, cores // ((info.num_workers if info is not None else 1) * _SHARING["processes"]))
