"""Threads that an encoder library made real-time, put back to ordinary scheduling.

SVT-AV1 (``libsvtav1``), run as root, gives the thread that opens it, and the workers it starts, ``SCHED_FIFO``
priority 99. Busy threads at that priority starve everything else on the machine: after one AV1 encode the test
suite spun for an hour on 2 cores, and a DataLoader worker would take its trainer down the same way."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

_REALTIME = frozenset(getattr(os, name) for name in ("SCHED_FIFO", "SCHED_RR") if hasattr(os, name))


@contextmanager
def ordinary_scheduling() -> Iterator[None]:
    """Run the block (an encoder's opening); then every thread of this process that it made real-time goes back
    to the policy the calling thread had before it. A process the user made real-time is left as it is."""
    if not _REALTIME or not os.path.isdir("/proc/self/task"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if policy not in _REALTIME:
            for tid in map(int, os.listdir("/proc/self/task")):
                try:
                    if os.sched_getscheduler(tid) in _REALTIME:
                        os.sched_setscheduler(tid, policy, param)
                except OSError:   # the thread ended meanwhile
                    pass


def encode_frame(stream, frame) -> list:
    """``stream.encode(frame)``, opening the encoder (on its first call) under :func:`ordinary_scheduling`."""
    if stream.codec_context.is_open:
        return stream.encode(frame)
    with ordinary_scheduling():
        return stream.encode(frame)
