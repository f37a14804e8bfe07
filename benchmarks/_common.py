"""Shared benchmark helpers: medians of repeats, a video corpus served from its own process, printing."""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

# run as ``python benchmarks/<name>.py`` from the repository root: import the checkout's streamv2d
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from streamv2d.demo import LoopbackServer, make_corpus  # noqa: E402

Row = Dict[str, object]


def median_rows(rows: Sequence[Row]) -> Row:
    """Per-field median of repeated measurements (non-numeric fields are taken from the first row)."""
    out: Row = {}
    for key, first in rows[0].items():
        values = [r[key] for r in rows]
        if isinstance(first, int):
            out[key] = statistics.median_low(values)   # counts stay integers
        else:
            out[key] = statistics.median(values) if isinstance(first, float) else first
    return out


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print ``rows`` as an aligned text table (floats with 3 significant decimals)."""
    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cols = list(rows[0])
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(f"\n## {title}")
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()


def peak_rss_mb() -> float:
    """Peak resident set size of this process's memory so far, in MiB (``VmHWM``: unlike ``ru_maxrss``,
    it is not inherited from the parent across fork + exec)."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def corpus(folder: str, count: int) -> List[str]:
    """``count`` small synthetic videos in ``folder`` (made once, reused by later runs)."""
    print(f"corpus: {count} videos in {folder} …", flush=True)
    return make_corpus(folder, count)


def _serve(directory: str, port: int, conn, stop) -> None:
    try:
        server = LoopbackServer(directory, port)   # a fixed port keeps URL tables cached on disk valid
    except OSError as exc:
        conn.send(f"error: cannot serve on 127.0.0.1:{port}: {exc}")
        return
    with server:
        conn.send(server.base_url)
        stop.wait()


@contextmanager
def served(directory: str, port: int = 0) -> Iterator[str]:
    """Serve ``directory`` with the demo ``LoopbackServer`` in a child process (as a CDN would be another
    machine, so it does not share the benchmark's GIL); yields its base URL."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(directory, port, child, stop), daemon=True)
    proc.start()
    try:
        base = parent.recv()
        if base.startswith("error"):
            raise RuntimeError(base)
        yield base
    finally:
        stop.set()
        proc.join(5)
