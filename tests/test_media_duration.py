"""Starts and durations count from the video's first frame in every container, also when its clock starts late
(MP4 edit list, MPEG-TS, Matroska/WebM whose header Duration is the end time) or after the audio's, and the frame
counts and span checks of Probe, Frames and Clip follow."""
from __future__ import annotations

import io
import struct
from fractions import Fraction
from typing import Optional

import av
import numpy as np
import pytest

from streamv2d.decode.media import duration_seconds, open_media, rewind, start_seconds, video_stream
from streamv2d.decode.pyav import PyAVReader
from streamv2d.demo.synth import encode_video
from streamv2d.subsamplers import Clip, Frames, MediaError, compile_chain, probe, run_chain

FPS, FRAMES, OFFSET = 10, 20, 1.4   # 2 s of video whose first frame is shown at 1.4 s
SECONDS, FRAME = FRAMES / FPS, 1 / FPS
AAC_PRIMING = 1024 / 44100   # the AAC encoder's first packet leads the audio by 1024 samples
RED_STEP = 12   # frame i is red 12 * i: frames tell their index


def frames(count: int = FRAMES):
    for i in range(count):
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0], img[..., 1] = RED_STEP * i % 256, np.arange(64, dtype=np.uint8)
        yield img


def shifted(data: bytes, fmt: str, offset: float, audio_offset: Optional[float] = None) -> bytes:
    """``data``'s packets remuxed into ``fmt`` with their timestamps moved ``offset`` seconds later (audio's
    ``audio_offset`` seconds when given)."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format=fmt) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None and packet.pts is None:
                continue   # the demuxer's end-of-stream packet
            moved = audio_offset if packet.stream.type == "audio" and audio_offset is not None else offset
            shift = round(Fraction(moved) / packet.time_base)
            packet.pts = None if packet.pts is None else packet.pts + shift
            packet.dts = None if packet.dts is None else packet.dts + shift
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return out.getvalue()


H264_BFRAMES = {"preset": "veryfast", "crf": "30"}   # B-frames: MP4 then needs an edit list for the reorder delay
CASES = {   # name: source container, codec, encoder options, remuxed into, video offset, audio offset (None: no audio)
    "mp4": ("mp4", "libx264", H264_BFRAMES, "mp4", 0.0, None),
    "mp4-edit-list": ("mp4", "libx264", H264_BFRAMES, "mp4", OFFSET, None),
    "mpegts": ("mp4", "libx264", None, "mpegts", OFFSET, OFFSET - 0.5),
    "mkv": ("mp4", "libx264", H264_BFRAMES, "matroska", 0.0, None),
    "mkv-late": ("mp4", "libx264", H264_BFRAMES, "matroska", OFFSET, None),
    "mkv-late-audio-earlier": ("mp4", "libx264", H264_BFRAMES, "matroska", OFFSET, OFFSET - 0.5),
    "mkv-late-audio-along": ("mp4", "libx264", H264_BFRAMES, "matroska", OFFSET, OFFSET + AAC_PRIMING),
    "webm-vp8-late": ("webm", "libvpx", None, "webm", OFFSET, None),
}


@pytest.fixture(scope="module")
def videos():
    made = {}
    for name, (source, codec, options, fmt, offset, audio_offset) in CASES.items():
        data = encode_video(frames(), FPS, container=source, codec=codec, options=options, gop=8,
                            audio_seconds=0.0 if audio_offset is None else SECONDS)
        made[name] = shifted(data, fmt, offset, audio_offset)
    return made


@pytest.fixture(scope="module")
def late_mkv(videos) -> bytes:
    return videos["mkv-late-audio-earlier"]


@pytest.mark.parametrize("name", CASES)
def test_duration_counts_from_the_first_frame(videos, name):
    offset = CASES[name][4]
    with open_media(videos[name]) as container:
        stream = video_stream(container)
        assert start_seconds(stream) == pytest.approx(offset, abs=FRAME)
        assert duration_seconds(container, stream) == pytest.approx(SECONDS, abs=FRAME)


@pytest.mark.parametrize("name", CASES)
def test_frame_count_and_probe_duration(videos, name):
    with PyAVReader(videos[name]) as reader:
        assert abs(reader.info.num_frames - FRAMES) <= 1
        assert len(reader.read([reader.info.num_frames - 1])) == 1   # the last counted frame exists
    meta = probe(videos[name])
    assert meta["duration"] == pytest.approx(SECONDS, abs=FRAME)
    assert meta["format"]["duration"] == pytest.approx(SECONDS, abs=FRAME)
    assert abs(meta["frame_count"] - FRAMES) <= 1


@pytest.mark.parametrize("name, reopened", [("mkv-late-audio-earlier", True), ("mkv-late-audio-along", False)])
def test_matroska_start_copied_from_the_audio_is_checked(videos, name, reopened):
    """B-frame video opened without decoding gets the audio's start from libav: kept when its first packet
    agrees (the quick open stands: no pixel format known), else the media is reopened with decoding."""
    with open_media(videos[name]) as container:
        stream = video_stream(container)
        assert start_seconds(stream) == pytest.approx(OFFSET, abs=FRAME)
        assert (stream.codec_context.format is not None) == reopened


def test_measuring_the_end_leaves_the_demuxer_at_the_start(late_mkv):
    with av.open(io.BytesIO(late_mkv)) as container:
        everything = [(p.stream.type, p.pts) for p in container.demux() if p.size]
    with open_media(late_mkv) as container:
        stream = video_stream(container)
        duration_seconds(container, stream)
        # all of it, the audio before the video's first cue included (a plain seek(0) lands on that cue)
        assert [(p.stream.type, p.pts) for p in container.demux() if p.size] == everything


@pytest.mark.parametrize("name", CASES)
def test_rewind_gives_every_packet_again(videos, name):
    """Audio that starts before the video (MPEG-TS, Matroska) and MPEG-TS's first keyframe are not skipped."""
    with av.open(io.BytesIO(videos[name])) as container:
        everything = [(p.stream.type, p.pts) for p in container.demux() if p.size]
    with open_media(videos[name]) as container:
        list(container.demux())
        rewind(container)
        assert [(p.stream.type, p.pts) for p in container.demux() if p.size] == everything


@pytest.mark.parametrize("fps", [24, 60])
@pytest.mark.parametrize("fmt, codec", [("matroska", "libx264"), ("webm", "libvpx")])
def test_frame_count_from_millisecond_timestamps_is_exact(fmt, codec, fps):
    """49 frames at 24 fps last 2.0417 s; Matroska's millisecond clock says 2.041 s, which must not lose one."""
    count = 2 * fps + 1
    data = encode_video(frames(count), fps, container=fmt, codec=codec)
    with PyAVReader(data) as reader:
        assert reader.info.num_frames == count


@pytest.mark.parametrize("header", [SECONDS, OFFSET + SECONDS])
def test_matroska_header_duration_is_not_trusted(late_mkv, header):
    """mkvmerge writes the segment's length as its Duration, FFmpeg its end time: either, the same answer."""
    field = late_mkv.index(b"\x44\x89\x88")   # Duration element, 8-byte float, in the segment's ms ticks
    data = late_mkv[:field + 3] + struct.pack(">d", header * 1000) + late_mkv[field + 11:]
    with open_media(data) as container:
        assert container.duration == pytest.approx(header * av.time_base)
        assert duration_seconds(container, video_stream(container)) == pytest.approx(SECONDS, abs=FRAME)


def test_live_webm_without_duration_or_cues():
    data = encode_video(frames(), FPS, container="webm", codec="libvpx")
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format="webm", options={"live": "1"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux():
            if packet.pts is not None:
                packet.stream = stream
                dst.mux(packet)
    with open_media(out.getvalue()) as container:
        assert container.duration is None   # no segment Duration: only the packets tell
        assert duration_seconds(container, video_stream(container)) == pytest.approx(SECONDS, abs=FRAME)


def sample_of(data: bytes, **meta) -> dict:
    return {"__key__": "000000", "mkv": data, "json": {"key": "000000", "status": "success", **meta}}


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_frames_span_accepted_to_the_real_end_and_refused_past_it(late_mkv, backend):
    out = Frames(num_frames=4, size=None, backend=backend)(sample_of(late_mkv, span=[1.0, SECONDS]))
    indices = out["json"]["frames"]["indices"]
    assert indices[0] >= FPS and indices[-1] < FRAMES
    shown = out["frames"].numpy()[..., 0].mean(axis=(1, 2)) / RED_STEP   # the video's own first frame is frame 0
    assert np.allclose(shown, indices, atol=0.5)
    with pytest.raises(MediaError, match="beyond"):
        Frames(num_frames=4, size=None, backend=backend)(sample_of(late_mkv, span=[1.0, SECONDS + OFFSET / 2]))


def test_clip_spans_accepted_to_the_real_end_and_refused_past_it(late_mkv):
    with open_media(late_mkv) as container:
        assert Clip().spans_in(sample_of(late_mkv, clips=[[1.0, SECONDS]]), container) == [[1.0, SECONDS]]
        with pytest.raises(MediaError, match="shorter than the requested clip"):
            Clip().spans_in(sample_of(late_mkv, clips=[[1.0, SECONDS + OFFSET / 2]]), container)
        window = Clip(window=0.5).spans_in(sample_of(late_mkv), container)
    assert window[-1][1] == pytest.approx(SECONDS, abs=FRAME)


def test_transcoded_last_clip_holds_the_last_frames(late_mkv):
    [clip] = run_chain(sample_of(late_mkv, clips=[[1.5, SECONDS]]), compile_chain([Clip()]))
    assert clip["json"]["status"] == "success", clip["json"].get("error_message")
    with open_media(clip["mp4"]) as container:
        red = [f.to_ndarray(format="rgb24")[..., 0].mean() for f in container.decode(video=0)]
    first = round(1.5 * FPS)
    assert len(red) == FRAMES - first
    assert red[0] == pytest.approx(RED_STEP * first, abs=RED_STEP / 2)   # frame 15 of the video, not of audio's clock
