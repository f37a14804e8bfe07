"""Two simulated DDP ranks whose URLs fail unequally still yield the same number of samples per epoch.

    python examples/ddp_fixed_length.py

In a real job, torchrun sets RANK/WORLD_SIZE (or torch.distributed is initialised) and you pass neither.
"""
import tempfile

import torch

import streamv2d as sv
from streamv2d.demo import LoopbackServer, make_corpus


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = make_corpus(f"{tmp}/videos", count=8)
        with LoopbackServer(f"{tmp}/videos") as server:
            urls = [server.url(f"videos/{n}") for n in names]
            urls[1::4] = [server.url("status/404")] * len(urls[1::4])     # rank 0's shards lose more rows
            with open(f"{tmp}/urls.txt", "w") as f:
                f.write("\n".join(urls))
            for rank in range(2):
                exact = sv.VideoDataset(f"{tmp}/urls.txt", samples_per_shard=2, rank=rank, world_size=2)
                fixed = sv.VideoDataset(f"{tmp}/urls.txt", samples_per_shard=2, rank=rank, world_size=2,
                                        samples_per_rank=4)
                n_exact = sum(1 for _ in torch.utils.data.DataLoader(exact, batch_size=None, num_workers=2))
                n_fixed = sum(1 for _ in torch.utils.data.DataLoader(fixed, batch_size=None, num_workers=2))
                print(f"rank {rank}: exactly-once mode {n_exact} samples, fixed-length mode {n_fixed} samples")


if __name__ == "__main__":
    main()
