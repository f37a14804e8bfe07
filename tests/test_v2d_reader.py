"""streamv2d's video2dataset output read by video2dataset's own dataloader (issue 13, Tests): the real
``video2dataset.dataloader.get_video_dataset`` 1.3.0 from .venv-v2d (built by .ci/v2d-reader-env) in a
subprocess, and without that environment a check of the layout its loaders read, from their code."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections import defaultdict
from typing import Dict, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamv2d.cli import main
from streamv2d.demo import LoopbackServer, make_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V2D_PYTHON = os.environ.get("STREAMV2D_V2D_PYTHON", os.path.join(ROOT, ".venv-v2d", "bin", "python"))
PROBE = os.path.join(ROOT, "tests", "v2d_reader_probe.py")
VIDEO_KEYS = "mp4 ogv mjpeg avi mov h264 mpg webm wmv".split()    # the extensions its VideoDecorder decodes

# What each row of the stand-in table becomes: the keys of its written samples (clips are `{key}_{i}`).
SUCCESS_KEYS = ["00000000_00000", "00000000_00001", "00000001_00000"]
FAILED_KEY = "00000002"

# A video2dataset config (its downsample_ml, small): resolution and frame rate, clipped exactly, ffprobe metadata.
SUBSET_CONFIG = """\
subsampling:
  ResolutionSubsampler: {args: {video_size: 40, resize_mode: "scale,crop,pad"}}
  FrameSubsampler: {args: {frame_rate: 5}}
  ClippingSubsampler: {args: {min_length: 0.5, max_length: 10.0, max_length_strategy: all, precision: exact}}
  FFProbeSubsampler: {args: {extract_keyframes: false}}
reading: {timeout: 60, sampler: null}
storage: {number_sample_per_shard: 1000, oom_shard_count: 5, captions_are_subtitles: false}
distribution: {processes_count: 1, thread_count: 4, subjob_size: 1000, distributor: multiprocessing}
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A parquet table as video2dataset's clip datasets have (url, caption, clips, an int column) on 127.0.0.1:
    two videos with a keyframe a second (the first with sound and two clips) and a row whose URL is a 404."""
    folder = tmp_path_factory.mktemp("reader-videos")
    (folder / "a.mp4").write_bytes(make_video(4.0, 96, 64, fps=10, audio=True, gop=10, seed=1))
    (folder / "b.mp4").write_bytes(make_video(3.0, 80, 48, fps=10, gop=10, seed=2))
    with LoopbackServer(str(folder)) as server:
        rows = [{"url": server.url("videos/a.mp4"), "caption": "a red kite", "clips": [[0.0, 1.0], [2.0, 3.0]],
                 "videoid": 10},
                {"url": server.url("videos/b.mp4"), "caption": "two bikes", "clips": [[0.0, 2.0]], "videoid": 11},
                {"url": server.url("videos/gone.mp4"), "caption": "gone", "clips": [[0.0, 1.0]], "videoid": 12}]
        path = str(folder / "table.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
        yield path


@pytest.fixture(scope="module")
def outputs(table, tmp_path_factory) -> Dict[str, str]:
    """Tar shards from video2dataset's command line (config ``default``) and from ``streamv2d materialize`` with
    a video2dataset config file."""
    base = tmp_path_factory.mktemp("reader-out")
    download = str(base / "download")
    assert main(["video2dataset", f"--url_list={table}", "--input_format=parquet", "--output_format=webdataset",
                 f"--output_folder={download}", "--url_col=url", "--caption_col=caption", "--clip_col=clips",
                 "--save_additional_columns=[videoid]", "--config=default"]) == 0
    config = base / "subset.yaml"
    config.write_text(SUBSET_CONFIG)
    subset = str(base / "subset")
    assert main(["materialize", table, subset, "--config", str(config), "--caption-col", "caption",
                 "--clip-col", "clips", "--save-additional-columns", "videoid", "-q"]) == 0
    return {"download": os.path.join(download, "00000.tar"), "subset": os.path.join(subset, "00000.tar")}


# --- the layout its loaders read, without video2dataset ---------------------------------------------------------

def tar_members(shard: str):
    """(name, bytes) of the tar's files in order, as both its loaders walk it."""
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


def webdataset_samples(members) -> List[dict]:
    """webdataset's tarfile_to_samples (its ``pipe:`` path): the key is the name up to the first dot, the rest
    the member; consecutive members of one key make a sample, and a member twice in one sample is an error."""
    samples: List[dict] = []
    for name, data in members:
        key, _, ext = os.path.basename(name).partition(".")
        if not samples or samples[-1]["__key__"] != key:
            samples.append({"__key__": key})
        assert ext not in samples[-1], f"{name}: a second .{ext} in one sample"
        samples[-1][ext] = data
    return samples


def torchdata_samples(members) -> List[dict]:
    """Its TorchDataWebdataset (local paths): members grouped by ``basename.split('.')[0]`` anywhere in the tar,
    each named by its last extension only (custom_wds.grouper and _s3dataset2samples)."""
    groups: Dict[str, dict] = defaultdict(dict)
    for name, data in members:
        groups[os.path.basename(name).split(".")[0]][name.split(".")[-1]] = data
    return [{"__key__": key, **sample} for key, sample in groups.items()]


def decord_frames(data: bytes, ext: str):
    """Its VideoDecorder's first steps: the bytes to a temporary file, decord's reader, the average rate."""
    import tempfile

    decord = pytest.importorskip("decord")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"file.{ext}")
        with open(path, "wb") as f:
            f.write(data)
        reader = decord.VideoReader(path, num_threads=1)
    return len(reader), reader.get_avg_fps(), reader.get_batch([0]).asnumpy().shape


@pytest.mark.parametrize("name", ["download", "subset"])
def test_layout_its_loaders_read(outputs, name):
    members = tar_members(outputs[name])
    by_webdataset, by_torchdata = webdataset_samples(members), torchdata_samples(members)
    assert by_webdataset == by_torchdata                       # both loaders see the same samples
    assert [s["__key__"] for s in by_webdataset] == SUCCESS_KEYS + [FAILED_KEY]
    for sample in by_webdataset:
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"] and isinstance(meta["videoid"], int)
        assert sample["txt"].decode() == meta["caption"]       # KeyFilter's default needs txt beside the video
        if sample["__key__"] == FAILED_KEY:                     # a failed row: its records, no media
            assert sorted(sample) == ["__key__", "json", "txt"] and meta["status"] == "failed_to_download"
            continue
        assert meta["status"] == "success" and meta["error_message"] is None
        [video] = [ext for ext in sample if ext in VIDEO_KEYS]
        count, fps, shape = decord_frames(sample[video], video)
        assert count >= 5 and shape[-1] == 3
        assert round(fps) == (10 if name == "download" else 5)
        if name == "subset":
            assert shape[1:3] == (40, 40)


def test_layout_check_sees_what_splits_its_loaders():
    """Layouts its two loaders read differently: a dotted member name, and a sample's members apart."""
    dotted = [("k.json", b"{}"), ("k.optical_flow.npy", b"x")]
    assert webdataset_samples(dotted) != torchdata_samples(dotted)
    apart = [("a.mp4", b"v"), ("b.mp4", b"w"), ("a.txt", b"t")]
    assert len(webdataset_samples(apart)) == 3 and len(torchdata_samples(apart)) == 2


# --- video2dataset's get_video_dataset -----------------------------------------------------------------------------

def jobs(outputs) -> Dict[str, str]:
    """The reads, named: each output by both paths of get_video_dataset (local: torchdata; ``pipe:``: webdataset),
    the download's bytes, and every record of it through webdataset."""
    named = {f"frames {name} {path}": f"frames={shard if path == 'torchdata' else f'pipe:cat {shard}'}"
             for name, shard in outputs.items() for path in ("torchdata", "pipe")}
    return {**named, "bytes": f"bytes={outputs['download']}", "records": f"records={outputs['download']}"}


@pytest.fixture(scope="module")
def read(outputs) -> Dict[str, List[dict]]:
    """Samples of each job, from one run of tests/v2d_reader_probe.py in .venv-v2d."""
    if not os.path.exists(V2D_PYTHON):
        pytest.skip(f"no video2dataset environment at {V2D_PYTHON} (build it with .ci/v2d-reader-env)")
    named = jobs(outputs)
    done = subprocess.run([V2D_PYTHON, PROBE, *named.values()], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line[len("SAMPLE "):]) for line in done.stdout.splitlines() if line.startswith("SAMPLE ")]
    return {name: [line for line in lines if line["job"] == job] for name, job in named.items()}


@pytest.mark.parametrize("name", ["download", "subset"])
@pytest.mark.parametrize("path", ["torchdata", "pipe"])
def test_get_video_dataset_decodes_our_shards(read, name, path):
    samples = read[f"frames {name} {path}"]
    assert sorted(s["key"] for s in samples) == SUCCESS_KEYS    # the failed row has no video: filtered out
    heights = {"a red kite": 64, "two bikes": 48}
    for sample in samples:
        assert sample["mp4"] == [4, 32, 32, 3] and sample["dtype"] == "torch.float16"
        assert sample["json"]["key"] == sample["key"] and sample["json"]["status"] == "success"
        assert sample["json"]["videoid"] in (10, 11) and sample["txt"] in heights
        assert sample["native_fps"] == 5
        assert sample["original_height"] == (40 if name == "subset" else heights[sample["txt"]])
    second_clip = next(s for s in samples if s["key"] == "00000000_00001")
    assert second_clip["json"]["clips"] == [[2.0, 3.0]] and second_clip["json"]["original_key"] == "00000000"


def test_get_video_dataset_bytes_and_failed_records(read):
    raw = read["bytes"]
    assert [s["key"] for s in raw] == SUCCESS_KEYS
    assert all(s["mp4_head"] == "ftyp" and s["members"] == ["json", "mp4", "txt"] for s in raw)
    records = {r["key"]: r for r in read["records"]}
    failed = records[FAILED_KEY]
    assert failed["members"] == ["json", "txt"] and failed["txt"] == "gone"
    assert failed["json"]["status"] == "failed_to_download" and failed["json"]["error_message"] == "HTTP 404"
    assert records["00000000_00000"]["json"]["yt_meta_dict"] == {}
