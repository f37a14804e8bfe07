"""Who is consuming: this process's distributed rank and DataLoader worker."""
from __future__ import annotations

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
    return World(rank, world_size, worker, num_workers)


def _distributed() -> "tuple[int, int]":
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except (ImportError, RuntimeError):
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


_SHARING = [1]   # processes of one job that share this machine's cores (materialize's local processes)


def share_cores_among(processes: int) -> None:
    """Declare this process one of ``processes`` that share the machine's cores (each of materialize's local
    processes does), so its decoders keep only its share busy."""
    _SHARING[0] = max(1, processes)


def core_share() -> int:
    """Cores this process may keep busy: the machine's (its CPU affinity) divided among the DataLoader workers
    of this process's rank, or among the job's processes (:func:`share_cores_among`), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    data = sys.modules.get("torch.utils.data")   # not imported: no DataLoader worker, and a curation job stays
    info = data.get_worker_info() if data is not None else None   # without torch
    return max(1, cores // ((info.num_workers if info is not None else 1) * _SHARING[0]))
