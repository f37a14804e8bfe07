"""Video ops (Clip, FPS, Resolution, Encode) and the fused pass that runs a group of them.

One :class:`Transcode` decodes the input once from memory, keeps only the frames the target rate needs
(skipping non-reference packets that are not wanted), runs a libav filter graph for size/crop/pad and encodes
to memory — no subprocess, no temp file. ``compile_chain`` groups consecutive ops into one Transcode.
"""
from __future__ import annotations

import copy
import functools
import io
import math
import threading
from fractions import Fraction
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import av
from av.video.frame import PictureType

from .. import profile
from ..decode.convert import frame_to_array
from ..decode.media import (MediaError, decode_packet, duration_seconds, keyframe_timestamps, open_media,
                            seek_keyframe, skips_per_packet, start_seconds, stream_fps, video_stream)
from ..sample import Sample
from ..scheduling import encode_frame
from .audio import PREROLL, AudioEncoder, SpanTrim, layout_for
from .base import Subsampler, decoding
from .youtube import clip_subtitles
from .probe import (Probe, ffprobe_json, media_bytes, probe_container, probe_filename, publish_probe,
                    set_pixel_format)

Span = List[float]
#: audio encoder and rate for containers that cannot take AAC
CONTAINER_AUDIO = {"webm": ("libopus", 48000), "ogg": ("libopus", 48000)}


class VideoOp(Subsampler):
    """A video operation. ``compile_chain`` fuses consecutive ones into one pass; alone it is a pass of one."""

    def __call__(self, sample: Sample):
        return Transcode([self])(sample)


class FPS(VideoOp):
    """Resample to ``rate`` frames per second: output frame k shows the source frame on screen at k/rate."""

    def __init__(self, rate: float, skip_nonref: bool = True) -> None:
        if rate <= 0:
            raise ValueError(f"fps rate must be positive, got {rate}")
        self.rate, self.skip_nonref = rate, skip_nonref


class Resolution(VideoOp):
    """Resize into a ``size`` box (int: square; or width/height), modes ``scale``, ``crop``, ``pad`` combined.

    scale alone sets the height (video2dataset); scale+crop covers the box then center-crops; scale+pad fits
    inside then pads; crop/pad alone center-crop or pad to the box. Aspect is always kept; output is the box
    whenever crop and pad are both given or scale is paired with one of them."""

    MODES = ("scale", "crop", "pad")

    def __init__(self, size: Union[int, Sequence[int], None] = None, mode: Union[str, Sequence[str]] = "scale",
                 width: Optional[int] = None, height: Optional[int] = None) -> None:
        modes = [m.strip() for m in (mode.split(",") if isinstance(mode, str) else mode) if m.strip()]
        unknown = [m for m in modes if m not in self.MODES]
        if unknown or not modes:
            raise ValueError(f"resolution mode must combine {self.MODES}, got {mode!r}")
        if size is not None and (width or height):
            raise ValueError("set either size or width/height")
        if isinstance(size, int):
            width = height = size
        elif size is not None:
            width, height = size
        if not (width or height):
            raise ValueError("resolution needs a size")
        self.width, self.height = width, height   # one may be None: that side follows the picture
        self.mode = ",".join(m for m in self.MODES if m in modes)

    def geometry(self, w: int, h: int) -> Tuple[List[Tuple[str, str]], Tuple[int, int]]:
        """libav filters (name, args) turning a w×h picture into this box, and the output size."""
        filters: List[Tuple[str, str]] = []
        if "scale" in self.mode:
            factor = self._scale_factor(w, h)
            bw, bh = self._box(_even(w * factor), _even(h * factor))
            sw, sh = max(2, _even(w * factor)), max(2, _even(h * factor))
            if "crop" in self.mode and (sw > bw or sh > bh):
                # the same picture cropped first: the scaler then reads and writes only what is kept
                cw, ch = min(sw, bw), min(sh, bh)
                filters.append(("crop", f"{min(w, _even(cw / factor))}:{min(h, _even(ch / factor))}"))
                sw, sh = cw, ch
            w, h = sw, sh
            filters.append(("scale", f"{w}:{h}"))
        else:
            bw, bh = self._box(w, h)
        if "crop" in self.mode and (w > bw or h > bh):
            w, h = min(w, bw), min(h, bh)
            filters.append(("crop", f"{w}:{h}"))
        if "pad" in self.mode and (w < bw or h < bh):
            w, h = max(w, bw), max(h, bh)
            filters.append(("pad", f"{w}:{h}:(ow-iw)/2:(oh-ih)/2"))
        return filters, (w, h)

    def _scale_factor(self, w: int, h: int) -> float:
        """How much ``scale`` resizes a w×h picture: to cover the box (with crop), fit inside it (with pad), else
        to the height — or, with only a width given, to the width (video2dataset's ResolutionSubsampler)."""
        if self.width and self.height and "crop" in self.mode:
            return max(self.width / w, self.height / h)
        if self.width and self.height and "pad" in self.mode:
            return min(self.width / w, self.height / h)
        return self.height / h if self.height else self.width / w

    def _box(self, w: int, h: int) -> Tuple[int, int]:
        """The box crop and pad aim at for a w×h picture: a side not given is the picture's own."""
        return self.width or w, self.height or h


class Encode(VideoOp):
    """Output settings of a fused pass: encoder, CRF or bitrate, preset, container, audio handling.

    ``audio``: ``copy`` (stream copy when the container takes the codec, else re-encode), ``encode`` (AAC, or
    Opus in WebM) or ``none``.
    ``threads`` defaults to 1: samples already run in parallel (workers), and per-sample encoder threads only
    add start-up and hand-off cost on short clips; 0 lets the encoder choose. ``fast_decode`` (default on,
    libx264) encodes for cheap reading: ``tune=fastdecode`` and no B-pyramid. ``keyframe_interval``: seconds
    at most between keyframes, placed by the encoder (never copied from the source, whose GOPs would double the
    bytes of a 5 fps output; x264 still adds keyframes at scene cuts): a reader seeking into a clip decodes at
    most this much; None leaves it to the encoder (x264: 250 frames, 50 s at 5 fps). ``reproducible`` (default
    on): the same input gives the same bytes in every run on one machine — libx264 runs without its AVX-512 code,
    whose MB-tree pass reads memory it never wrote at widths not a multiple of 128 px (see
    :func:`x264_asm_without_avx512`); off, x264 uses every CPU feature it finds. ``threads=0`` is reproducible
    too, but x264 sizes its threads by the core count: another count gives other bytes."""

    def __init__(self, codec: str = "libx264", crf: Optional[int] = 23, bitrate: Optional[int] = None,
                 preset: Optional[str] = "veryfast", container: str = "mp4", pix_fmt: str = "yuv420p",
                 audio: str = "copy", threads: int = 1, fast_decode: bool = True,
                 keyframe_interval: Optional[float] = 10.0, options: Optional[Dict[str, str]] = None,
                 reproducible: bool = True) -> None:
        if audio not in ("copy", "encode", "none"):
            raise ValueError(f"audio must be copy, encode or none, got {audio!r}")
        self.codec, self.crf, self.bitrate, self.preset = codec, crf, bitrate, preset
        self.container, self.pix_fmt, self.audio, self.threads = container, pix_fmt, audio, threads
        if keyframe_interval is not None and keyframe_interval <= 0:
            raise ValueError(f"keyframe_interval must be positive seconds or None, got {keyframe_interval!r}")
        self.fast_decode, self.keyframe_interval = fast_decode, keyframe_interval
        self.options, self.reproducible = dict(options or {}), reproducible

    def codec_options(self) -> Dict[str, str]:
        """The encoder's AVOptions: these settings, then ``options`` (an ``x264-params`` of theirs is appended
        to the CPU choice ``reproducible`` makes, so their own ``asm`` wins)."""
        opts = {}
        if self.crf is not None and not self.bitrate:
            opts["crf"] = str(self.crf)
        if self.preset and self.codec in ("libx264", "libx265"):
            opts["preset"] = self.preset
        if self.fast_decode and self.codec == "libx264":
            # shards are read far more often than written: x264's fastdecode tune (no CABAC, no deblocking)
            # halves decoding, and without a B-pyramid every B-frame is non-reference, so readers skip the
            # ones they do not want; ~6 % more bytes (benchmarks/README.md)
            opts.update({"tune": "fastdecode", "b-pyramid": "none"})
        opts.update(self.options)
        asm = x264_asm_without_avx512() if self.reproducible and self.codec.startswith("libx264") else None
        if asm:
            opts["x264-params"] = ":".join(filter(None, [f"asm={asm}", self.options.get("x264-params")]))
        return opts


_X264_PROBE = threading.Lock()


@functools.lru_cache(maxsize=None)
def x264_cpu_capabilities() -> Tuple[str, ...]:
    """The CPU features libx264 uses here, as it names them when an encoder opens (the names its ``asm`` option
    takes); found once per process by opening a tiny encoder with libav's logging briefly at INFO."""
    with _X264_PROBE:
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.INFO)
        try:
            with av.logging.Capture() as logs:
                probe = av.CodecContext.create("libx264", "w")
                probe.width, probe.height, probe.pix_fmt, probe.time_base = 16, 16, "yuv420p", Fraction(1, 25)
                probe.open()
        finally:
            av.logging.set_level(previous)
    lines = [message for _, _, message in logs if message.startswith("using cpu capabilities:")]
    return tuple(lines[0].split(":", 1)[1].split()) if lines else ()


def x264_asm_without_avx512() -> Optional[str]:
    """x264's ``asm`` value keeping every detected CPU feature but AVX-512, or None when it has no AVX-512.

    x264's AVX-512 ``mbtree_propagate_list`` handles a row of macroblocks 8 at a time where its C and AVX2
    versions stop at the row's end: on the last row of a frame whose width is not a multiple of 8 macroblocks it
    reads motion vectors and costs from unwritten heap memory, so the MB-tree rate control (and the bytes from
    the first frame on) changed with what the process had freed before. Without AVX-512 the bytes no longer depend
    on the heap (tests/test_reproducible.py) and encoding is no slower (benchmarks/README.md)."""
    names = x264_cpu_capabilities()
    return ",".join(name for name in names if name != "AVX512") if "AVX512" in names else None


class Clip(VideoOp):
    """Split a video into clips ``{key}_{i:05d}`` (video2dataset's keys): spans from fixed ``window``-second windows, else ``json["clips"]``
    (the table's clip column, or CutDetection with ``cuts_are_clips``), else the scenes of a preceding CutDetection;
    filtered and split by min/max length.

    precision: ``exact`` (re-encode, frame-exact), ``keyframe_adjusted`` (spans shrunk to keyframes, then
    exact), ``keyframe`` (both ends moved to the next keyframe and stream-copied, no re-encode, when the Clip is
    alone in its group; video2dataset's default ``low`` names the same cut). With ``window``, windows are the
    maximum length. ``no_clips``: what a sample without any clip source gets — ``fail`` (default) or ``pass``
    (the video goes on whole, unclipped, as video2dataset does)."""

    PRECISIONS = ("exact", "keyframe_adjusted", "keyframe")
    #: video2dataset's precision names for ours
    PRECISION_ALIASES = {"low": "keyframe"}
    metadata_fields = {"clips": "json", "original_key": "string", "clip_index": "int64", "clip_subtitles": "json"}

    def __init__(self, window: Optional[float] = None, min_length: float = 0.0, max_length: Optional[float] = None,
                 max_length_strategy: str = "all", precision: str = "exact", no_clips: str = "fail") -> None:
        if max_length_strategy not in ("all", "first"):
            raise ValueError(f"max_length_strategy must be all or first, got {max_length_strategy!r}")
        precision = self.PRECISION_ALIASES.get(precision, precision)
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {self.PRECISIONS + tuple(self.PRECISION_ALIASES)}, "
                             f"got {precision!r}")
        if no_clips not in ("fail", "pass"):
            raise ValueError(f"no_clips must be fail or pass, got {no_clips!r}")
        self.window, self.min_length, self.max_length = window, min_length, max_length
        self.max_length_strategy, self.precision, self.no_clips = max_length_strategy, precision, no_clips

    def has_source(self, sample: Sample) -> bool:
        """Whether ``sample`` has spans to cut (a window, ``json["clips"]`` or CutDetection's cuts); without
        one, ``no_clips="pass"`` lets the video through whole."""
        meta = sample.get("json", {})
        return bool(self.window or meta.get("clips") or "cuts" in meta) or self.no_clips == "fail"

    def spans(self, sample: Sample, duration: float, keyframes: Callable[[], List[float]],
              frame: float) -> List[Span]:
        """The clip spans of ``sample`` in seconds; raises when a requested span lies beyond the video."""
        if self.window:
            raw = [[0.0, duration]]
            limit = self.window
        else:
            meta = sample.get("json", {})
            clips = meta.get("clips") or (scene_spans(meta["cuts"], duration) if "cuts" in meta else None)
            if not clips:
                raise MediaError("no clip spans: set Clip(window=...), give the table a clip column (clip_col) or "
                                 "put CutDetection before Clip")
            raw = [[_seconds(s), _seconds(e)] for s, e in _span_list(clips)]
            limit = self.max_length
            for s, e in raw:
                if e > duration + frame or s >= duration:
                    raise MediaError(f"video lasts {duration:.2f} s, shorter than the requested clip [{s}, {e}]")
        if self.precision == "keyframe_adjusted":
            raw = _shrink_to_keyframes(raw, keyframes())
        spans = []
        for s, e in raw:
            pieces = _split(s, min(e, duration), self.min_length, limit)
            spans += pieces[:1] if self.max_length_strategy == "first" else pieces
        if self.precision == "keyframe":
            spans = _snap_to_keyframes(spans, keyframes(), duration)
        return spans

    def spans_in(self, sample: Sample, container) -> List[Span]:
        """:meth:`spans` for an open container; none left after filtering is a failure."""
        video = video_stream(container)
        spans = self.spans(sample, duration_seconds(container, video), lambda: keyframe_timestamps(container, video),
                           float(1 / stream_fps(video)))
        if not spans:
            hint = (" after shrinking spans to keyframes (precision=keyframe_adjusted; this video has few keyframes)"
                    if self.precision == "keyframe_adjusted" else "")
            raise MediaError(f"no clip longer than min_length={self.min_length} s{hint}")
        return spans


def scene_spans(cuts: Dict[str, Any], duration: float) -> List[Span]:
    """CutDetection's scenes (``json["cuts"]``, source frame ranges) as spans in seconds within ``duration``."""
    fps = float(cuts["original_fps"])
    return [[a / fps, min(b / fps, duration)] for a, b in cuts["cuts_original_fps"]]


def _even(x: float) -> int:
    return int(round(x / 2)) * 2


def _seconds(t: Union[str, float]) -> float:
    """Seconds from a number or an ``HH:MM:SS.fff`` string (video2dataset's clip format)."""
    if isinstance(t, str):
        hours, minutes, seconds = t.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return float(t)


def _time_text(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.fff`` (milliseconds rounded)."""
    millis = int(round(seconds * 1000))
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"


def _span_list(clips: Sequence) -> List[Sequence]:
    return [clips] if not isinstance(clips[0], (list, tuple)) else list(clips)


def _split(s: float, e: float, min_length: float, max_length: Optional[float]) -> List[Span]:
    """[s, e] cut into max_length pieces; a remainder (or whole span) shorter than min_length is dropped."""
    step = max_length or (e - s) or 1.0
    count = max(1, math.ceil((e - s) / step - 1e-6))
    pieces = [[s + i * step, min(s + (i + 1) * step, e)] for i in range(count)]
    return [p for p in pieces if p[1] - p[0] >= min_length - 1e-9 and p[1] > p[0]]


def _shrink_to_keyframes(spans: List[Span], keyframes: List[float]) -> List[Span]:
    """Each span narrowed to the first and last keyframe inside it (video2dataset's keyframe_adjusted)."""
    out = []
    for s, e in spans:
        inside = [k for k in keyframes if s <= k <= e]
        if len(inside) >= 2 and inside[0] != inside[-1]:
            out.append([inside[0], inside[-1]])
    return out


def _snap_to_keyframes(spans: List[Span], keyframes: List[float], duration: float) -> List[Span]:
    """Both ends moved to the first keyframe at or after them (as a stream-copy segmenter cuts); empty or
    repeated spans dropped."""
    def snap(t: float) -> float:
        return next((k for k in keyframes if k >= t - 1e-6), duration)
    out: List[Span] = []
    for s, e in spans:
        span = [snap(s), snap(e)]
        if span[1] > span[0] and span not in out:
            out.append(span)
    return out


class FrameSelector:
    """Which decoded frames a ``rate`` fps output over [start, end) needs, known from a packet's pts alone —
    what lets the decoder skip unwanted non-reference packets without changing the result."""

    def __init__(self, start: float, end: Optional[float], rate: Fraction, time_base: Fraction,
                 default_duration: int) -> None:
        start_f = Fraction(start).limit_denominator(1_000_000)
        # slot(t) = ceil((t - start) * rate) with t = pts * time_base, kept in integers: (pts * a - b) / d
        scale, offset = time_base * rate, start_f * rate
        self._a = scale.numerator * offset.denominator
        self._b = offset.numerator * scale.denominator
        self._d = scale.denominator * offset.denominator
        self._last = None if end is None else math.ceil((Fraction(end).limit_denominator(1_000_000) - start_f) * rate)
        self._end_pts = None if end is None else Fraction(end).limit_denominator(1_000_000) / time_base
        self.default_duration = default_duration

    @classmethod
    def for_stream(cls, video, start: float, end: Optional[float], rate: Fraction) -> "FrameSelector":
        default_duration = int(round(1 / (stream_fps(video) * video.time_base)))
        return cls(start, end, rate, video.time_base, default_duration)

    def _slot(self, pts: int) -> int:
        return -((self._b - pts * self._a) // self._d)  # ceil division

    def slots(self, pts: Optional[int], duration: Optional[int]) -> range:
        """Output frame indices shown by a frame displayed from ``pts`` for ``duration`` (time-base units)."""
        if pts is None:
            return range(0)
        first = max(0, self._slot(pts))
        last = self._slot(pts + (duration or self.default_duration))  # exclusive
        if self._last is not None:
            last = min(last, self._last)
        return range(first, max(first, last))

    def past_end(self, pts: int) -> bool:
        return self._end_pts is not None and pts >= self._end_pts


class Transcode(Subsampler):
    """A fused group of video ops: one in-memory decode → filter graph → encode per span (or the whole video)."""

    def __init__(self, ops: Sequence[VideoOp], probe: Optional[Probe] = None) -> None:
        self.ops = list(ops)
        self.probe = probe   # a Probe fused in front (compile_chain): one open serves both
        self.clip = next((op for op in ops if isinstance(op, Clip)), None)
        self.fps = next((op for op in reversed(ops) if isinstance(op, FPS)), None)
        self.resolutions = [op for op in ops if isinstance(op, Resolution)]
        encodes = [op for op in ops if isinstance(op, Encode)]
        self.encode = encodes[-1] if encodes else Encode()
        self.remux = self.clip is not None and self.clip.precision == "keyframe" and len(ops) == 1

    def config(self) -> Dict[str, Any]:
        return {"ops": [(type(op).__name__, op.config()) for op in self.ops],
                "probe": self.probe.config() if self.probe is not None else None}

    def __call__(self, sample: Sample) -> Union[Sample, List[Sample]]:
        ext, data = media_bytes(sample)
        if self.remux and not self.clip.has_source(sample):
            return sample   # a stream-copy Clip with nothing to cut: the bytes as they are, without a decode slot
        return self._transcode(sample, ext, data)

    @decoding
    def _transcode(self, sample: Sample, ext: str, data: bytes) -> Union[Sample, List[Sample]]:
        with open_media(data) as container:
            video_stream(container)
            meta = None
            if self.probe is not None:
                meta = probe_container(container, len(data), self.probe.keyframes)
            if self.clip is None or not self.clip.has_source(sample):
                encoded = self._encode(container, None, meta)
                self._publish_probe(sample, meta, container, len(data), ext)
                sample.pop(ext)
                sample[self.encode.container] = encoded
                return sample
            spans = self.clip.spans_in(sample, container)
            if self.remux:
                outputs, out_ext = [_remux_span(container, span) for span in spans], ext
            else:
                outputs, out_ext = [self._encode(container, span, meta) for span in spans], self.encode.container
            self._publish_probe(sample, meta, container, len(data), ext)
        return clip_samples(sample, ext, spans, [{out_ext: o} for o in outputs])

    @staticmethod
    def _publish_probe(sample: Sample, meta: Optional[Dict[str, Any]], container, size: int, ext: str) -> None:
        """A fused Probe's output, read once the pass has decoded (the decoder then knows the pixel format and
        aspect ratio a separate Probe reads by decoding a frame)."""
        if meta is not None:
            publish_probe(sample, meta, ffprobe_json(container, size, probe_filename(sample, ext)))

    def _encode(self, container, span: Optional[Span], meta: Optional[Dict[str, Any]] = None) -> bytes:
        """One output video; a fused Probe's ``meta`` gets the pixel format the first decoded frame tells."""
        video = container.streams.video[0]
        source_rate = stream_fps(video)
        rate = Fraction(self.fps.rate).limit_denominator(1001) if self.fps else source_rate
        origin = start_seconds(video)   # spans count from the first frame; packet times from the stream's clock
        start, end = (origin + span[0], origin + span[1]) if span else (origin, None)
        selector = FrameSelector.for_stream(video, start, end, rate)
        audio = container.streams.audio[0] if container.streams.audio and self.encode.audio != "none" else None
        out = io.BytesIO()
        with av.open(out, mode="w", format=self.encode.container) as oc:
            sink = VideoSink(oc, video, rate, self.resolutions, self.encode)
            audio_out = _AudioOut(oc, audio, self.encode, start, end) if audio is not None else None
            skip = self.fps is not None and self.fps.skip_nonref and rate < source_rate
            packets = _seek(container, video, start, *([audio_out.source] if audio_out is not None else []))
            for frame, slots in decode_selected(profile.timed("demux", packets), video, selector, skip, audio_out):
                sink.write(frame, slots)
            if sink.count == 0:
                raise MediaError(f"no frames decoded in span {span}")
            if meta is not None and meta["pix_fmt"] is None:
                set_pixel_format(meta, sink.source_format)
            sink.flush()
            if audio_out is not None:
                audio_out.flush()
        return out.getvalue()


def decode_selected(packets: Iterable, video, selector: FrameSelector, skip: bool,
                    audio_out: Optional["_AudioOut"] = None) -> Iterator[Tuple[Any, range]]:
    """Decode ``packets`` (the video's, and the audio's for ``audio_out``), yielding (frame, output slots) for
    frames the selector wants.

    With ``skip``, non-reference packets whose pts no slot wants are not decoded (:func:`decode_packet`). Audio
    packets go to ``audio_out`` on the way."""
    cc = video.codec_context
    skip = skip and skips_per_packet(cc)
    durations: Dict[int, Optional[int]] = {}
    video_done = False
    try:
        for packet in packets:
            if packet.stream is not video:
                if audio_out.add(packet) and video_done:
                    return
                continue
            if video_done:
                continue
            if packet.pts is not None:
                durations[packet.pts] = packet.duration
            wanted = not skip or packet.pts is None or len(selector.slots(packet.pts, packet.duration)) > 0
            for frame in decode_packet(cc, packet, wanted):
                if frame.pts is None:
                    continue
                if selector.past_end(frame.pts):
                    video_done = True
                    break
                slots = selector.slots(frame.pts, durations.pop(frame.pts, None))
                if slots:
                    yield frame, slots
            if video_done and audio_out is None:
                return
    finally:
        cc.skip_frame = "DEFAULT"


def analysis_rate(video, fps: Optional[float]) -> Fraction:
    """The rate an analysis pass samples at: ``fps`` capped by the source's, or the source's."""
    source = stream_fps(video)
    return min(Fraction(fps).limit_denominator(1001), source) if fps else source


def reduced_frames(container, video, rate: Fraction, width: int, fmt: str = "rgb24") -> Iterator[Any]:
    """Whole-video frames at ``rate``, downscaled to ``width`` (aspect kept), as numpy arrays; for analysis."""
    cc = video.codec_context
    height = max(2, _even(cc.height * width / cc.width))
    selector = FrameSelector.for_stream(video, start_seconds(video), None, rate)
    for frame, _ in decode_selected(container.demux(video), video, selector, skip=rate < stream_fps(video)):
        yield frame_to_array(frame, fmt, width, height)


class VideoSink:
    """The filter graph (size, crop, pad, pixel format) and the encoder of one output video stream."""

    def __init__(self, oc, source, rate: Fraction, resolutions: Sequence[Resolution], encode: Encode) -> None:
        cc = source.codec_context
        w, h = cc.width, cc.height
        filters: List[Tuple[str, str]] = []
        for resolution in resolutions:
            more, (w, h) = resolution.geometry(w, h)
            filters += more
        w, h = w - w % 2, h - h % 2  # 4:2:0 encoders need even sizes
        filters.append(("scale", f"{w}:{h}"))
        filters.append(("format", encode.pix_fmt))
        self.filters, self.source_time_base = filters, source.time_base
        self.graph: Optional[av.filter.Graph] = None
        self.stream = oc.add_stream(encode.codec, rate=rate, options=encode.codec_options())
        self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, encode.pix_fmt
        if encode.bitrate:
            self.stream.bit_rate = encode.bitrate
        self.stream.codec_context.thread_count = encode.threads
        if encode.keyframe_interval:
            self.stream.codec_context.gop_size = max(1, round(rate * Fraction(encode.keyframe_interval)))
        self.time_base = Fraction(1) / rate
        self.oc, self.count = oc, 0

    def _configure(self, frame) -> av.filter.Graph:
        """The graph, built for the first frame's pixel format (opening skipped the decoding that tells it)."""
        self.source_format = frame.format.name
        graph = av.filter.Graph()
        # on one thread, as the decoder and encoder: libavfilter's default (a slice thread per core) scaled the
        # same bytes with 30 % more CPU, on cores the other rows already keep busy
        graph.threads = 1
        nodes = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=self.source_time_base)]
        nodes += [graph.add(name, args) for name, args in self.filters]
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes)
        graph.configure()
        return graph

    def write(self, frame, slots: range) -> None:
        with profile.stage("convert"):
            if self.graph is None:
                self.graph = self._configure(frame)
            self.graph.push(frame)
            out = self.graph.pull()
        for k in slots:
            if k < self.count:  # never go back in time (VFR input)
                continue
            out.pts, out.time_base = k, self.time_base
            out.pict_type = PictureType.NONE  # the encoder places keyframes, not the source's GOP
            with profile.stage("encode"):
                self.oc.mux(encode_frame(self.stream, out))
            self.count = k + 1

    def flush(self) -> None:
        with profile.stage("encode"):
            self.oc.mux(encode_frame(self.stream, None))


class _AudioOut:
    """The audio of a span: packets stream-copied with shifted timestamps (packet-exact: the first packet starting
    at or after the span's start to the last starting before its end), or decoded, cut to the span to the sample
    (:class:`SpanTrim`, after up to ``PREROLL`` s of warm-up decoding) and re-encoded (AAC; Opus in WebM)."""

    def __init__(self, oc, source, encode: Encode, start: float, end: Optional[float]) -> None:
        self.oc, self.source, self.end = oc, source, end
        self.copy = encode.audio == "copy" and source.codec_context.name in oc.supported_codecs
        self.offset = int(round(start / source.time_base))
        self.start = start
        if self.copy:
            self.stream = oc.add_stream_from_template(source)
        else:
            cc = source.codec_context
            codec, rate = CONTAINER_AUDIO.get(encode.container, ("aac", cc.sample_rate))
            self.encoder = AudioEncoder(oc, codec, rate, layout_for(None, cc.channels))
            self.trim = SpanTrim(start, end)

    def add(self, packet) -> bool:
        """Route one packet; True once the span's audio is complete."""
        if packet.pts is None:
            return packet.size == 0
        t = float(packet.pts * self.source.time_base)
        if self.end is not None and t >= self.end:
            return True
        if self.copy:
            if t >= self.start:
                packet.pts -= self.offset
                packet.dts = packet.pts
                packet.stream = self.stream
                self.oc.mux(packet)
            return False
        if t + float((packet.duration or 0) * self.source.time_base) < self.start - PREROLL:
            return False
        for frame in self.source.decode(packet):
            for part in self.trim(frame)[0]:
                self.encoder.encode(part)
        return False

    def flush(self) -> None:
        if not self.copy:
            self.encoder.flush()


def _seek(container, stream, start: float, *others) -> Iterator:
    return seek_keyframe(container, stream, int(start / stream.time_base), *others)


def _remux_span(container, span: Span) -> bytes:
    """Stream-copy the packets of a keyframe-aligned ``span``: no decoding, no re-encoding."""
    video = container.streams.video[0]
    streams = [video] + list(container.streams.audio[:1])
    span = [start_seconds(video) + t for t in span]
    packets = _seek(container, video, span[0], *streams[1:])
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as oc:
        targets = {s.index: oc.add_stream_from_template(s) for s in streams}
        done = set()
        for packet in packets:
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.stream.time_base)
            if t >= span[1] - 1e-6 and (packet.stream is not video or packet.is_keyframe):
                done.add(packet.stream.index)
                if len(done) == len(streams):
                    break
                continue
            if t >= span[0] - 1e-6 and packet.stream.index not in done:
                _shift(packet, span[0], targets[packet.stream.index])
                oc.mux(packet)
    return out.getvalue()


def _shift(packet, start: float, target) -> None:
    offset = int(round(start / packet.stream.time_base))
    packet.pts -= offset
    if packet.dts is not None:
        packet.dts -= offset
    packet.stream = target


def clip_samples(sample: Sample, ext: str, spans: Sequence[Span], media: Sequence[Dict[str, Any]],
                 shared: bool = False) -> List[Sample]:
    """One sample per span keyed ``{key}_{i:05d}``, with video2dataset's clip metadata (``clips``, ``key``, the
    ``clip_subtitles`` of a video with subtitles, its ``yt_meta_dict`` on the first clip only) plus
    ``original_key``; ``media`` gives each clip's payloads. ``shared``: the media is the whole original, so
    ``json["span"]`` tells the next subsampler which part to read. Clip times given as ``HH:MM:SS.fff`` text are
    written back as text, as video2dataset keeps them."""
    key = sample["__key__"]
    base = {k: v for k, v in sample.items() if k not in (ext, "json", "__key__")}
    meta = sample.get("json", {})
    given = meta.get("clips")
    textual = bool(given) and isinstance(_span_list(given)[0][0], str)
    out = []
    for i, (span, payload) in enumerate(zip(spans, media)):
        clip_meta = copy.deepcopy(meta)
        written = [_time_text(t) for t in span] if textual else list(span)
        clip_meta.update(clips=[written], original_key=meta.get("key", key),
                         key=f"{meta.get('key', key)}_{i:05d}", clip_index=i)
        if (meta.get("yt_meta_dict") or {}).get("subtitles") is not None:
            clip_meta["clip_subtitles"] = clip_subtitles(meta, span)
        if i and "yt_meta_dict" in clip_meta:
            clip_meta["yt_meta_dict"] = {}
        if shared:
            clip_meta["span"] = list(span)
        out.append({**base, "__key__": f"{key}_{i:05d}", **payload, "json": clip_meta})
    return out


class SpanClip(Subsampler):
    """Clip without encoding, for a following ``Frames``: each clip shares the original bytes and carries
    ``json["span"]``. Its clips share the whole original, so a cache keeps the original instead (it runs after)."""

    cacheable = False

    def __init__(self, clip: Clip) -> None:
        self.clip = clip

    def config(self) -> Dict[str, Any]:
        return {"clip": self.clip.config()}

    def __call__(self, sample: Sample) -> Union[Sample, List[Sample]]:
        ext, data = media_bytes(sample)
        if not self.clip.has_source(sample):
            return sample
        with open_media(data) as container:
            spans = self.clip.spans_in(sample, container)
        return clip_samples(sample, ext, spans, [{ext: data}] * len(spans), shared=True)
