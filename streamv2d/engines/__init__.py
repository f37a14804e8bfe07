"""Engines: who runs the shard jobs of a ``materialize``. Each is a thin adapter that ships the opened
:class:`~streamv2d.shard.ShardJob` (listed once, picklable) and the store to its workers, calls
``ShardJob.run(k, store)`` there, and follows progress until done — never a scheduler of its own.

``multiprocessing`` (local processes, the default; under torchrun each rank takes shards ``rank::world_size``),
``torchrun`` (the same, but requires ``RANK``/``WORLD_SIZE``), ``ray`` (tasks with retries), ``spark`` (one
task per group of shards, default one), ``slurm`` (a job array, one task per group of shards)."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Mapping, Optional, Tuple

#: Distributor name → its module (None: the local processes of :mod:`streamv2d.materialize`), and its arguments.
DISTRIBUTORS: Dict[str, Tuple[Optional[str], Tuple[str, ...]]] = {
    "multiprocessing": (None, ()),
    "torchrun": (None, ()),
    "ray": ("streamv2d.engines.ray", ("address", "init", "retries", "num_cpus_per_task")),
    "spark": ("streamv2d.engines.spark", ("master", "conf", "shards_per_task")),
    "slurm": ("streamv2d.engines.slurm", ("shards_per_task", "max_parallel", "sbatch_args", "python", "log_dir",
                                          "poll_seconds")),
}
#: Arguments that must be whole counts of at least 1 (shards, tasks) or positive numbers (CPUs, seconds), checked
#: when the job is made.
COUNTS, AMOUNTS = ("shards_per_task", "max_parallel"), ("num_cpus_per_task", "poll_seconds")
#: What each engine needs installed, for the message when it is missing.
EXTRAS = {"ray": "ray", "spark": "spark"}


def check_distributor(name: str, args: Optional[Mapping[str, Any]]) -> Tuple[str, Dict[str, Any]]:
    """``(name, args)`` checked: a known distributor and only the arguments it takes (ValueError otherwise)."""
    if name not in DISTRIBUTORS:
        raise ValueError(f"distributor: {name!r} is not one of {', '.join(DISTRIBUTORS)}")
    args = dict(args or {})
    unknown = sorted(set(args) - set(DISTRIBUTORS[name][1]))
    if unknown:
        raise ValueError(f"distributor_args: {unknown} mean nothing to {name}; it takes "
                         f"{list(DISTRIBUTORS[name][1]) or 'none'}")
    for key in set(args) & set(COUNTS + AMOUNTS):
        value, kinds = args[key], (int,) if key in COUNTS else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
            raise ValueError(f"distributor_args.{key}: {value!r} is not a positive "
                             f"{'whole number' if key in COUNTS else 'number'}")
    return name, args


def engine(name: str):
    """The module running distributor ``name`` (ImportError naming the extra when its package is missing)."""
    module = DISTRIBUTORS[name][0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"distributor {name}: {exc}; pip install 'streamv2d[{EXTRAS.get(name, name)}]'") from None


def run_engine(name: str, shard_job, store, todo: List[int], args: Mapping[str, Any], *, progress: bool,
               detach: bool = False):
    """Run the shard jobs ``todo`` on distributor ``name``; the shards that failed (or, with ``detach``, the
    submission's id)."""
    return engine(name).run(shard_job, store, todo, dict(args), progress=progress, detach=detach)
