"""Where a training read's CPU goes, clip by clip: streamv2d's ``Frames`` and the plain loader's decode alone (one
process, no loader), each through ``DataLoader(num_workers=2)`` with the workers' and the main process's CPU apart,
blank tensors through the same DataLoader (the hand-off alone), and streamv2d with ``batch_size=8``.

    python benchmarks/read_costs.py [--repeats 5] [--rows 96] [--videos 48] [--corpus real]

The shards are ``frames.make_clip_shards``' (224², 5 fps clips of the corpus by the curation chain, our ``Encode``),
as in floor.py's row 3. Contenders alternate within each repeat; figures are medians of ms of CPU per clip.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoders import CORPORA, named_corpus  # noqa: E402
from floor import BlankClips, two_workers  # noqa: E402
from frames import (NUM_FRAMES, SIZE, clips_in, make_clip_shards, plain_decode, plain_shard_loader,  # noqa: E402
                    shard_clips)
from streamv2d import VideoDataset  # noqa: E402
from streamv2d.subsamplers import Frames  # noqa: E402

Costs = Dict[str, float]


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def alone(decode: Callable[[bytes], object], clips: List[bytes]) -> Costs:
    """ms of this process's CPU per clip for ``decode`` over ``clips``, no loader around it."""
    start = time.process_time()
    for clip in clips:
        decode(clip)
    return {"main": 1000 * (time.process_time() - start) / len(clips), "workers": 0.0}


def through_loader(make_dataset: Callable[[], object]) -> Costs:
    """ms of CPU per clip of one epoch through 2 workers, the main process's and the (joined) workers' apart."""
    main, workers = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    clips = sum(clips_in(item) for item in two_workers(make_dataset()))
    return {"main": 1000 * (_cpu(resource.RUSAGE_SELF) - main) / clips,
            "workers": 1000 * (_cpu(resource.RUSAGE_CHILDREN) - workers) / clips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--corpus", choices=list(CORPORA), default="real")
    args = parser.parse_args()
    cache, originals = named_corpus(args.corpus, args.videos)
    pattern = make_clip_shards(originals, os.path.join(cache, f"job-shards{args.rows}"), args.rows)
    clips = shard_clips(pattern)
    frames = Frames(num_frames=NUM_FRAMES, size=SIZE)
    contenders: Dict[str, Callable[[], Costs]] = {
        "Frames alone": lambda: alone(lambda c: frames({"__key__": "clip", "mp4": c, "json": {}}), clips),
        "plain decode alone": lambda: alone(plain_decode, clips),
        "streamv2d, 2 workers": lambda: through_loader(lambda: VideoDataset(pattern, subsamplers=[frames])),
        "plain loader, 2 workers": lambda: through_loader(lambda: plain_shard_loader(pattern)),
        "blank tensors, 2 workers": lambda: through_loader(lambda: BlankClips(args.rows)),
        "streamv2d batch=8, 2 workers": lambda: through_loader(
            lambda: VideoDataset(pattern, subsamplers=[frames], batch_size=8)),
    }
    runs: Dict[str, List[Costs]] = {name: [] for name in contenders}
    for repeat in range(args.repeats):
        order = list(contenders.items())
        for name, measure in order if repeat % 2 == 0 else reversed(order):
            runs[name].append(measure())
    print(f"\nms of CPU per clip, {args.rows} clips ({len(clips)} distinct), medians of {args.repeats}:")
    for name, results in runs.items():
        main_ms, workers_ms = (statistics.median(r[k] for r in results) for k in ("main", "workers"))
        print(f"  {name:30s} {main_ms + workers_ms:6.2f}  (workers {workers_ms:6.2f}, main process {main_ms:5.2f})")


if __name__ == "__main__":
    main()
