"""Training reads through ``DataLoader(num_workers=2)``: streamv2d ``Frames`` against a plain loader, same run.

    python benchmarks/frames.py [--repeats 3] [--rows 96] [--batch-size 8] [--corpus NAME] [--only a|b|c]

(a) on the fly: a csv of URLs of 10-s H.264 originals on a ``LoopbackServer`` → 8 frames uniform, 224².
(b) from WebDataset shards of 224², 5 fps clips (made here with PyAV) → 8 frames uniform.
(c) the same from shards as other tools write them (video2dataset's ffmpeg: x264's defaults — preset medium,
    B-pyramid, keyframes every 250 frames or at scene cuts, so one GOP or a few per 50-frame clip): exact
    ``Frames`` against ``Frames(seek="keyframe")``, with how many distinct frames the keyframe reads return.
``--corpus``: the originals, ``synthetic`` (panning texture, 2-s GOPs) or ``decoders.CORPORA``'s real footage
(``real``, ``real-flat-b``, ``real-gop2s``, ``real-flat-b-gop2s``; see ``decode_floor.py`` for what each allows).
The plain loaders fetch with ``requests`` / read shards with ``webdataset``, then decode with PyAV
sequentially, keeping the wanted frames and stopping after the last one; one sample per IPC transfer.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoders import CORPORA, named_corpus  # noqa: E402
from streamv2d import VideoDataset  # noqa: E402
from streamv2d.demo import LoopbackServer  # noqa: E402
from streamv2d.subsamplers import FPS, Encode, Frames, Resolution, compile_chain, run_chain  # noqa: E402

NUM_FRAMES, SIZE = 8, 224


# -- the plain loaders (what a user would write in 20 lines) -----------------------------------------------------
def plain_decode(data: bytes, num_frames: int = NUM_FRAMES, size: int = SIZE) -> torch.Tensor:
    """Sequential PyAV decode keeping uniformly spaced frames, stopping after the last one."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        total = stream.frames
        wanted = {(2 * k + 1) * total // (2 * num_frames) for k in range(num_frames)}
        scale = size / min(stream.codec_context.width, stream.codec_context.height)
        width, height = round(stream.codec_context.width * scale), round(stream.codec_context.height * scale)
        kept = []
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
                top, left = (height - size) // 2, (width - size) // 2
                kept.append(rgb[top:top + size, left:left + size])
            if index >= max(wanted):
                break
    return torch.from_numpy(np.stack(kept))


class PlainURLLoader(IterableDataset):
    def __init__(self, urls: List[str]):
        self.urls = urls

    def __iter__(self) -> Iterator[torch.Tensor]:
        import requests

        info = get_worker_info()
        urls = self.urls[info.id::info.num_workers] if info else self.urls
        with requests.Session() as session:
            for url in urls:
                yield plain_decode(session.get(url, timeout=30).content)


def plain_shard_loader(pattern: str):
    import webdataset as wds

    return wds.WebDataset(pattern, shardshuffle=False).map(lambda s: plain_decode(s["mp4"]))


# -- corpus and shards ------------------------------------------------------------------------------------------
def make_clip_shards(originals: Dict[str, bytes], directory: str, count: int, shards: int = 4,
                     encode: Optional[Encode] = None) -> str:
    """``count`` 224², 5 fps clips made from the originals by the curation job (``encode``: its ``Encode``,
    streamv2d's defaults unless given), in ``shards`` tars."""
    import webdataset as wds

    os.makedirs(directory, exist_ok=True)
    pattern = os.path.join(directory, "{00000..%05d}.tar" % (shards - 1))
    if os.path.exists(os.path.join(directory, "%05d.tar" % (shards - 1))):
        return pattern
    clips = [reencode(data, fps=5, size=SIZE, encode=encode or Encode()) for data in originals.values()]
    per_shard = -(-count // shards)
    for shard in range(shards):
        with wds.TarWriter(os.path.join(directory, "%05d.tar" % shard)) as sink:
            for row in range(shard * per_shard, min(count, (shard + 1) * per_shard)):
                sink.write({"__key__": "%05d%04d" % (shard, row), "mp4": clips[row % len(clips)],
                            "json": {"row": row}})
    return pattern


def reencode(data: bytes, fps: int, size: int, encode: Encode) -> bytes:
    """The curation job's output: ``FPS(fps)`` + ``Resolution(size, "scale,crop")`` + ``encode``."""
    chain = compile_chain([FPS(fps), Resolution(size, mode="scale,crop"), encode])
    [clip] = run_chain({"__key__": "clip", "json": {}, "mp4": data}, chain)
    return clip["mp4"]


#: x264 as ffmpeg runs it with no options (video2dataset's shards): preset medium, B-pyramid, keyint 250
X264_DEFAULTS = Encode(preset=None, fast_decode=False, keyframe_interval=None, reproducible=False)


def shard_clips(pattern: str) -> List[bytes]:
    """The distinct clips of the shards (each original's clip once)."""
    import webdataset as wds

    return list({s["mp4"]: None for s in wds.WebDataset(pattern, shardshuffle=False)})


def distinct_keyframe_reads(clips: List[bytes]) -> float:
    """Mean distinct frames among the ``NUM_FRAMES`` a ``Frames(seek="keyframe")`` read returns per clip."""
    frames = Frames(num_frames=NUM_FRAMES, size=SIZE, seek="keyframe")
    return statistics.mean(len(set(frames({"__key__": "clip", "mp4": clip, "json": {}})["json"]["frames"]["indices"]))
                           for clip in clips)


def decode_profile(clips: List[bytes], repeats: int = 3) -> Dict[str, float]:
    """ms of one core per clip, in this process: ``decode_floor.py``'s sequential decode and exact floor for the
    8 uniform frames, beside the plain loader's decode and ``Frames`` exact / ``seek="keyframe"`` (open, decode
    and conversion; no loader around them)."""
    from decode_floor import frames_costs, measured, timed_packets
    from decoders import uniform

    stages = {name: Frames(num_frames=NUM_FRAMES, size=SIZE, seek=name) for name in ("exact", "keyframe")}
    totals: Dict[str, float] = {}
    for clip in clips:
        costs = frames_costs(timed_packets(clip, repeats), uniform(clip, NUM_FRAMES))
        figures = dict(zip(("sequential", "floor"), costs))
        figures["plain decode"] = measured(lambda: plain_decode(clip), repeats)
        for name, stage in stages.items():
            figures[f"Frames {name}"] = measured(lambda: stage({"__key__": "clip", "mp4": clip, "json": {}}), repeats)
        for key, value in figures.items():
            totals[key] = totals.get(key, 0.0) + 1000 * value / len(clips)
    return totals


# -- measuring ----------------------------------------------------------------------------------------------------
def clips_in(item) -> int:
    """A plain loader yields one ``[T, H, W, C]`` clip; streamv2d a sample or a batch ``[B, T, H, W, C]``."""
    frames = item if isinstance(item, torch.Tensor) else item["frames"]
    return frames.shape[0] if frames.dim() == 5 else 1


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers, once joined)."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def run(make_loader: Callable[[], DataLoader]) -> Dict[str, float]:
    """Time to first item after ``iter(loader)``, clips/s over the whole epoch (workers' start included),
    and CPU seconds per clip — the figure least disturbed by other load on the machine."""
    loader = make_loader()
    cpu, start = cpu_seconds(), time.perf_counter()
    items = iter(loader)
    first = next(items)
    first_at = time.perf_counter() - start
    clips = clips_in(first) + sum(clips_in(item) for item in items)
    del items  # joins the workers, so their CPU time is counted
    return {"clips": clips, "rate": clips / (time.perf_counter() - start), "first": first_at,
            "cpu": (cpu_seconds() - cpu) / clips}


def compare(label: str, loaders: Dict[str, Callable[[], DataLoader]], repeats: int) -> None:
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in loaders}
    for _ in range(repeats):  # interleaved, so load from the other helpers hits both alike
        for name, make in loaders.items():
            results[name].append(run(make))
    print(f"\n=== {label} (median of {repeats}) ===")
    plain_rate = statistics.median(r["rate"] for r in results["plain"])
    for name, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        first = statistics.median(r["first"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"  {name:24s} {rate:7.2f} clips/s  {rate / plain_rate:4.2f}× plain  first item {first:5.2f} s  "
              f"cpu {1000 * cpu:5.1f} ms/clip  ({int(runs[0]['clips'])} clips; "
              f"rates {[round(r['rate'], 1) for r in runs]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=96, help="rows of the URL table and clips in the shards")
    parser.add_argument("--videos", type=int, default=12, help="distinct 10-s originals")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fetch-threads", type=int, default=4)
    parser.add_argument("--corpus", choices=list(CORPORA), default="synthetic",
                        help="originals: synthetic (panning texture) or materialize.py's real footage")
    parser.add_argument("--only", choices=["a", "b", "c"])
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the server waits before each response in (a), like a remote CDN")
    args = parser.parse_args()
    cache, originals = named_corpus(args.corpus, args.videos)
    names = sorted(originals)
    frames = Frames(num_frames=NUM_FRAMES, size=SIZE)
    loader = lambda ds, **kw: DataLoader(ds, batch_size=None, num_workers=2, **kw)  # noqa: E731

    if args.only in (None, "a"):
        with LoopbackServer(cache) as server:
            route = f"slow/{args.latency:g}" if args.latency else "videos"
            urls = [server.url(f"{route}/{names[i % len(names)]}") for i in range(args.rows)]
            table = os.path.join(cache, "urls.csv")
            with open(table, "w", newline="") as f:
                csv.writer(f).writerows([["url"]] + [[u] for u in urls])
            per_shard = args.rows // 4

            def ours(batch_size: Optional[int], rows_per_shard: int = per_shard) -> Callable[[], DataLoader]:
                return lambda: loader(VideoDataset(table, samples_per_shard=rows_per_shard, subsamplers=[frames],
                                                   fetch_threads=args.fetch_threads, batch_size=batch_size))

            compare(f"(a) on the fly: URL table → 8 frames 224², server latency {args.latency:g} s", {
                "plain": lambda: loader(PlainURLLoader(urls)),
                f"streamv2d batch={args.batch_size}": ours(args.batch_size),
                "streamv2d unbatched": ours(None),
                "streamv2d unbatched, one shard (default samples_per_shard)": ours(None, 1000),
            }, args.repeats)

    if args.only in (None, "b"):
        pattern = make_clip_shards(originals, os.path.join(cache, f"job-shards{args.rows}"), args.rows)
        compare("(b) shards of 224², 5 fps clips → 8 frames", {
            "plain": lambda: loader(plain_shard_loader(pattern)),
            f"streamv2d batch={args.batch_size}": lambda: loader(VideoDataset(
                pattern, subsamplers=[frames], fetch_threads=args.fetch_threads, batch_size=args.batch_size)),
        }, args.repeats)

    if args.only in (None, "c"):
        pattern = make_clip_shards(originals, os.path.join(cache, f"x264-default-shards{args.rows}"), args.rows,
                                   encode=X264_DEFAULTS)

        def ours(seek: str, batch_size: Optional[int] = None) -> Callable[[], DataLoader]:
            stage = Frames(num_frames=NUM_FRAMES, size=SIZE, seek=seek)
            return lambda: loader(VideoDataset(pattern, subsamplers=[stage], fetch_threads=args.fetch_threads,
                                               batch_size=batch_size))

        compare("(c) shards of x264-default (long-GOP) 224², 5 fps clips → 8 frames", {
            "plain": lambda: loader(plain_shard_loader(pattern)),
            "streamv2d exact": ours("exact"),
            'streamv2d seek="keyframe"': ours("keyframe"),
            f"streamv2d exact batch={args.batch_size}": ours("exact", args.batch_size),
            f'streamv2d seek="keyframe" batch={args.batch_size}': ours("keyframe", args.batch_size),
        }, args.repeats)
        clips = shard_clips(pattern)
        print(f'  seek="keyframe": {distinct_keyframe_reads(clips):.2f} distinct frames of {NUM_FRAMES} per clip')
        profile = decode_profile(clips)
        print(f"  decoding alone, ms of one core per clip ({len(clips)} clips): "
              + ", ".join(f"{name} {ms:.1f}" for name, ms in profile.items())
              + f" → the exact floor is {profile['sequential'] / profile['floor']:.2f}× below sequential decoding")


if __name__ == "__main__":
    main()
