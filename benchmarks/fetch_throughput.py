"""Fetch throughput: ``VideoDataset`` in a ``DataLoader`` vs a plain sequential ``requests`` loop.

Both read the same URLs from the same loopback server (in its own process), in the same run, with and
without per-request latency (``/slow/<s>/<name>``, like a CDN round trip). Figures are medians of
``--repeats``; the ratio is VideoDataset samples/s over the sequential loop's.

    python benchmarks/fetch_throughput.py                       # 300 videos; 0, 20 and 50 ms; 3 repeats
    python benchmarks/fetch_throughput.py --count 60 --repeats 1  # quick
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import List

import pyarrow as pa
import pyarrow.parquet as pq
import requests
import torch

from _common import Row, corpus, median_rows, print_table, served

import streamv2d as sv


def sequential(urls: List[str]) -> Row:
    """The baseline: one ``requests.Session`` (keep-alive), one URL after another."""
    t0 = time.perf_counter()
    nbytes = 0
    with requests.Session() as session:
        for url in urls:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            nbytes += len(response.content)
    return _rates("requests loop", len(urls), nbytes, time.perf_counter() - t0, 0.0)


def through_dataset(table: str, expected: int, args: argparse.Namespace) -> Row:
    """``VideoDataset`` → ``DataLoader(num_workers, batch_size=None)``, timed from ``iter(loader)``."""
    ds = sv.VideoDataset(table, caption_col="caption", samples_per_shard=args.samples_per_shard,
                         fetch_threads=args.fetch_threads)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers)
    t0 = time.perf_counter()
    first, count, nbytes = 0.0, 0, 0
    for sample in loader:
        first = first or time.perf_counter() - t0
        count += 1
        nbytes += len(sample["mp4"])
    if count != expected:
        raise RuntimeError(f"VideoDataset yielded {count} samples, expected {expected}")
    return _rates("VideoDataset", count, nbytes, time.perf_counter() - t0, first)


def _rates(name: str, count: int, nbytes: int, seconds: float, first: float) -> Row:
    return {"reader": name, "samples": count, "seconds": seconds, "samples/s": count / seconds,
            "MB/s": nbytes / seconds / 1e6, "first sample s": first}


def write_table(path: str, urls: List[str]) -> str:
    pq.write_table(pa.table({"url": urls, "caption": [f"clip {i}" for i in range(len(urls))]}), path)
    return path


def run(base: str, names: List[str], latency: float, workdir: str, args: argparse.Namespace) -> None:
    route = f"slow/{latency:g}" if latency else "videos"
    urls = [f"{base}/{route}/{name}" for name in names]
    table = write_table(os.path.join(workdir, f"urls-{latency:g}.parquet"), urls)
    ours, theirs, ratios = [], [], []
    for _ in range(args.repeats):          # interleaved, so machine noise hits both alike
        theirs.append(sequential(urls))
        ours.append(through_dataset(table, len(urls), args))
        ratios.append(ours[-1]["samples/s"] / theirs[-1]["samples/s"])
    rows = [median_rows(theirs), median_rows(ours)]
    print_table(f"latency {latency * 1000:g} ms, {len(urls)} videos, "
                f"{args.workers} workers x {args.fetch_threads or sv.FetchConfig().threads} fetch threads, "
                f"median of {args.repeats}", rows)
    print(f"ratio VideoDataset / requests loop: {sorted(ratios)[len(ratios) // 2]:.2f}x "
          f"(per repeat: {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus-dir", default="bench-output/corpus", help="videos are made once and cached here")
    parser.add_argument("--count", type=int, default=300, help="number of videos (and URLs)")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.02, 0.05], help="seconds per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--fetch-threads", type=int, default=None, help="default: the library's")
    parser.add_argument("--samples-per-shard", type=int, default=50,
                        help="small enough that every worker gets shards")
    args = parser.parse_args()
    names = corpus(args.corpus_dir, args.count)
    size = sum(os.path.getsize(os.path.join(args.corpus_dir, n)) for n in names)
    print(f"corpus: {len(names)} videos, {size / len(names) / 1e3:.1f} kB on average")
    with served(args.corpus_dir) as base, tempfile.TemporaryDirectory() as workdir:
        for latency in args.latency:
            run(base, names, latency, workdir, args)


if __name__ == "__main__":
    main()
