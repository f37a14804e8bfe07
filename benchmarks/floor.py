"""Issue 15's "close to the floor" table, every row measured in one run against the same references.

    python benchmarks/floor.py                   # 96 rows (48 real videos, each at two URLs), medians of 3
    python benchmarks/floor.py --repeats 5
    python benchmarks/floor.py --quick           # 24 rows, 1 repeat: checks that every row runs

The corpus is materialize.py's real footage (10-s H.264, 1280×720, 854×480, 640×360, every third with AAC), each
video linked under two names so the table has ``--rows`` distinct URLs, served on loopback by its own process.
2 processes or DataLoader workers everywhere; in each repeat the contenders of a row run in turn, in reverse
order every other repeat; figures are medians, ratios medians of the per-repeat ratios.

1. download → tar: ``video2dataset`` (its command line, ``--v2d-python``'s environment) against
   ``streamv2d materialize`` (the whole command as a user runs it, start-up included), and the floor: the bytes
   over loopback (2 threads) written into 2 tars.
2. probe + fps 5 + 224² (scale,crop,pad) → tar: video2dataset 1.3 cannot resize in its download stage (its
   worker reads an ``encode_formats`` its subsamplers do not have: iejMac/video2dataset#311, open), so its job
   is the download of row 1 (its median) plus its ``subset`` stage over those shards; against one ffprobe +
   ffmpeg CLI pass per video, 2 at a time, from local files (``materialize.ffmpeg_cli``), and ``streamv2d
   materialize`` with the same chain.
3. 8 frames uniform, 224², from streamv2d's shards of job 2, 2 workers: video2dataset's ``get_video_dataset``
   (decord, 1 thread a worker, batches of 8), webdataset + PyAV (``frames.plain_shard_loader``), streamv2d
   unbatched and ``batch_size=8``.
4. the same from video2dataset's shards of job 2 (x264 defaults, long GOPs).
5. on the fly, URL → 8 frames 224²: ``frames.PlainURLLoader`` against ``VideoDataset`` with
   ``samples_per_shard=16`` and with the default (one shard for the table: the samples each worker yielded are
   counted).
6. first sample from ``iter(loader)`` in row 5 (video2dataset: job 2, then its loader's first batch).

Rows 3–5 also give the exact floor: the most any loader returning exact frames could lead the plain one by —
its CPU per clip over the least such a loader must spend: ``decode_floor.py``'s mandatory packets, opening the
clip without decoding a frame and converting the wanted frames to 224² RGB (the cheapest ways PyAV offers), plus
handing the frames to the main process, measured with blank tensors through the same DataLoader. The floor is
measured in every repeat, in turn with the loaders, since the host's speed drifts. Row 6 gives the first clip's
exact read floor on one core.

Then one profiled run of each streamv2d job (``stage_profile.run_job``, ``STREAMV2D_PROFILE``): CPU seconds by stage
and each stage's share. Needs the ffmpeg CLI (``apt-get install -y ffmpeg``) and video2dataset 1.3 with its
dependencies (``.ci/v2d-reader-env`` in the v2dloader worktree builds one).

video2dataset 1.3 pins torch 2.1, whose ``torch.distributed.get_rank()`` raised ``RuntimeError`` without a process
group; torch 2.13 raises ``ValueError``, which its tar reader does not catch. Its subset stage and loader run with
a ``sitecustomize`` on ``PYTHONPATH`` that restores the old exception (nothing else changes).
"""
from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import requests
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from _common import print_table, served
from decode_floor import fps_decode, frames_costs, single_threaded, timed_packets
from decoders import uniform
from frames import NUM_FRAMES, SIZE, PlainURLLoader, clips_in, plain_shard_loader, run
from materialize import ENCODE, MODE, RATE, build_corpus, corpus_folder, ffmpeg_cli, run_mode
from stage_profile import run_job, shares
from streamv2d import Frames, VideoDataset
from streamv2d.decode.convert import frame_to_array
from streamv2d.decode.geometry import center_crop, scaled_size
from streamv2d.decode.media import open_media
from streamv2d.materialize import usable_cpus

T = TypeVar("T")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The environment .ci/v2d-reader-env builds (video2dataset 1.3.0 and its dependencies).
V2D_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-v2d", "bin", "python")
WORKERS = 2
BATCH = 8
GET_RANK_SHIM = '''"""video2dataset 1.3 catches RuntimeError from get_rank() without a process group (torch 2.1);
torch 2.13 raises ValueError. Restores the old exception (written by benchmarks/floor.py)."""
import torch.distributed as dist

_get_rank = dist.get_rank


def get_rank(group=None):
    if not dist.is_initialized():
        raise RuntimeError("Default process group has not been initialized")
    return _get_rank(group)


dist.get_rank = get_rank
'''


# -- corpus and table ---------------------------------------------------------------------------------------------
def floor_corpus(base: str, rows: int, videos: int) -> List[str]:
    """``rows`` file names (so, URLs) over ``videos`` real-footage videos, as hard links in their own folder."""
    paths = build_corpus(corpus_folder(base), videos, 10.0, WORKERS, "normal")
    folder = f"{base}-floor{rows}x{videos}"
    os.makedirs(folder, exist_ok=True)
    names = [os.path.join(folder, f"row{i:04d}.mp4") for i in range(rows)]
    for i, name in enumerate(names):
        if not os.path.exists(name):
            os.link(paths[i % videos], name)
    return names


def write_table(path: str, urls: Sequence[str]) -> str:
    """A one-column csv of ``urls``."""
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["url"]] + [[u] for u in urls])
    return path


def samples_in(folder: str) -> int:
    """How many videos the tars of an output folder hold: a contender that dropped rows would not be comparable."""
    count = 0
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tar"):
            with tarfile.open(os.path.join(folder, name)) as tar:
                count += sum(1 for m in tar if m.name.endswith(".mp4") and m.size > 0)
    return count


def shard_pattern(folder: str) -> str:
    """The brace pattern of an output folder's tars (both tools name them 00000.tar, 00001.tar, …)."""
    tars = sorted(n for n in os.listdir(folder) if n.endswith(".tar"))
    return os.path.join(folder, "{00000..%05d}.tar" % (len(tars) - 1))


# -- the contenders -----------------------------------------------------------------------------------------------
def timed_command(argv: List[str], expected: int, out: str, env: Optional[Dict[str, str]] = None) -> float:
    """Wall seconds of a whole command (interpreter start-up and imports included) writing ``expected`` videos."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    written = samples_in(out) if os.path.isdir(out) else 0
    if done.returncode or written != expected:
        raise RuntimeError(f"{' '.join(argv[:4])}: exit {done.returncode}, {written} of {expected} videos written: "
                           f"{(done.stderr or done.stdout)[-1500:]}")
    return wall


def v2d_config(path: str, rows: int, transcode: bool) -> str:
    """A video2dataset config: 2 processes × 8 threads, two shards; with ``transcode``, job 2's subsamplers."""
    subsampling = {"FFProbeSubsampler": {"args": {"extract_keyframes": False}},
                   "FrameSubsampler": {"args": {"frame_rate": RATE}},
                   "ResolutionSubsampler": {"args": {"video_size": SIZE, "resize_mode": MODE}}} if transcode else {}
    config = {"subsampling": subsampling,
              "reading": {"yt_args": {"download_size": 360, "download_audio_rate": 44100, "yt_metadata_args": None},
                          "timeout": 60, "sampler": None},
              "storage": {"number_sample_per_shard": rows // 2, "oom_shard_count": 5, "captions_are_subtitles": False},
              "distribution": {"processes_count": WORKERS, "thread_count": 8, "subjob_size": 1000,
                               "distributor": "multiprocessing"}}
    with open(path, "w") as f:
        json.dump(config, f)   # JSON is YAML
    return path


def v2d_command(v2d_python: str, source: str, out: str, config: str, stage: str) -> List[str]:
    """video2dataset's command line: ``download`` from a csv of URLs, ``subset`` from its own tars."""
    source_args = (["--input_format=csv", "--url_col=url"] if stage == "download" else ["--input_format=webdataset"])
    return [v2d_python, "-m", "video2dataset.main", f"--url_list={source}", f"--output_folder={out}",
            "--output_format=webdataset", f"--stage={stage}", f"--config={config}", *source_args]


def streamv2d_command(table: str, out: str, rows: int, config: Optional[str]) -> List[str]:
    """``streamv2d materialize`` (this checkout's, as ``python -m``): 2 processes, two shards."""
    return [sys.executable, "-m", "streamv2d.cli", "materialize", table, out, "--processes", str(WORKERS),
            "--samples-per-shard", str(rows // 2), "-q", *(["--config", config] if config else [])]


def streamv2d_job2(path: str) -> str:
    """Job 2 as a streamv2d job file: the chain of materialize.py (probe, fps 5, 224 scale,crop,pad, x264)."""
    with open(path, "w") as f:
        json.dump({"subsampling": ["probe", {"fps": {"rate": RATE}}, {"resolution": {"size": SIZE, "mode": MODE}},
                                   {"encode": ENCODE}]}, f)
    return path


def bytes_to_tar(urls: Sequence[str], out: str) -> float:
    """The download floor: ``urls`` fetched by 2 threads (a keep-alive session each) into a tar each; wall s."""
    os.makedirs(out)

    def fetch_into(part: int) -> None:
        with requests.Session() as session, tarfile.open(os.path.join(out, f"{part:05d}.tar"), "w") as tar:
            for index in range(part, len(urls), WORKERS):
                data = session.get(urls[index], timeout=30).content
                member = tarfile.TarInfo(f"{index:06d}.mp4")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))

    start = time.perf_counter()
    threads = [threading.Thread(target=fetch_into, args=(part,)) for part in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def v2d_read(pattern: str, batch_size: int, num_frames: int, size: int, workers: int) -> None:
    """video2dataset's loader over ``pattern``; runs in its environment (this source is sent with ``python -c``)
    and prints clips/s from ``iter(loader)`` and the first batch's seconds as JSON."""
    import json
    import time

    from torch.utils.data import DataLoader
    from video2dataset.dataloader import get_video_dataset

    dataset = get_video_dataset(pattern, batch_size=batch_size, resize_size=size, crop_size=size,
                                decoder_kwargs={"n_frames": num_frames, "uniformly_sample": True, "num_threads": 1},
                                enforce_additional_keys=[])
    start = time.perf_counter()
    batches = iter(DataLoader(dataset, batch_size=None, num_workers=workers))
    first = next(batches)
    first_s = time.perf_counter() - start
    clips = len(first["__key__"]) + sum(len(batch["__key__"]) for batch in batches)
    print(json.dumps({"clips": clips, "rate": clips / (time.perf_counter() - start), "first": first_s,
                      "shape": list(first["mp4"].shape)}))


V2D_READ = inspect.getsource(v2d_read)   # read once: the file may be edited while a run goes on


def v2d_loader(v2d_python: str, shim: str, pattern: str) -> Dict[str, float]:
    """``v2d_read`` in a video2dataset interpreter: clips/s, first batch's seconds, clips."""
    code = f"{V2D_READ}\nv2d_read({pattern!r}, {BATCH}, {NUM_FRAMES}, {SIZE}, {WORKERS})"
    done = subprocess.run([v2d_python, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **v2d_env(shim)})
    if done.returncode:
        raise RuntimeError(f"video2dataset's loader on {pattern}: {done.stderr[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.pop("shape")[1:] != [NUM_FRAMES, SIZE, SIZE, 3]:
        raise RuntimeError(f"video2dataset's loader on {pattern}: batches of shape {done.stdout[-300:]}")
    return result


def v2d_env(shim: str) -> Dict[str, str]:
    """video2dataset's processes see the ``get_rank`` shim only (not this checkout on ``PYTHONPATH``)."""
    return {"PYTHONPATH": shim}


def two_workers(dataset) -> DataLoader:
    """What every training read here goes through: 2 workers, batches (if any) made by the dataset."""
    return DataLoader(dataset, batch_size=None, num_workers=WORKERS)


def ours(source: str, batch_size: Optional[int] = None, **table_options) -> Callable[[], DataLoader]:
    """streamv2d's training read: 8 frames uniform, 224², library defaults otherwise."""
    return lambda: two_workers(VideoDataset(source, subsamplers=[Frames(num_frames=NUM_FRAMES, size=SIZE)],
                                            batch_size=batch_size, **table_options))


class WorkerTagged(IterableDataset):
    """``dataset``'s samples, each carrying the id of the DataLoader worker that yielded it."""

    def __init__(self, dataset: IterableDataset):
        self.dataset = dataset

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info().id
        for sample in self.dataset:
            yield {**sample, "worker": worker}


class WorkerTally:
    """A DataLoader of ``WorkerTagged`` samples, counting the clips each worker yielded into ``counts``."""

    def __init__(self, loader: DataLoader, counts: Counter):
        self.loader, self.counts = loader, counts

    def __iter__(self) -> Iterator[dict]:
        for sample in self.loader:
            self.counts[int(sample["worker"])] += clips_in(sample)
            yield sample


# -- repeats ------------------------------------------------------------------------------------------------------
def alternate(contenders: Dict[str, Callable[[int], T]], repeats: int, label: str) -> Dict[str, List[T]]:
    """Each contender once a repeat (given the repeat's index), in reverse order every other repeat: the load of
    the machine drifts, so none always runs first."""
    results: Dict[str, List[T]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        order = list(contenders.items())
        for name, measure in order if repeat % 2 == 0 else reversed(order):
            results[name].append(measure(repeat))
        print(f"  {label}, repeat {repeat + 1}: " + ", ".join(f"{n} {_brief(r[-1])}" for n, r in results.items()),
              flush=True)
    return results


def _brief(result) -> str:
    return f"{result:.2f} s" if isinstance(result, float) else f"{result['rate']:.1f} clips/s"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-repeat ratios (each pair measured in the same repeat)."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def rates(runs: Sequence[Dict[str, float]], key: str = "rate") -> List[float]:
    return [r[key] for r in runs]


# -- floors -------------------------------------------------------------------------------------------------------
class BlankClips(IterableDataset):
    """``count`` clips' frames (8×224²×3 uint8, written as a decoder would write them, so their pages are really
    allocated) split over the workers: what making room for a clip's frames and handing them over costs."""

    def __init__(self, count: int):
        self.count = count

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        for _ in range(info.id, self.count, info.num_workers):
            yield torch.full((NUM_FRAMES, SIZE, SIZE, 3), 128, dtype=torch.uint8)


def transfer_floor(clips: int) -> float:
    """CPU s per clip of handing its frames from 2 DataLoader workers to the main process (the workers' start
    included), through the same ``run``: what every loader of rows 3–5 pays beside decoding."""
    return run(lambda: two_workers(BlankClips(clips)))["cpu"]


def read_floor(clips: Sequence[bytes]) -> float:
    """Mean CPU s per clip of the least an exact PyAV reader of 8 uniform frames at 224² must spend: decoding the
    reference frames from each run's keyframe and the wanted ones (``decode_floor.frames_costs``, one timed pass
    per clip), opening the clip without decoding a frame (``open_media``) and converting the wanted frames to
    RGB at 224² (``frame_to_array``, one swscale context reused)."""
    def cost(data: bytes) -> float:
        wanted = uniform(data, NUM_FRAMES)
        return frames_costs(timed_packets(data, 1), wanted)[1] + open_convert_cost(data, set(wanted))

    return statistics.mean(cost(data) for data in dict.fromkeys(clips))


def open_convert_cost(data: bytes, wanted: "set[int]") -> float:
    """CPU s of opening ``data`` (headers only) and converting its ``wanted`` frames to 224² RGB, once decoded."""
    began = time.process_time()
    open_media(data).close()
    opened = time.process_time() - began
    with single_threaded(data) as container:
        stream = container.streams.video[0]
        width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, SIZE)
        frames = [frame for index, frame in zip(range(max(wanted) + 1), container.decode(stream)) if index in wanted]
    began = time.process_time()
    for frame in frames:
        center_crop(frame_to_array(frame, "rgb24", width, height), SIZE)
    return opened + time.process_time() - began


def tar_clips(folder: str) -> List[bytes]:
    """The videos of an output folder's tars."""
    clips = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tar"):
            with tarfile.open(os.path.join(folder, name)) as tar:
                clips += [tar.extractfile(m).read() for m in tar if m.name.endswith(".mp4") and m.size > 0]
    return clips


def exact_floor(clips: Sequence[bytes], rows: int, transfers: List[float]) -> Callable[[int], Dict[str, float]]:
    """A contender that runs beside the loaders, in every repeat: the clips/s of both cores doing nothing but the
    floor's work (opening, decoding only what must be, converting the wanted frames, plus the transfer, appended
    to ``transfers``; no tar parsing, no Python). Measured in turn with them, since the host's speed drifts by a
    fifth within minutes; its ratio to the plain loader is the most an exact loader could lead by."""
    def measure(_: int) -> Dict[str, float]:
        transfers.append(transfer_floor(rows))
        return {"rate": usable_cpus() / (read_floor(clips) + transfers[-1]), "clips": rows}
    return measure


# -- the table ----------------------------------------------------------------------------------------------------
@dataclass
class TableRow:
    job: str
    v2d: str
    reference: str
    ours: str
    ratio: str
    target: str
    holds: bool

    def cells(self) -> List[str]:
        return [self.job, self.v2d, self.reference, self.ours, self.ratio, self.target,
                "yes" if self.holds else "**no**"]


def print_markdown(rows: Sequence[TableRow]) -> None:
    """The table as markdown, with the issue's columns."""
    print("\n| job | video2dataset 1.3 | reference | streamv2d | ratio | target | holds? |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


def measure_download(args, work: str, table: str, urls: List[str], shim: str):
    """Row 1: download → tar. Returns the row and each contender's wall seconds by repeat."""
    rows = len(urls)
    config = v2d_config(os.path.join(work, "v2d-download.json"), rows, transcode=False)
    out = lambda name, i: os.path.join(work, f"download-{name}-{i}")  # noqa: E731
    walls = alternate({
        "video2dataset": lambda i: timed_command(v2d_command(args.v2d_python, table, out("v2d", i), config,
                                                             "download"), rows, out("v2d", i), v2d_env(shim)),
        "streamv2d": lambda i: timed_command(streamv2d_command(table, out("ours", i), rows, None), rows,
                                             out("ours", i)),
        "bytes + tar": lambda i: bytes_to_tar(urls, out("floor", i)),
    }, args.repeats, "download → tar")
    speedup = ratio(walls["video2dataset"], walls["streamv2d"])
    row = TableRow(f"download → tar ({rows} videos, {sum(os.path.getsize(p) for p in args.paths) / 1e6:.0f} MB)",
                   f"{median(walls['video2dataset']):.2f} s",
                   f"bytes over loopback + tar writing: {median(walls['bytes + tar']):.2f} s",
                   f"{median(walls['streamv2d']):.2f} s", f"v2d / ours {speedup:.1f}×; "
                   f"ours / floor {ratio(walls['streamv2d'], walls['bytes + tar']):.1f}×", "≥ 5× video2dataset",
                   speedup >= 5)
    return row, walls


def measure_transcode(args, work: str, table: str, v2d_downloads: List[float], shim: str):
    """Row 2: probe + fps 5 + 224² → tar. Returns the row, video2dataset's totals and both tools' shards."""
    rows = len(args.paths)
    config = v2d_config(os.path.join(work, "v2d-transcode.json"), rows, transcode=True)
    job = streamv2d_job2(os.path.join(work, "streamv2d-job2.yaml"))
    downloaded = shard_pattern(os.path.join(work, f"download-v2d-{args.repeats - 1}"))
    out = lambda name, i: os.path.join(work, f"transcode-{name}-{i}")  # noqa: E731
    walls = alternate({
        "video2dataset subset": lambda i: timed_command(v2d_command(args.v2d_python, downloaded, out("v2d", i),
                                                                    config, "subset"), rows, out("v2d", i),
                                                        v2d_env(shim)),
        "ffmpeg CLI": lambda i: run_mode(ffmpeg_cli, args.paths, WORKERS)[0],
        "streamv2d": lambda i: timed_command(streamv2d_command(table, out("ours", i), rows, job), rows,
                                             out("ours", i)),
    }, args.repeats, "probe + fps 5 + 224² → tar")
    download = median(v2d_downloads)
    v2d_totals = [download + subset for subset in walls["video2dataset subset"]]
    speedup, vs_ffmpeg = ratio(v2d_totals, walls["streamv2d"]), ratio(walls["streamv2d"], walls["ffmpeg CLI"])
    decoded, floor = (sum(costs) for costs in zip(*(fps_decode(open(p, "rb").read(), RATE) for p in args.paths)))
    row = TableRow("probe + fps 5 + 224² → tar", f"{median(v2d_totals):.1f} s (download {download:.1f} + "
                   f"subset {median(walls['video2dataset subset']):.1f})",
                   f"ffmpeg CLI, one pass per video: {median(walls['ffmpeg CLI']):.1f} s",
                   f"{median(walls['streamv2d']):.1f} s",
                   f"v2d / ours {speedup:.1f}×; ours / ffmpeg {vs_ffmpeg:.2f}×; our decode / its exact floor "
                   f"{decoded / floor:.2f}×",
                   "≥ 6× video2dataset; ≤ 0.7× ffmpeg one-pass", speedup >= 6 and vs_ffmpeg <= 0.7)
    last = args.repeats - 1
    return row, v2d_totals, out("ours", last), out("v2d", last)


def measure_shard_reads(args, label: str, folder: str, shim: str, transfers: List[float]):
    """Rows 3 and 4: 8 frames 224² from one tool's job-2 shards. Returns the row and video2dataset's runs."""
    pattern = shard_pattern(folder)
    runs = alternate({
        "video2dataset loader": lambda i: v2d_loader(args.v2d_python, shim, pattern),
        "webdataset + PyAV": lambda i: run(lambda: two_workers(plain_shard_loader(pattern))),
        "streamv2d": lambda i: run(ours(pattern)),
        f"streamv2d batch={BATCH}": lambda i: run(ours(pattern, BATCH)),
        "exact floor": exact_floor(tar_clips(folder), len(args.paths), transfers),
    }, args.repeats, label)
    _check_clips(runs, len(args.paths))
    plain = rates(runs["webdataset + PyAV"])
    lead, batched = ratio(rates(runs["streamv2d"]), plain), ratio(rates(runs[f"streamv2d batch={BATCH}"]), plain)
    bound = ratio(rates(runs["exact floor"]), plain)
    row = TableRow(label, f"its loader: {median(rates(runs['video2dataset loader'])):.0f} clips/s",
                   f"webdataset + PyAV: {median(plain):.0f} clips/s",
                   f"{median(rates(runs['streamv2d'])):.0f} ({median(rates(runs[f'streamv2d batch={BATCH}'])):.0f}"
                   f" with `batch_size={BATCH}`)", f"ours / wds {lead:.2f}× ({batched:.2f}× batched); "
                   f"exact floor ≤ {bound:.2f}×",
                   "≥ 2.5× webdataset + PyAV without tuning", lead >= 2.5)
    return row, runs["video2dataset loader"]


def _check_clips(runs: Dict[str, List[Dict[str, float]]], expected: int) -> None:
    for name, results in runs.items():
        if any(int(r["clips"]) != expected for r in results):
            raise RuntimeError(f"{name}: read {[int(r['clips']) for r in results]} clips, expected {expected}")


def measure_on_the_fly(args, table: str, urls: List[str],
                       transfers: List[float]) -> "tuple[List[TableRow], Dict[str, list]]":
    """Row 5 and its default-shard-size line: URL → 8 frames 224²."""
    counts: List[Counter] = []

    def default_shards(_: int) -> Dict[str, float]:
        counts.append(Counter())
        dataset = VideoDataset(table, subsamplers=[Frames(num_frames=NUM_FRAMES, size=SIZE)])
        return run(lambda: WorkerTally(two_workers(WorkerTagged(dataset)), counts[-1]))

    runs = alternate({
        "plain": lambda i: run(lambda: two_workers(PlainURLLoader(urls))),
        "streamv2d 16": lambda i: run(ours(table, samples_per_shard=16)),
        "streamv2d default": default_shards,
        "exact floor": exact_floor([open(path, "rb").read() for path in args.paths], len(urls), transfers),
    }, args.repeats, "on the fly")
    _check_clips(runs, len(urls))
    plain = rates(runs["plain"])
    lead, lead_default = ratio(rates(runs["streamv2d 16"]), plain), ratio(rates(runs["streamv2d default"]), plain)
    bound = ratio(rates(runs["exact floor"]), plain)
    split = " / ".join("+".join(str(c[w]) for w in range(WORKERS)) for c in counts)
    idle = any(min(c[w] for w in range(WORKERS)) == 0 for c in counts)
    rows = [TableRow(f"on the fly, URL → 8 frames 224², {WORKERS} workers, `samples_per_shard=16`", "no such mode",
                     f"plain requests + PyAV loader: {median(plain):.1f} clips/s",
                     f"{median(rates(runs['streamv2d 16'])):.1f}",
                     f"ours / plain {lead:.2f}×; exact floor ≤ {bound:.2f}×",
                     "≥ 2.5× the plain loader",
                     lead >= 2.5),
            TableRow(f"the same with the default `samples_per_shard` ({len(urls)} rows = 1 shard)", "—", "—",
                     f"{median(rates(runs['streamv2d default'])):.1f} clips/s; clips by worker {split}",
                     f"ours / plain {lead_default:.2f}×", "no idle worker whatever the table size", not idle)]
    return rows, runs


def measure_profiles(args, work: str, table: str, shards: str) -> List[dict]:
    """One profiled run of each streamv2d job (``stage_profile.run_job``): CPU seconds by stage."""
    folder = os.path.join(work, "profiles")
    os.makedirs(folder)
    return [run_job(job, table, folder, shards) for job in ("download", "transcode", "frames-shards", "frames-fly")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=96, help="rows of the URL table (distinct URLs)")
    parser.add_argument("--videos", type=int, default=48, help="distinct 10-s videos behind them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="24 rows, 1 repeat")
    parser.add_argument("--v2d-python", default=V2D_PYTHON, help="python of an environment with video2dataset 1.3")
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-corpus"))
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 24, 1
    args.paths = floor_corpus(args.corpus, args.rows, min(args.videos, args.rows))
    load0, start = os.getloadavg(), time.perf_counter()
    print(f"{args.rows} rows over {min(args.videos, args.rows)} videos, {args.repeats} repeats, load average "
          f"{load0[0]:.1f}", flush=True)
    with served(os.path.dirname(args.paths[0])) as base, tempfile.TemporaryDirectory() as work:
        shim = os.path.join(work, "v2d-shim")
        os.makedirs(shim)
        with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
            f.write(GET_RANK_SHIM)
        urls = [f"{base}/videos/{os.path.basename(p)}" for p in args.paths]
        table = write_table(os.path.join(work, "urls.csv"), urls)
        download, walls = measure_download(args, work, table, urls, shim)
        transcode, v2d_job2, our_shards, v2d_shards = measure_transcode(args, work, table, walls["video2dataset"],
                                                                        shim)
        transfers: List[float] = []
        ours_read, _ = measure_shard_reads(args, "8 frames 224² from streamv2d's shards of that job, 2 workers",
                                           our_shards, shim, transfers)
        theirs_read, v2d_reads = measure_shard_reads(
            args, "8 frames 224² from **video2dataset's** shards of the same job (x264 defaults, long GOPs)",
            v2d_shards, shim, transfers)
        fly_rows, fly = measure_on_the_fly(args, table, urls, transfers)
        plain_first, our_first = rates(fly["plain"], "first"), rates(fly["streamv2d 16"], "first")
        first = TableRow("first sample from `iter(loader)`",
                         f"≈ {median(v2d_job2) + median(rates(v2d_reads, 'first')):.1f} s (job 2 first)",
                         f"plain loader {median(plain_first):.2f} s; the first clip's exact read floor: "
                         f"{read_floor([open(args.paths[0], 'rb').read()]):.2f} s of one core",
                         f"{median(our_first):.2f} s (default shards: "
                         f"{median(rates(fly['streamv2d default'], 'first')):.2f})",
                         f"ours / plain {ratio(our_first, plain_first):.2f}×", "< 0.3 s", median(our_first) < 0.3)
        profiles = measure_profiles(args, work, table, shard_pattern(our_shards))
    load1 = os.getloadavg()
    print(f"\n## issue 15's table: {args.rows} rows ({min(args.videos, args.rows)} real videos), {WORKERS} processes /"
          f" workers, medians of {args.repeats}; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end"
          f" ({load1[2]:.1f} over 15 min); {time.perf_counter() - start:.0f} s")
    print_markdown([download, transcode, ours_read, theirs_read, *fly_rows, first])
    print(f"\nexact floor ≤ N×: the clips/s of {usable_cpus()} cores spending only the least any exact reader must "
          f"spend, over the plain loader's, measured in each repeat — the clip opened without decoding a frame, the "
          f"reference frames from each run's keyframe and the wanted ones decoded (decode_floor.py), the wanted ones "
          f"converted to {SIZE}² RGB, plus {1000 * median(transfers):.1f} ms of one core (median) to hand a clip's "
          f"frames to the main process (a DataLoader of blank 8×224²×3 tensors, 2 workers); no tar parsing, no "
          f"Python")
    print_table("streamv2d's jobs, CPU seconds by stage (one profiled run each)", profiles)
    print("\nshares of each job's CPU (%), by row: download = 1, transcode = 2, frames-shards = 3, frames-fly = 5")
    for row in profiles:
        print(f"  {row['job']:14s} {shares(row)}")


if __name__ == "__main__":
    main()
