"""video2dataset configs load with its meaning: every key of its configs, its subsampler arguments, its
yt_args (findings 1–3 of issue 13)."""
from __future__ import annotations

import glob
import os

import pytest
import yaml

from streamv2d.config import download_size_format, job_from_dict, load_config
from streamv2d.subsamplers import Audio, Clip, Resolution, run_chain
from streamv2d.subsamplers.registry import V2DContext, from_video2dataset
from streamv2d.v2d import PACKAGED_CONFIGS
from streamv2d.v2d.api import load_v2d_config

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "datasets")

#: API.md's "maxed out" reading section, with the rest of a config
MAXED_OUT_READING = """
subsampling: {}
reading:
  yt_args:
    download_size: 360
    yt_metadata_args: {writesubtitles: all, subtitleslangs: [en], writeautomaticsub: true, get_info: true}
  dataloader_args:
    resize_size: 16
    decoder_kwargs: {n_frames: null, fps: 2, num_threads: 8, return_bytes: true}
  timeout: 60
  sampler: null
storage: {number_sample_per_shard: 1000, oom_shard_count: 5, captions_are_subtitles: false}
distribution: {processes_count: 1, thread_count: 8, subjob_size: 1000, distributor: multiprocessing}
"""


def names(job):
    return [type(s).__name__ for s in job.subsamplers]


@pytest.mark.parametrize("name", PACKAGED_CONFIGS)
def test_packaged_configs_load(name):
    """optical_flow and caption stopped at `unknown key(s) in reading: ['dataloader_args']` before."""
    job = job_from_dict(load_v2d_config(name))
    assert job.table.samples_per_shard == 1000
    expected = {"default": ["YtMetadata"], "optical_flow": ["OpticalFlow"], "caption": ["Caption"],
                "downsample_ml": ["YtMetadata", "Probe", "CutDetection", "Clip", "Resolution", "FPS"]}[name]
    assert names(job) == expected


def test_dataloader_args_reach_the_stages():
    job = job_from_dict(load_v2d_config("optical_flow"))
    [flow] = job.subsamplers
    assert (flow.fps, flow.size, flow.dtype, flow.member) == (2, 16, "fp16", "npy")
    [caption] = job_from_dict(load_v2d_config("caption")).subsamplers
    assert (caption.num_frames, caption.size, caption.batch_size) == (8, 224, 32)
    assert caption.model == "kpyu/video-blip-flan-t5-xl-ego4d" and caption.field == "vblip" and caption.to_txt
    job = job_from_dict(yaml.safe_load(MAXED_OUT_READING))
    assert any("num_threads" in note for note in job.notes)


def test_distributor_args_reach_the_engine_or_are_noted():
    doc = yaml.safe_load(MAXED_OUT_READING)
    doc["distribution"]["distributor_args"] = {"cpus_per_task": 16, "n_nodes": 2, "partition": "cpu64"}
    job = job_from_dict(doc)                                  # multiprocessing: video2dataset ignores them too
    assert job.distributor_args == {} and any("distributor_args" in note for note in job.notes)
    doc["distribution"]["distributor"] = "slurm"
    job = job_from_dict(doc)
    assert job.distributor == "slurm" and job.distributor_args["max_parallel"] == 2
    assert set(job.distributor_args["sbatch_args"]) == {"--cpus-per-task=16", "--partition=cpu64"}
    assert job.replace(processes=2).distributor_args == job.distributor_args


def test_dataset_pages_configs_load():
    """Every config of the dataset pages (video2dataset's dataset_examples) loads; a non-local distributor is
    the one thing left to the engines."""
    pages = sorted(glob.glob(os.path.join(DOCS, "*.md")))
    assert len(pages) >= 6
    for page in pages:
        for block in _yaml_blocks(page):
            doc = yaml.safe_load(block)
            if doc.get("distribution", {}).get("distributor", "multiprocessing") != "multiprocessing":
                with pytest.raises(ValueError, match="distribution.distributor"):
                    job_from_dict(doc)
                doc["distribution"]["distributor"] = "multiprocessing"
            job_from_dict(doc, clip_col="clips")


def _yaml_blocks(path):
    text = open(path).read()
    return [part.split("```", 1)[0] for part in text.split("```yaml")[1:]]


def test_unknown_keys_are_errors_naming_them():
    doc = yaml.safe_load(MAXED_OUT_READING)
    doc["reading"]["dataloader_args"]["colour"] = 1
    with pytest.raises(ValueError, match=r"reading.dataloader_args: unknown key\(s\) \['colour'\]"):
        job_from_dict(doc)
    with pytest.raises(ValueError, match=r"ClippingSubsampler.args: unknown argument\(s\) \['speed'\]"):
        from_video2dataset({"ClippingSubsampler": {"args": {"speed": 2}}}, [])
    with pytest.raises(ValueError, match="downsample_method: 'yt_subtitle'"):
        from_video2dataset({"FrameSubsampler": {"args": {"frame_rate": 1, "downsample_method": "yt_subtitle"}}}, [])


def test_a_clip_column_makes_a_clip_stage():
    """The ACAV config has no ClippingSubsampler, but video2dataset clips by the clip column."""
    job = job_from_dict({"subsampling": {}, "storage": {"number_sample_per_shard": 2000}}, clip_col="clips")
    [clip] = job.subsamplers
    assert isinstance(clip, Clip) and clip.precision == "keyframe" and clip.no_clips == "pass"
    cuts_only = from_video2dataset({"CutDetectionSubsampler": {"cuts_are_clips": True}}, [])
    assert [type(s).__name__ for s in cuts_only] == ["Clip"]   # clips by the cuts already in json


def test_clipping_defaults_and_precision_low():
    """precision "low" (video2dataset's default) was refused."""
    [clip] = from_video2dataset({"ClippingSubsampler": {"args": {"precision": "low", "max_length": 999999.0}}}, [])
    assert clip.precision == "keyframe"
    assert Clip(precision="low").precision == "keyframe"


def test_resolution_width_or_height_alone():
    """ResolutionSubsampler's width/height were refused; scale with a width alone scales to that width."""
    [res] = from_video2dataset({"ResolutionSubsampler": {"args": {"resize_mode": "scale", "width": 160,
                                                                   "height": -1, "video_size": -1}}}, [])
    assert res.geometry(320, 240)[1] == (160, 120)
    assert Resolution(height=120).geometry(320, 240)[1] == (160, 120)
    assert Resolution(width=200, height=100, mode="scale,crop").geometry(320, 240)[1] == (200, 100)


def test_frame_subsampler_methods_and_format():
    fps = from_video2dataset({"FrameSubsampler": {"args": {"frame_rate": 5, "encode_format": "webm"}}}, [])
    assert [type(s).__name__ for s in fps] == ["FPS", "Encode"] and fps[1].container == "webm"
    [still] = from_video2dataset({"FrameSubsampler": {"args": {"frame_rate": 1,
                                                                "downsample_method": "first_frame"}}}, [])
    assert type(still).__name__ == "Still" and still.method == "first_frame"


def test_first_frame_and_keyframes(small_video):
    from streamv2d.subsamplers.stills import Still
    from streamv2d.subsamplers import probe

    out = Still("first_frame")(sample(small_video))
    assert out["jpg"][:2] == b"\xff\xd8" and out["mp4"] == small_video
    keys = Still("keyframe")(sample(small_video))
    assert probe(keys["mp4"])["frame_count"] == 4   # one keyframe a second in a 4 s video


def test_clip_times_as_strings_from_a_table(tmp_path, server, corpus_names):
    """HH:MM:SS.fff clip cells failed the row (`could not convert string to float`)."""
    import json

    from streamv2d.shard import ShardJob
    from tests.conftest import write_csv

    table = write_csv(str(tmp_path / "t.csv"), [{"url": server.url(f"videos/{corpus_names[0]}"),
                                                 "clips": json.dumps([["00:00:00.000", "00:00:01.000"]])}])
    job = job_from_dict({"subsampling": {"ClippingSubsampler": {"args": {"precision": "exact"}}}},
                        table, clip_col="clips").replace(table={"clip_col": "clips"})
    [(_, outputs)] = list(ShardJob(job).row_groups(0))
    assert [o["json"]["status"] for o in outputs] == ["success"]
    assert outputs[0]["json"]["clips"] == [["00:00:00.000", "00:00:01.000"]]   # kept as text, as video2dataset


def test_clip_without_a_source_passes_the_video(small_video):
    """A ClippingSubsampler with no clip source failed every row; video2dataset passes the video through."""
    [clip] = from_video2dataset({"ClippingSubsampler": {"args": {}}}, [])
    [out] = run_chain(sample(small_video), [clip])
    assert out["json"]["status"] == "success" and out["mp4"] == small_video
    [failed] = run_chain(sample(small_video), [Clip()])
    assert failed["json"]["status"] == "failed_to_subsample"   # ours stays explicit


def test_audio_rate_keeps_videos_without_sound(small_video):
    [audio] = from_video2dataset({"AudioRateSubsampler": {"args": {"sample_rate": 16000,
                                                                    "encode_format": "m4a"}}}, [])
    assert isinstance(audio, Audio) and audio.required is False
    [out] = run_chain(sample(small_video), [audio])
    assert out["json"]["status"] == "success" and "m4a" not in out


def test_download_size_picks_the_smallest_at_or_above():
    """The translation picked the best format at or below download_size; video2dataset picks the smallest at
    or above it. Checked with yt-dlp's own format selector."""
    import yt_dlp

    formats = [{"format_id": str(h), "height": h, "ext": "mp4", "vcodec": "avc1", "acodec": "mp4a", "url": "u",
                "protocol": "https"} for h in (144, 240, 480, 720)]
    job = job_from_dict({"reading": {"yt_args": {"download_size": 360}}})
    fmt = job.fetch.yt_dlp_options["format"]
    assert fmt == download_size_format(360)
    selector = yt_dlp.YoutubeDL({"quiet": True}).build_format_selector(fmt)
    chosen = list(selector({"formats": formats, "incomplete_formats": False, "has_merged_format": False}))
    assert [f["format_id"] for f in chosen] == ["480"]
    tiny = list(selector({"formats": formats[:2], "incomplete_formats": False, "has_merged_format": False}))
    assert [f["format_id"] for f in tiny] == ["240"]   # none that big: the best there is


def test_load_config_reads_a_v2d_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MAXED_OUT_READING)
    assert names(load_config(str(path))) == ["YtMetadata"]
    assert names(load_config(str(path), clip_col="clips")) == ["YtMetadata", "Clip"]   # materialize --clip-col


def sample(data: bytes) -> dict:
    return {"__key__": "k", "mp4": data, "json": {"key": "k", "status": "success"}}


@pytest.fixture(scope="module")
def small_video() -> bytes:
    from streamv2d.demo import make_video

    return make_video(4.0, 64, 48, fps=10, gop=10)


def test_context_is_optional():
    assert from_video2dataset({}, [], V2DContext()) == []


def test_video_metadata_is_ffprobe_json(small_video):
    """video_metadata was streamv2d's own summary; video2dataset's readers expect ffprobe's JSON."""
    from streamv2d.subsamplers import FPS, Probe, compile_chain

    for chain in ([Probe(keyframes=True)], compile_chain([Probe(keyframes=True), FPS(5)])):
        [out] = run_chain({"__key__": "k", "mp4": small_video, "json": {"url": "http://h/v.mp4"}}, chain)
        meta = out["json"]["video_metadata"]
        video = meta["streams"][0]
        assert (video["codec_type"], video["width"], video["r_frame_rate"], video["time_base"]) == \
            ("video", 64, "10/1", video["time_base"]) and "/" in video["time_base"]
        assert video["duration"] == "4.000000" and video["nb_frames"] == "40" and video["pix_fmt"] == "yuv420p"
        assert meta["format"]["filename"] == "http://h/v.mp4" and meta["format"]["size"] == str(len(small_video))
        assert meta["format"]["tags"]["major_brand"] and meta["keyframe_timestamps"][0] == 0.0
        assert out["json"]["video_summary"]["frame_count"] == 40 and out["json"]["video_summary"]["fps"] == 10.0
