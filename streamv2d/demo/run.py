"""``streamv2d demo``: generate a small corpus, serve it on loopback, stream it through a DataLoader."""
from __future__ import annotations

import csv
import os
import time
from collections import Counter

import torch
from tqdm import tqdm

from ..dataset import VideoDataset
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


def run_demo(out: str, videos: int = 24, workers: int = 2) -> int:
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "videos")
    print(f"generating {videos} sample videos in {corpus} …")
    names = make_corpus(corpus, count=videos)
    with LoopbackServer(corpus) as server:
        table = write_table(os.path.join(out, "urls.csv"), server, names)
        print(f"serving them on {server.base_url}; table: {table}")
        dataset = VideoDataset(table, caption_col="caption", samples_per_shard=8, yield_failures=True,
                               fetch={"retries": 1, "backoff": 0.05})
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        statuses, nbytes, start = Counter(), 0, time.perf_counter()
        for sample in tqdm(loader, total=len(names) + len(BAD_PATHS), unit="sample", desc="epoch 1"):
            meta = sample["json"]
            statuses[meta["status"] if meta["status"] == "success" else meta["error_message"]] += 1
            nbytes += len(sample.get("mp4", b""))
        elapsed = time.perf_counter() - start
    print(f"\n{statuses['success']} samples in {elapsed:.2f} s ({statuses['success'] / elapsed:.1f} samples/s, "
          f"{nbytes / elapsed / 1e6:.1f} MB/s) from {dataset.num_shards} shards, {workers} workers")
    for reason, count in sorted(statuses.items()):
        if reason != "success":
            print(f"  failed ({count}): {reason}")
    return 0 if statuses["success"] == len(names) else 1
