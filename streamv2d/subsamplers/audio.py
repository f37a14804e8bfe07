"""Audio: the audio track as its own modality (m4a, mp3, wav, flac), resampled, mono or stereo, in memory."""
from __future__ import annotations

import io
from fractions import Fraction
from typing import Iterable, Iterator, List, Optional, Sequence

import av
import numpy as np

from ..decode.media import MediaError, open_media
from ..sample import Sample
from .base import Subsampler, decoding
from .probe import media_bytes

#: output extension -> (container format, encoder)
AUDIO_FORMATS = {"m4a": ("mp4", "aac"), "mp3": ("mp3", "libmp3lame"), "wav": ("wav", "pcm_s16le"),
                 "flac": ("flac", "flac")}


#: seconds decoded before a span's start and thrown away: codecs overlap frames (AAC by one frame, MP3's bit
#: reservoir by a few, Opus asks for 80 ms), so a frame decoded cold after a seek would be wrong
PREROLL = 0.1


class NoAudioError(MediaError):
    """The media has no audio track."""


def layout_for(channels: Optional[int], source_channels: int) -> str:
    """``mono``/``stereo`` for a requested count; by default keep mono/stereo and fold surround to stereo."""
    count = channels or min(source_channels, 2)
    if count not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {count}")
    return "mono" if count == 1 else "stereo"


#: muxers of the MP4 family: they carry the start trim (edit list) but FFmpeg's reader keeps the last frame whole
MOV_FORMATS = frozenset({"mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"})

#: samples per frame of FFmpeg's AAC encoder (AAC-LC; its context reports it only once opened by the first frame)
AAC_FRAME = 1024

#: seconds of audio an AAC-in-MP4 :class:`AudioEncoder` holds to end it exactly (23 MB at 48 kHz stereo): clips
#: are exact; a longer track streams on past it and decodes < 1 AAC frame long
HOLD_SECONDS = 60.0


class AudioEncoder:
    """An output audio stream fed decoded frames; PyAV resamples them to the encoder's rate and layout.

    AAC in MP4 decodes to exactly the samples fed. FFmpeg's MP4 reader honours the edit list's start (priming →
    skip_samples) but not its end: ``mov_fix_index`` keeps the frame straddling the edit's end whole and exports no
    discard padding, so the zeros padding the encoder's last 1024-sample frame would be decoded too. So the frames
    are resampled here and held until :meth:`flush`, then led by the silence that makes them whole frames, dropped
    with the priming by the edit list's start; the movie timescale is the sample rate, so the edit's duration (the
    stream's duration) is exact too. Memory: each encode holds up to ``hold`` seconds, as float at the output
    rate; longer audio is streamed on from there without the lead, and decodes up to one frame (< 1024 samples)
    long."""

    def __init__(self, container, codec: str, rate: int, layout: str, bitrate: Optional[int] = None,
                 hold: float = HOLD_SECONDS) -> None:
        self.container = container
        self.stream = container.add_stream(codec, rate=rate, layout=layout)
        if bitrate:
            self.stream.bit_rate = bitrate
        self.position = 0  # samples sent, at the input rate
        self.resampler: Optional[av.AudioResampler] = None  # set when the output is held and counted
        self.held: List[object] = []  # resampled frames not encoded yet
        self.room = 0  # samples that may still be held
        self.next_pts: Optional[int] = None  # the next output pts once encoding has begun
        if codec == "aac" and container.format.name in MOV_FORMATS:
            self.resampler = av.AudioResampler(format=self.stream.format, layout=layout, rate=rate)
            self.room = int(hold * rate)
            container.container_options.setdefault("movie_timescale", str(rate))
            # with the audio held, the muxer would flush video alone after its 10-s interleave limit: wait instead,
            # so the file stays interleaved (the video packets wait in memory, where the output is anyway)
            container.container_options.setdefault("max_interleave_delta", "0")

    def encode(self, frame) -> None:
        # renumbered from 0 so clipped audio starts at 0; a real pts (not None) lets the AAC encoder mark its
        # priming samples (negative pts → an MP4 edit list) so decoders drop them
        frame.pts, frame.time_base = self.position, Fraction(1, frame.sample_rate)
        self.position += frame.samples
        if self.resampler is None:
            self.container.mux(self.stream.encode(frame))
            return
        for part in self.resampler.resample(frame):
            self.held.append(part)
            self.room -= part.samples
        if self.room < 0:
            self._release(0)

    def flush(self) -> None:
        if self.resampler is not None:
            self.held.extend(self.resampler.resample(None))
            whole = self.next_pts is None  # all the audio is held: lead it to whole frames
            self._release(-sum(f.samples for f in self.held) % AAC_FRAME if whole else 0)
        self.container.mux(self.stream.encode(None))

    def _release(self, lead: int) -> None:
        """Encode the held frames; before the first, ``lead`` samples of silence at negative pts."""
        if self.next_pts is None:
            self.next_pts = -lead
            if lead:
                self.held.insert(0, silence_like(self.held[0], lead))
        for frame in self.held:
            frame.pts, frame.time_base = self.next_pts, Fraction(1, frame.sample_rate)
            self.next_pts += frame.samples
            self.container.mux(self.stream.encode(frame))
        self.held = []


def _like(frame, samples: np.ndarray):
    """A frame of ``samples`` (``to_ndarray``'s layout) with ``frame``'s format, layout and rate."""
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=frame.format, layout=frame.layout)
    out.sample_rate, out.time_base = frame.sample_rate, frame.time_base
    return out


def _width(frame) -> int:
    return 1 if frame.format.is_planar else frame.layout.nb_channels  # packed: channels interleaved in row 0


def slice_frame(frame, lo: int, hi: int):
    """Samples [lo, hi) of a decoded audio frame as a new frame of the same format, layout, rate and clock."""
    out = _like(frame, frame.to_ndarray()[:, lo * _width(frame):hi * _width(frame)])
    if frame.pts is not None and frame.time_base is not None:
        out.pts = frame.pts + int(round(lo / (frame.sample_rate * frame.time_base)))
    return out


def silence_like(frame, count: int):
    """``count`` samples of silence in ``frame``'s format, layout and rate."""
    array = frame.to_ndarray()
    return _like(frame, np.zeros((array.shape[0], count * _width(frame)), array.dtype))


class SpanTrim:
    """Cuts decoded frames to [start, end) seconds to the sample (at the source rate), slicing the two frames
    that straddle the ends: the output starts at sample round(start·rate) and stops before round(end·rate).

    A frame's position is its pts, or the previous frame's end when the pts agrees with it to within one tick of
    the time base: containers with coarse clocks (Matroska: 1 ms) then still cut an exact length, placed to
    within half a tick."""

    def __init__(self, start: float = 0.0, end: Optional[float] = None) -> None:
        self.start, self.end = start, end
        self._next: Optional[int] = None  # the previous frame's end, in samples
        self._started = False  # whether a part has been returned (the leading silence is owed once)
        self._tick = 0.0  # samples per pts unit, read once from the first frame (Fractions per frame are slow)

    def _first_sample(self, frame) -> int:
        if frame.pts is None:
            return self._next or 0
        if not self._tick:
            self._tick = float((frame.time_base or Fraction(1, frame.sample_rate)) * frame.sample_rate)
        stamped = frame.pts * self._tick
        if self._next is not None and abs(stamped - self._next) <= max(1.0, self._tick):
            return self._next
        return int(round(stamped))

    def __call__(self, frame) -> "tuple[List[object], bool]":
        """(the parts of ``frame`` inside the span, whether the span is complete). Where the source's audio
        begins after the span's start, the first parts are led by that much silence, so audio stays in step
        with the video (an audio track starting at 0.5 s still lines up with frame 0.5 s)."""
        rate, count = frame.sample_rate, frame.samples
        first = self._first_sample(frame)
        self._next = first + count
        begin = round(self.start * rate)
        lo = max(0, begin - first)
        stop = None if self.end is None else round(self.end * rate) - first  # the span's end, frame-relative
        hi = count if stop is None else min(count, stop)
        done = stop is not None and count >= stop
        if hi <= lo:
            return [], done
        parts = [frame if (lo, hi) == (0, count) else slice_frame(frame, lo, hi)]
        if not self._started:
            self._started = True
            gap = first + lo - begin
            if gap > 0:
                parts.insert(0, silence_like(frame, gap))
        return parts, done

    def frames(self, frames: Iterable) -> Iterator:
        """The trimmed frames of a decoded sequence, stopping once the span is complete."""
        for frame in frames:
            parts, done = self(frame)
            yield from parts
            if done:
                return


def audio_frames(container, stream, start: float = 0.0, end: Optional[float] = None) -> Iterator:
    """Decoded frames of ``stream`` cut to exactly [start, end), after one seek ``PREROLL`` s before start."""
    if start > 0:
        container.seek(max(0, int((start - PREROLL) / stream.time_base)), stream=stream, backward=True)
    return SpanTrim(start, end).frames(container.decode(stream))


def encode_audio(data: bytes, fmt: str = "m4a", rate: Optional[int] = None, channels: Optional[int] = None,
                 span: Optional[Sequence[float]] = None, bitrate: Optional[int] = None) -> "tuple[bytes, dict]":
    """Re-encode the first audio track of ``data`` (optionally only ``span`` seconds); bytes and metadata."""
    container_format, codec = AUDIO_FORMATS[fmt]
    with open_media(data) as container:
        if not container.streams.audio:
            raise NoAudioError("no audio stream")
        source = container.streams.audio[0]
        rate = rate or source.rate
        layout = layout_for(channels, source.codec_context.channels)
        out = io.BytesIO()
        with av.open(out, mode="w", format=container_format) as oc:
            encoder = AudioEncoder(oc, codec, rate, layout, bitrate)
            start, end = (span[0], span[1]) if span else (0.0, None)
            for frame in audio_frames(container, source, start, end):
                encoder.encode(frame)
            encoder.flush()
    meta = {"sample_rate": rate, "channels": 1 if layout == "mono" else 2, "format": fmt, "codec": codec,
            "source_sample_rate": source.rate}
    return out.getvalue(), meta


class Audio(Subsampler):
    """Adds the audio track as ``sample[format]`` and ``json["audio_metadata"]``; honours ``json["span"]``.

    No audio track: a failure when ``required`` (default), else the sample passes unchanged."""

    metadata_fields = {"audio_metadata": "json"}

    def __init__(self, rate: Optional[int] = None, channels: Optional[int] = None, format: str = "m4a",
                 bitrate: Optional[int] = None, required: bool = True, keep_video: bool = True) -> None:
        if format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {sorted(AUDIO_FORMATS)}, got {format!r}")
        layout_for(channels, 2)  # validates channels early
        self.rate, self.channels, self.format, self.bitrate = rate, channels, format, bitrate
        self.required, self.keep_video = required, keep_video

    @decoding
    def __call__(self, sample: Sample) -> Sample:
        ext, data = media_bytes(sample)
        meta = sample.setdefault("json", {})
        try:
            audio, info = encode_audio(data, self.format, self.rate, self.channels, meta.get("span"), self.bitrate)
        except NoAudioError:
            if self.required:
                raise
            return sample
        sample[self.format] = audio
        meta["audio_metadata"] = info
        if not self.keep_video:
            del sample[ext]
        return sample
