"""``streamv2d materialize``: N processes, resumable after kill -9, a video2dataset config runs as is."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from streamv2d.cli import main
from streamv2d.config import load_config
from conftest import write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "streamv2d.cli", *args], env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen)


def listing(folder):
    return os.listdir(folder) if os.path.isdir(folder) else []


def published(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def decoded_samples(folder):
    """Every sample of the folder's tar shards, decoded."""
    return [s for name in sorted(os.listdir(folder)) if name.endswith(".tar")
            for s in wds.WebDataset(os.path.join(folder, name), shardshuffle=False).decode()]


def tar_payloads(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tar"):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def test_materialize_two_processes_then_skip(tmp_path, url_rows, server, capsys):
    rows = url_rows + [{"url": server.url("status/404"), "caption": "gone"}]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    out = str(tmp_path / "out")
    assert main(["materialize", table, out, "--processes", "2", "--caption-col", "caption",
                 "--samples-per-shard", "5", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "successes: 12 (92.3%)" in printed and "HTTP 404" in printed
    assert [n for n in published(out) if n.endswith("_stats.json")] == [f"{k:05d}_stats.json" for k in range(3)]
    samples = list(wds.WebDataset(os.path.join(out, "{00000..00002}.tar"), shardshuffle=False))
    videos = [s for s in samples if "mp4" in s]   # the failed row is written too (json, txt), as video2dataset does
    assert len(samples) == 13 and len(videos) == 12 and all(s["mp4"][4:8] == b"ftyp" for s in videos)
    before = server.total_requests()
    assert main(["materialize", table, out, "--caption-col", "caption", "--samples-per-shard", "5", "-q"]) == 0
    assert "3 of 3 shards already complete" in capsys.readouterr().out
    assert server.total_requests() == before


@pytest.mark.parametrize("chain", [None, "subsampling: [probe, {fps: 5}, {resolution: {size: 48, mode: 'scale,crop'}}]"],
                         ids=["download", "transcode"])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, server, corpus_names, chain):
    """Byte-identical shards after kill -9 and resume, against an uninterrupted run with another process count
    — for a transcoding job too (its MP4 bytes differed from run to run before the determinism fix)."""
    rows = [{"url": server.url(f"slow/0.2/{n}"), "caption": f"{i}"} for i, n in enumerate(corpus_names * 2)]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    config = []
    if chain:
        (tmp_path / "job.yaml").write_text(chain + "\n")
        config = ["--config", str(tmp_path / "job.yaml")]
    args = ["--caption-col", "caption", "--samples-per-shard", "4", "--threads", "1", "-q", *config]
    job = cli("materialize", table, killed, *args, "--processes", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.endswith("_stats.json") for n in listing(killed)):
        time.sleep(0.05)
    time.sleep(0.3)                                                       # the next shards are part-way
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert listing(os.path.join(killed, ".streamv2d", "spool"))            # killed mid-shard
    assert all(".tmp" not in n for n in published(killed))
    fetched_before_resume = server.total_requests()
    resumed = cli("materialize", table, killed, *args, "--processes", "2")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    resume_requests = server.total_requests() - fetched_before_resume
    assert resume_requests < len(rows)                                    # done rows were not fetched again
    done = cli("materialize", table, clean, *args, "--processes", "1")
    assert done.wait(timeout=120) == 0, done.stderr.read()
    assert published(killed) == published(clean)
    assert tar_payloads(killed) == tar_payloads(clean)                   # byte-identical shards
    for name in (n for n in published(clean) if n.endswith(".parquet")):
        assert pq.read_table(os.path.join(killed, name)) == pq.read_table(os.path.join(clean, name))
    for k in range(6):
        a, b = (json.load(open(os.path.join(d, f"{k:05d}_stats.json"))) for d in (killed, clean))
        assert {f: a[f] for f in ("count", "successes", "failed_to_download")} == \
               {f: b[f] for f in ("count", "successes", "failed_to_download")}


def test_video2dataset_config_runs_and_reports_ignored_keys(tmp_path):
    config = tmp_path / "v2d.yaml"
    config.write_text("""
subsampling: {}
reading:
    yt_args:
        download_size: 360
        download_audio_rate: 44100
        yt_metadata_args: {writesubtitles: True}
    timeout: 60
    sampler: null
storage:
    number_sample_per_shard: 1000
    oom_shard_count: 5
    captions_are_subtitles: False
distribution:
    processes_count: 16
    thread_count: 32
    subjob_size: 1000
    distributor: "multiprocessing"
""")
    job = load_config(str(config))
    assert job.table.samples_per_shard == 1000
    assert job.processes == 16 and job.fetch.threads == 32 and job.fetch.read_timeout == 60
    assert job.fetch.yt_dlp_options["format"].startswith("w[height>=360]")   # smallest at or above, as v2d
    assert [type(s).__name__ for s in job.subsamplers] == ["YtMetadata"]       # yt_metadata_args → yt_meta_dict
    ignored = " ".join(job.notes)
    for key in ("oom_shard_count", "subjob_size", "sampler", "download_audio_rate"):
        assert key in ignored


def test_bad_config_and_input_exit_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("storage: {colour: blue}\n")
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "u"}])
    assert main(["materialize", table, str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "unknown key(s) in storage: ['colour']" in capsys.readouterr().err
    assert main(["materialize", str(tmp_path / "missing.csv"), str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_video2dataset_subsampling_maps_to_ours(tmp_path):
    config = tmp_path / "v2d.yaml"
    config.write_text("""
subsampling:
    ResolutionSubsampler: {args: {video_size: 224, resize_mode: "scale,crop,pad"}}
    FrameSubsampler: {args: {frame_rate: 5}}
    CutDetectionSubsampler: {cuts_are_clips: True, args: {cut_detection_mode: "all", framerates: null,
                                                          threshold: 11.5, min_scene_len: 15}}
    ClippingSubsampler: {args: {min_length: 4.0, max_length: 10.0, max_length_strategy: "all",
                                precision: "keyframe_adjusted"}}
    FFProbeSubsampler: {args: {extract_keyframes: False}}
""")
    job = load_config(str(config))
    assert [type(s).__name__ for s in job.subsamplers] == ["Probe", "CutDetection", "Clip", "Resolution", "FPS"]
    cuts, clip, res, fps = job.subsamplers[1:]   # video2dataset's order (fused into one pass anyway)
    assert cuts.cuts_are_clips and cuts.threshold == 11.5 and clip.precision == "keyframe_adjusted"
    assert fps.rate == 5 and (res.width, res.height, res.mode) == (224, 224, "scale,crop,pad")


def test_a_stage_that_cannot_run_stops_the_config(tmp_path):
    """A stage with no counterpart was dropped while the job reported success; now the config is refused."""
    config = tmp_path / "v2d.yaml"
    config.write_text("subsampling: {FFProbeSubsampler: {}, NoSuchSubsampler: {args: {model_name: large-v2}}}\n")
    with pytest.raises(ValueError, match="NoSuchSubsampler cannot run here"):
        load_config(str(config))


def test_materialize_with_our_yaml_transcodes(tmp_path, url_rows):
    import av
    import io

    config = tmp_path / "job.yaml"
    config.write_text("""
subsampling:
  - probe
  - fps: {rate: 5}
  - resolution: {size: 64, mode: "scale,crop,pad"}
reading: {caption_col: caption, samples_per_shard: 2}
storage: {format: tar}
distribution: {processes: 2, threads: 2}
""")
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:3])
    out = str(tmp_path / "out")
    assert main(["materialize", table, out, "--config", str(config), "-q"]) == 0
    samples = list(wds.WebDataset(os.path.join(out, "{00000..00001}.tar"), shardshuffle=False))
    assert len(samples) == 3
    with av.open(io.BytesIO(samples[0]["mp4"])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
        assert abs(float(stream.average_rate) - 5) < 0.01
    assert "video_metadata" in json.loads(samples[0]["json"])


def test_example_job_file_loads():
    job = load_config(os.path.join(ROOT, "examples", "job.yaml"))
    assert [type(s).__name__ for s in job.subsamplers] == ["Probe", "FPS", "Resolution", "Encode"]
    assert job.fetch.max_bytes == 500_000_000 and job.fetch.yt_dlp_options == {"format": "best[height<=360]/best"}
    assert (job.processes, job.fetch.threads, job.output_format) == (2, 8, "tar")
    assert (job.table.url_col, job.table.caption_col, job.table.samples_per_shard) == ("url", "caption", 1000)


def test_materialize_then_reprocess_then_train(tmp_path, url_rows):
    import torch

    import streamv2d as sv

    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    assert main(["materialize", table, first, "--caption-col", "caption", "--samples-per-shard", "2", "-q"]) == 0
    config = tmp_path / "small.yaml"
    config.write_text("subsampling: [{resolution: {size: 32, mode: 'scale,crop'}}]\n")
    assert main(["materialize", first, second, "--config", str(config), "-q"]) == 0   # a folder is a source
    ds = sv.VideoDataset(second, subsamplers=[sv.Frames(num_frames=2, size=None)])
    samples = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert sorted(s["__key__"] for s in samples) == ["000000", "000001", "000010", "000011"]
    assert all(tuple(s["frames"].shape) == (2, 32, 32, 3) for s in samples)
    assert all(s["txt"].startswith("caption of") for s in samples)


def test_default_processes_use_every_cpu_up_to_one_per_shard(tmp_path, url_rows, monkeypatch, capsys):
    """With no ``processes`` given, materialize runs one process per usable CPU, never more than shards (the
    default was 1: a 2-shard table ran serially on a many-core machine); an explicit count is kept."""
    mat = sys.modules["streamv2d.materialize"]   # the package binds the name to the function
    runs = []
    monkeypatch.setattr(mat, "_run", lambda job, store, todo, processes, progress: runs.append(processes) or [])
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:6])
    monkeypatch.setattr(mat, "usable_cpus", lambda: 8)
    assert main(["materialize", table, str(tmp_path / "a"), "--samples-per-shard", "2", "-q"]) == 0
    monkeypatch.setattr(mat, "usable_cpus", lambda: 2)
    assert main(["materialize", table, str(tmp_path / "b"), "--samples-per-shard", "2", "-q"]) == 0
    assert main(["materialize", table, str(tmp_path / "c"), "--samples-per-shard", "2", "--processes", "1",
                 "-q"]) == 0
    assert runs == [3, 2, 1]
    assert "rather than" not in capsys.readouterr().out   # the default is not a request to warn about


NO_TORCH = """
import json, sys
import streamv2d as sv

def note(sample):   # forked into the workers with the rest of __main__
    sample["json"]["torch_loaded"] = "torch" in sys.modules
    return sample

job = sv.Job(subsamplers=[sv.Probe(), sv.FPS(5), sv.Resolution(32, mode="scale,crop"), note],
             table={"samples_per_shard": 2})
sv.materialize(sys.argv[1], sys.argv[2], job, processes=2, progress=False)
print(json.dumps("torch" in sys.modules))
"""


def test_a_curation_job_never_imports_torch(tmp_path, url_rows):
    """The issue asks whether ``materialize`` needs torch before its first row: it never imports it, in the
    calling process or in its workers, now that every decoding stage asks for its core share (which looks for a
    DataLoader worker only where torch is already loaded)."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    done = subprocess.run([sys.executable, "-c", NO_TORCH, table, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "false"
    noted = [s["json"]["torch_loaded"] for s in decoded_samples(str(tmp_path / "out"))]
    assert noted == [False] * 4


def _record_core_share(sample):
    """A subsampler noting the cores its process may keep busy (``core_share``) in the sample's json."""
    from streamv2d.distribute import core_share

    sample["json"]["core_share"] = core_share()
    return sample


def test_each_local_process_decodes_on_its_share_of_the_cores(tmp_path, url_rows, monkeypatch):
    """Every materialize process counts itself one of ``processes`` on the machine's cores, so its decode slots
    keep only its share busy (each thought it had every core: 2 processes on 2 cores ran 4 transcodes at once,
    each with its decoder's threads, 14 % slower than one per core)."""
    import streamv2d as sv
    from streamv2d.distribute import world

    monkeypatch.setattr(world.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert world.core_share() == 8
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    job = sv.Job(subsamplers=[_record_core_share], table={"samples_per_shard": 2})
    sv.materialize(table, str(tmp_path / "out"), job, processes=2, progress=False)
    shares = {s["json"]["core_share"] for s in decoded_samples(str(tmp_path / "out"))}
    assert shares == {4}   # 8 cores over 2 processes
    assert world.core_share() == 8   # the calling process keeps every core
    world.share_cores_among(16)
    try:
        assert world.core_share() == 1
    finally:
        world.share_cores_among(1)
