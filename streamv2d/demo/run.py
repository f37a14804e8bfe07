"""``streamv2d demo``: the whole product offline — a generated corpus served on 127.0.0.1, two training
epochs (the first streams and fills the cache, the second reads it), and a materialize run of the same job."""
from __future__ import annotations

import csv
import filecmp
import os
import shutil
import time
from collections import Counter
from typing import List

import torch
from tqdm import tqdm

from ..dataset import VideoDataset
from ..fetch import FetchConfig
from ..job import Job
from ..materialize import materialize
from ..subsamplers import FPS, Probe, Resolution
from .server import LoopbackServer
from .synth import make_corpus

#: Rows that fail on purpose, the way a real crawl does.
BAD_PATHS = ("status/404", "status/503", "html", "garbage/2048")


def write_table(path: str, server: LoopbackServer, names) -> str:
    rows = [{"url": server.url(f"videos/{n}"), "caption": f"a synthetic clip ({n})"} for n in names]
    rows += [{"url": server.url(p), "caption": f"a broken link ({p})"} for p in BAD_PATHS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["url", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def demo_job(table: str) -> Job:
    """The demo's curation job on ``table``: probe, 5 fps, 128² (scale, crop, pad), H.264 out."""
    return Job(source=table, subsamplers=[Probe(), FPS(5), Resolution(128, mode="scale,crop,pad")],
               table={"caption_col": "caption", "samples_per_shard": 8},
               fetch=FetchConfig(retries=1, backoff=0.05), processes=2)


def run_epoch(dataset: VideoDataset, workers: int, label: str, total: int) -> Counter:
    """Iterate one epoch through a DataLoader; count outcomes (successes and each error message)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    outcomes: Counter = Counter()
    start = time.perf_counter()
    for sample in tqdm(loader, total=total, unit="sample", desc=label, leave=False):
        meta = sample["json"]
        outcomes["success" if meta["status"] == "success" else meta["error_message"]] += 1
    outcomes["seconds"] = time.perf_counter() - start
    return outcomes


def _report(label: str, outcomes: Counter, requests: int) -> List[str]:
    seconds = outcomes.pop("seconds")
    lines = [f"{label}: {outcomes['success']} samples in {seconds:.2f} s "
             f"({outcomes['success'] / seconds:.1f}/s), {requests} HTTP requests"]
    lines += [f"    failed ({n}): {reason}" for reason, n in sorted(outcomes.items()) if reason != "success"]
    return lines


def run_demo(out: str, videos: int = 24, workers: int = 2) -> int:
    os.makedirs(out, exist_ok=True)
    for stale in ("cache", "shards"):      # URLs change with the server's port: start these afresh
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    corpus = os.path.join(out, "videos")
    print(f"generating {videos} sample videos in {corpus} …")
    names = make_corpus(corpus, count=videos)
    lines: List[str] = []
    with LoopbackServer(corpus) as server:
        table = write_table(os.path.join(out, "urls.csv"), server, names)
        print(f"serving them on {server.base_url}; URL table: {table} ({len(names)} videos + "
              f"{len(BAD_PATHS)} broken links)")
        job = demo_job(table)
        dataset = VideoDataset.from_job(job, yield_failures=True, cache_dir=os.path.join(out, "cache"))
        total = len(names) + len(BAD_PATHS)
        for epoch in range(2):
            dataset.set_epoch(epoch)
            before = server.total_requests()
            outcomes = run_epoch(dataset, workers, f"epoch {epoch + 1}", total)
            label = "epoch 1 (stream, transcode, write through)" if epoch == 0 else "epoch 2 (from the cache)"
            lines += _report(label, outcomes, server.total_requests() - before)
        shards = os.path.join(out, "shards")
        print(f"materializing the same job into {shards} …")
        result = materialize(None, shards, job)
    print()
    print("\n".join(lines))
    print(f"materialize → {shards}: {result.written} shards written, {result.skipped} already complete")
    same = all(filecmp.cmp(dataset.cache.paths(k).data, os.path.join(shards, os.path.basename(
        dataset.cache.paths(k).data)), shallow=False) for k in range(dataset.num_shards))
    print(f"    the same bytes as the training cache's shards: {'yes' if same else 'NO'}")
    print("\n".join("    " + line for line in result.summary.lines(top=5)))
    print(f"\nread it back: streamv2d stats {shards}   |   "
          f"sv.VideoDataset('{shards}/{{00000..{dataset.num_shards - 1:05d}}}.tar')")
    return 0 if result.summary.totals["successes"] == len(names) and not result.failed and same else 1
