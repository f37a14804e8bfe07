"""Shard listing and first-sample latency on big URL tables: 10 M-row parquet (default and small row groups)
and a 1 M-row csv (first-time conversion to the Arrow IPC table cache, then cached).

Every measurement runs in a fresh process (clean peak RSS, cold Python state); the tables are generated once
with pyarrow in batches and cached under ``--data-dir``. Every URL is real: it points at a loopback server on
a fixed ``--port`` serving a few videos (the query string makes each URL distinct).

    python benchmarks/parquet_listing.py                                   # 10 M parquet, 1 M csv, 3 repeats
    python benchmarks/parquet_listing.py --rows 1000000 --csv-rows 100000 --repeats 1   # quick
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import time
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from _common import Row, corpus, current_rss_mb, median_rows, peak_rss_mb, print_table, served

_WORDS = ("aerial view of a forest river at sunset city traffic night time lapse slow motion young woman man "
          "smiling walking beach waves ocean mountain snow winter summer close up hands cooking kitchen "
          "business meeting office laptop drone shot over green field cloudy sky rain street people crowd "
          "children playing park dog running grass flowers blooming macro bee insect water drops").split()


def _phrases(rng: np.random.Generator, count: int, low: int, high: int, sep: str) -> pa.Array:
    """``count`` distinct-ish word sequences, to be picked from per row (cheap, yet realistic lengths)."""
    return pa.array([sep.join(rng.choice(_WORDS, rng.integers(low, high))) for _ in range(count)])


def table_batches(rows: int, base: str, names: List[str], batch_rows: int) -> Iterator[pa.Table]:
    """url + caption columns: ~100-char unique URLs on ``base``, 40-160-char captions (like WebVid's)."""
    rng = np.random.default_rng(0)
    captions, slugs = _phrases(rng, 50_000, 5, 22, " "), _phrases(rng, 50_000, 2, 6, "-")
    videos = pa.array([f"{base}/videos/{n}" for n in names])
    for start in range(0, rows, batch_rows):
        n = min(batch_rows, rows - start)
        ids = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
        url = pc.binary_join_element_wise(
            videos.take(pa.array(np.arange(start, start + n) % len(names))), "?id=", ids,
            "&slug=stock-footage-", slugs.take(pa.array(rng.integers(0, len(slugs), n))), "")
        caption = pc.binary_join_element_wise(captions.take(pa.array(rng.integers(0, len(captions), n))),
                                              ids, ", stock footage")
        yield pa.table({"url": url, "caption": caption})


def generate(paths: Dict[str, str], rows: int, base: str, names: List[str], small_group: int) -> None:
    """Write the missing ones of ``paths`` (keys: parquet, parquet-small, csv) in one streaming pass."""
    todo = {kind: path for kind, path in paths.items() if not os.path.exists(path)}
    if not todo:
        return
    t0 = time.perf_counter()
    schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
    writers = {kind: (pcsv.CSVWriter(p + ".tmp", schema) if kind == "csv" else pq.ParquetWriter(p + ".tmp", schema))
               for kind, p in todo.items()}
    for batch in table_batches(rows, base, names, batch_rows=1 << 20):   # 1 Mi rows: pyarrow's default group
        for kind, writer in writers.items():
            if kind == "parquet-small":
                writer.write_table(batch, row_group_size=small_group)
            else:
                writer.write_table(batch)
    for kind, writer in writers.items():
        writer.close()
        os.replace(todo[kind] + ".tmp", todo[kind])
    print(f"generated {', '.join(todo.values())} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s", flush=True)


def describe(path: str) -> str:
    size = f"{os.path.getsize(path) / 1e6:.0f} MB"
    if path.endswith(".parquet"):
        meta = pq.ParquetFile(path).metadata
        return f"{path}: {meta.num_rows:,} rows, {meta.num_row_groups} row groups, {size}"
    return f"{path}: {size}"


# -- measurements (each in a fresh process) -------------------------------------------------------------------
def _timed(fn: Callable[[], object]) -> tuple:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _first_sample(ds) -> dict:
    it = iter(ds)
    sample = next(it)
    it.close()
    if sample["json"]["status"] != "success":
        raise RuntimeError(f"first sample failed: {sample['json']['error_message']}")
    return sample


def _measure(path: str, cache_dir: Optional[str], conn) -> None:
    """Child process: construction (listing), first sample via a 2-worker DataLoader (fork, the Linux default up
    to Python 3.13, and spawn, whose workers import torch first) and in-process, and RSS."""
    import torch
    import streamv2d as sv

    row: Row = {}
    rss0 = current_rss_mb()
    make = lambda: sv.VideoDataset(path, caption_col="caption", samples_per_shard=1000,  # noqa: E731
                                   yield_failures=True)
    if cache_dir is not None:              # text table: first-time conversion, then the cached listing
        os.environ["XDG_CACHE_HOME"] = cache_dir
        shutil.rmtree(cache_dir, ignore_errors=True)
        _, row["list first s"] = _timed(make)
    ds, row["list s"] = _timed(make)
    row["shards"] = ds.num_shards
    for method in ("fork", "spawn"):       # before any in-process use, so workers start from a clean ds
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=method)
        _, row[f"1st DataLoader {method} s"] = _timed(lambda: next(iter(loader)))
    _, row["1st sample s"] = _timed(lambda: _first_sample(ds))
    row["RSS base MB"], row["RSS peak MB"] = rss0, peak_rss_mb()
    conn.send(row)


def measure(path: str, cache_dir: Optional[str] = None) -> Row:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_measure, args=(path, cache_dir, child))
    proc.start()
    row = parent.recv()
    proc.join()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="bench-output/tables", help="generated tables are cached here")
    parser.add_argument("--corpus-dir", default="bench-output/corpus")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the parquet tables")
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the csv table")
    parser.add_argument("--small-row-group", type=int, default=65536)
    parser.add_argument("--videos", type=int, default=4, help="distinct videos the URLs point at")
    parser.add_argument("--port", type=int, default=18931, help="fixed, so the cached tables' URLs stay valid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=["parquet", "parquet-small", "csv"],
                        default=["parquet", "parquet-small", "csv"])
    args = parser.parse_args()
    names = corpus(args.corpus_dir, args.videos)
    with served(args.corpus_dir, args.port) as base:
        stem = os.path.join(args.data_dir, f"urls-{args.port}")
        os.makedirs(args.data_dir, exist_ok=True)
        parquets = {"parquet": f"{stem}-{args.rows}.parquet",
                    "parquet-small": f"{stem}-{args.rows}-rg{args.small_row_group}.parquet"}
        csv = f"{stem}-{args.csv_rows}.csv"
        generate(parquets, args.rows, base, names, args.small_row_group)
        generate({"csv": csv}, args.csv_rows, base, names, args.small_row_group)
        for path in [*parquets.values(), csv]:
            print(describe(path))
        cases = {"parquet": (f"parquet {args.rows:,} rows, default row groups", parquets["parquet"], None),
                 "parquet-small": (f"parquet {args.rows:,} rows, {args.small_row_group}-row groups",
                                   parquets["parquet-small"], None),
                 "csv": (f"csv {args.csv_rows:,} rows (Arrow IPC table cache)", csv,
                         os.path.join(args.data_dir, "cache"))}
        for title, path, cache_dir in (cases[name] for name in args.cases):
            rows = [measure(path, cache_dir) for _ in range(args.repeats)]
            print_table(f"{title}, median of {args.repeats}", [median_rows(rows)])


if __name__ == "__main__":
    main()
