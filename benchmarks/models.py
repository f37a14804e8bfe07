"""Model stages on CPU: samples/s batched (``process_batch``, ``batch_size`` rows a forward pass) against one
sample at a time (``batch_size=1``), same models, same samples, same run.

    python benchmarks/models.py [--samples 16] [--batch-size 8] [--repeats 3] [--scale base|tiny]
        [--only embedding,caption,whisper]

Models are made by ``streamv2d.subsamplers.models.synth`` with the real architectures' sizes (``base``: CLIP
ViT-B/32, a ViT-base + 6-layer GPT-2 captioner generating 8 tokens, Whisper base on 30-s windows) and random
weights — nothing can be downloaded here; speed does not depend on the weights' values. Samples are 4-s 320×240
clips with sound, decoded by each stage's ``prepare`` (counted in both figures). Medians of ``--repeats``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import median_rows, print_table  # noqa: E402

from streamv2d.demo import make_video  # noqa: E402
from streamv2d.subsamplers.models import Caption, FrameEmbedding, Transcribe, synth  # noqa: E402


def stage_for(kind: str, path: str, batch_size: int):
    """The stage of ``kind`` on the model at ``path``."""
    if kind == "embedding":
        return FrameEmbedding(path, num_frames=4, batch_size=batch_size)
    if kind == "caption":
        return Caption(path, max_new_tokens=8, batch_size=batch_size)
    return Transcribe(path, max_new_tokens=8, dtype="float32", batch_size=batch_size)


def samples_per_second(stage, videos) -> float:
    """Samples/s of ``stage.process_batch`` over fresh samples of ``videos`` (the model already loaded)."""
    samples = [{"__key__": f"k{i}", "mp4": v, "json": {}} for i, v in enumerate(videos)]
    start = time.perf_counter()
    stage.process_batch(samples)
    return len(samples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", choices=["base", "tiny"], default="base")
    parser.add_argument("--only", default="embedding,caption,whisper")
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}, scale: {args.scale}, samples: {args.samples}")
    videos = [make_video(4.0, 320, 240, fps=25, audio=True, seed=i) for i in range(args.samples)]
    builders = {"embedding": synth.clip, "caption": synth.captioner, "whisper": synth.whisper}
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for kind in args.only.split(","):
            path = builders[kind](os.path.join(root, kind), args.scale)
            batched, single = stage_for(kind, path, args.batch_size), stage_for(kind, path, 1)
            single.process_batch([{"__key__": "warm", "mp4": videos[0], "json": {}}])   # load once, warm up
            runs = []
            for _ in range(args.repeats):
                one, many = samples_per_second(single, videos), samples_per_second(batched, videos)
                runs.append({"stage": kind, "one_at_a_time": one, "batched": many, "speedup": many / one})
            rows.append(median_rows(runs))
    print_table(f"model stages on CPU, samples/s (batch {args.batch_size} vs 1)", rows)


if __name__ == "__main__":
    main()
