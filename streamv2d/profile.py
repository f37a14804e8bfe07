"""CPU time by stage (fetch, demux, decode, convert, encode, tar, …), for the benchmarks' per-stage profiles.

Off unless the environment variable ``STREAMV2D_PROFILE`` names a folder when streamv2d is imported; then every
process (materialize workers, DataLoader workers, the main one) adds the CPU seconds its threads spend in each
stage and keeps ``{folder}/{pid}.json`` up to date after each row, so a process killed at the end of a run (a
pool's ``terminate``) has still reported. Stages nest and are counted exclusively: a transcode's time inside its
decoder is ``decode``, the rest of it ``transcode``. CPU time is per thread (``time.thread_time``), so the fetch
pools' threads are measured apart from each other, and waiting (network, locks) is not counted.
"""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Dict, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")

FOLDER: Optional[str] = os.environ.get("STREAMV2D_PROFILE") or None
ENABLED = FOLDER is not None

_totals: Dict[str, float] = {}
_lock = threading.Lock()
_IDLE = nullcontext()
_local = threading.local()   # .name: the stage this thread is in, .since: thread_time when it entered it
_started: Dict[str, float] = {}   # "start-up": this process's CPU seconds when its first stage began


def _forget() -> None:
    """A forked child starts from zero: its parent reports what it did itself."""
    _totals.clear()
    _started.clear()
    _local.__dict__.clear()


if ENABLED:
    os.register_at_fork(after_in_child=_forget)


def _charge(name: Optional[str], now: float) -> None:
    if name is not None:
        with _lock:
            _totals[name] = _totals.get(name, 0.0) + now - _local.since


def stage(name: str) -> ContextManager[None]:
    """Count the calling thread's CPU time inside the block to ``name`` (not to the stage around it); when
    profiling is off, one shared do-nothing context (this sits on per-packet and per-frame paths)."""
    return _measured(name) if ENABLED else _IDLE


@contextmanager
def _measured(name: str) -> Iterator[None]:
    outer, now = getattr(_local, "name", None), time.thread_time()
    if not _started:
        _started["start-up"] = time.process_time()
    _charge(outer, now)
    _local.name, _local.since = name, now
    try:
        yield
    finally:
        now = time.thread_time()
        _charge(name, now)
        _local.name, _local.since = outer, now
        if outer is None:
            save()


def timed(name: str, items: Iterable[T]) -> Iterator[T]:
    """``items``, with the time spent producing each (a demuxer reading packets, say) counted to ``name``; their
    own iterator when profiling is off."""
    return _timed(name, iter(items)) if ENABLED else iter(items)


def _timed(name: str, iterator: Iterator[T]) -> Iterator[T]:
    while True:
        with _measured(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def save() -> None:
    """Write this process's totals, its whole CPU time so far as ``process`` and its CPU before its first stage as
    ``start-up``, to ``{FOLDER}/{pid}.json`` (replaced whole: a reader never sees half); nothing when profiling is
    off."""
    if not ENABLED:
        return
    with _lock:
        text = json.dumps({**_totals, "process": time.process_time(), **_started})
    path = os.path.join(FOLDER, f"{os.getpid()}.json")
    tmp = f"{path}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:   # a profile must never fail a job
        pass


def collect(folder: str) -> Dict[int, Dict[str, float]]:
    """The CPU seconds by stage (and ``process``: all of it; ``start-up``: before its first stage) of every process
    that reported into ``folder``, by pid."""
    out: Dict[int, Dict[str, float]] = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                out[int(name[:-len(".json")])] = json.load(f)
    return out
