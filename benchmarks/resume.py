"""Mid-epoch resume at 90 % of a 1-million-row URL table: time from ``load_state_dict`` to the first sample, and
HTTP requests made before it — streamv2d's resume by position against torchdata's replay (``StatefulDataLoader``
fast-forwarding a dataset without a state of its own, which fetches every sample it skips).

    python benchmarks/resume.py [--rows 1000000] [--replay 300] [--repeat 5]

Replaying 900 000 fetched samples would take hours, so the replay is timed over ``--replay`` samples and its
per-sample cost scaled to the 90 % position (the figure is printed as such). Medians of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from _common import corpus, print_table  # noqa: E402  (puts the checkout on sys.path)

import streamv2d as sv  # noqa: E402
from streamv2d.demo import LoopbackServer  # noqa: E402


class Replayed(torch.utils.data.IterableDataset):
    """The same samples without a state: StatefulDataLoader can only fast-forward it by replaying."""

    def __init__(self, dataset: sv.VideoDataset):
        self.dataset = dataset

    def __iter__(self):
        return iter(self.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--replay", type=int, default=300, help="samples the replay is timed over")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        names = corpus(os.path.join(tmp, "videos"), 4)
        with LoopbackServer(os.path.join(tmp, "videos")) as server:
            table = os.path.join(tmp, "urls.parquet")
            urls = [server.url(f"videos/{names[i % len(names)]}") + f"?row={i}" for i in range(args.rows)]
            pq.write_table(pa.table({"url": urls}), table, row_group_size=65536)
            make = lambda: sv.VideoDataset(table, samples_per_shard=1000)  # noqa: E731
            position = int(0.9 * args.rows)
            state = make().state_dict()
            segments = state["loader"]["segments"]
            state["loader"]["segments"] = segments[position // 1000:]   # the state after 90 % of the epoch

            ours, ours_requests = [], []
            for _ in range(args.repeat):
                loader = StatefulDataLoader(make(), batch_size=None, num_workers=0)
                loader_state = loader.state_dict()
                loader_state["dataset_state"] = state
                before = server.total_requests()
                start = time.perf_counter()
                loader.load_state_dict(loader_state)
                first = next(iter(loader))
                ours.append(time.perf_counter() - start)
                ours_requests.append(server.total_requests() - before)
                assert first["__key__"] == f"{position // 1000:05d}000", first["__key__"]

            replay = []
            for _ in range(args.repeat):
                loader = StatefulDataLoader(Replayed(make()), batch_size=None, num_workers=0)
                it = iter(loader)
                for _ in range(args.replay):
                    next(it)
                saved = loader.state_dict()
                fresh = StatefulDataLoader(Replayed(make()), batch_size=None, num_workers=0)
                before = server.total_requests()
                start = time.perf_counter()
                fresh.load_state_dict(saved)
                next(iter(fresh))
                replay.append((time.perf_counter() - start, server.total_requests() - before))
    replay_seconds = statistics.median(t for t, _ in replay)
    per_sample = replay_seconds / (args.replay + 1)
    ours_s = statistics.median(ours)
    print_table(f"resume at 90 % of {args.rows:,} rows (medians of {args.repeat})", [
        {"method": "streamv2d (by position)", "seconds to first sample": ours_s,
         "requests before it": statistics.median_low(ours_requests)},
        {"method": f"torchdata replay, measured over {args.replay}", "seconds to first sample": replay_seconds,
         "requests before it": statistics.median_low(r for _, r in replay)},
        {"method": f"torchdata replay, scaled to {position:,}", "seconds to first sample": per_sample * position,
         "requests before it": position + 1},
    ])
    print(f"\nspeed-up against replay at 90 %: {per_sample * position / ours_s:,.0f}x")


if __name__ == "__main__":
    main()
