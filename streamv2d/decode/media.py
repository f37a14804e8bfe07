"""Opening media bytes with PyAV and reading the video stream's facts: the one layer ``Probe``, the fused
transforms and the frame decoders share, with one error class for bytes that cannot serve."""
from __future__ import annotations

import io
import itertools
from contextlib import contextmanager
from contextvars import ContextVar
from fractions import Fraction
from typing import Iterator, List, Optional

import av

from .. import profile


class MediaError(ValueError):
    """Bytes that cannot serve the request: undecodable, no video stream, too short, corrupt."""


#: Largest video frame accepted, in pixels: 8K UHD (7680×4320, 33.2 Mpx), the largest size cameras and video
#: sites deliver. One yuv420p frame of it is ~50 MB and a decoder holds several; a header declaring more (a 3 KB
#: MP4 whose SPS says 16000×16000 took 0.7 GB to open, 1.1 GB to decode) is refused before a frame is decoded.
MAX_PIXELS = 7680 * 4320

#: Longest declared duration accepted (a week): clip windows, span lists and frame indices grow with it.
MAX_DURATION_SECONDS = 7 * 24 * 3600


_MAX_PIXELS: ContextVar[int] = ContextVar("streamv2d_max_pixels", default=MAX_PIXELS)


@contextmanager
def media_limits(max_pixels: int) -> Iterator[None]:
    """Within the block, media opened without an explicit ``max_pixels`` is held to this one (a job's setting,
    set by the pipeline around each row)."""
    token = _MAX_PIXELS.set(max_pixels)
    try:
        yield
    finally:
        _MAX_PIXELS.reset(token)


def open_media(data: bytes, pixel_format: bool = False, max_pixels: Optional[int] = None,
               threads: int = 1) -> "av.container.InputContainer":
    """Open in-memory media, turning libav's errors into a readable :class:`MediaError`, its video header
    checked (:func:`check_video_header`) and its decoders capped at ``max_pixels`` a frame (default: the job's,
    see :func:`media_limits`; libavcodec's own check, for a bitstream whose frames are larger than its container
    header says), each decoding on ``threads`` threads (:func:`decoder_threads`).

    Stream probing decodes no frame unless ``pixel_format`` is asked for: the pixel format is the one stream fact
    only decoding tells (size, rate, frame count and duration come from the headers), and that decoding made
    opening a 720p H.264 file with B-frames ~6× dearer (12 ms against 2 ms)."""
    max_pixels = max_pixels or _MAX_PIXELS.get()
    options = {"max_pixels": str(max_pixels)}
    try:
        with profile.stage("demux"):
            container = av.open(io.BytesIO(data), mode="r", options=options if pixel_format else
                                {**options, "skip_frame": "all"})
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"undecodable media: {exc}") from exc
    if not pixel_format and any(s.codec_context.width == 0 or s.start_time is None or _misdated(container, s)
                                for s in container.streams.video):
        container.close()   # frame size or start time (Matroska) only decoding tells: probe the usual way
        return open_media(data, pixel_format=True, max_pixels=max_pixels, threads=threads)
    try:
        check_video_header(container, len(data), max_pixels)
    except MediaError:
        container.close()
        raise
    for stream in container.streams.video:
        stream.codec_context.options = {**stream.codec_context.options, **options}
        decoder_threads(stream, threads)
    return container


def check_video_header(container, size: int, max_pixels: Optional[int] = None) -> None:
    """The first video stream's declared facts, read before its frames are decoded: a frame size (a decoding open
    that failed leaves 0×0) of at most ``max_pixels``; no more frames than ``size`` bytes can hold (a frame takes
    one byte at least); no duration past :data:`MAX_DURATION_SECONDS`. MediaError naming the value otherwise."""
    if not container.streams.video:
        return   # audio: whoever needs video says so (video_stream)
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise MediaError(f"video stream has no frame size ({width}x{height}): corrupt header")
    max_pixels = max_pixels or _MAX_PIXELS.get()
    if width * height > max_pixels:
        raise MediaError(f"video frames of {width}x{height} ({width * height} pixels) exceed max_pixels={max_pixels}")
    if stream.frames > size:
        raise MediaError(f"video stream declares {stream.frames} frames in {size} bytes: corrupt header")
    declared = [float(stream.duration * stream.time_base)] if stream.duration and stream.time_base else []
    if container.duration is not None:
        declared.append(container.duration / av.time_base)
    if any(seconds > MAX_DURATION_SECONDS for seconds in declared):
        raise MediaError(f"video declares {max(declared):.0f} s, over the {MAX_DURATION_SECONDS} s a video may last")


def decoder_threads(stream, threads: int = 1):
    """``stream`` (returned) set to decode on ``threads`` threads, before its decoder opens; one (the default) where
    other rows, workers or processes already keep every core busy (libavcodec's own default, a thread per core,
    only made the rows' codecs thrash the same cores)."""
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO" if threads > 1 else "NONE"
    return stream


def video_stream(container) -> "av.video.stream.VideoStream":
    if not container.streams.video:
        raise MediaError("no video stream")
    return container.streams.video[0]


def stream_fps(stream) -> Fraction:
    """The video's frame rate: average rate, else guessed rate, else 25 (libav's own fallback)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def start_seconds(stream) -> float:
    """When the stream's first frame is shown (MPEG-TS, edit lists and Matroska offsets make it non-zero): the
    origin of every time this library uses — spans, keyframes and frame indices count from the first frame."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def duration_seconds(container, stream) -> float:
    """Video duration from the first frame to the end of the last, as every time here counts from the first frame.

    The stream's own duration when stored (MP4, MPEG-TS: libav measures it from the first frame). Matroska/WebM
    store none, and their segment Duration cannot stand in: FFmpeg's muxer writes the end time (so a file whose
    clock starts at 1.4 s would seem 1.4 s longer), mkvmerge's the length, live WebM none; so the end is read off
    the packets after the last keyframe instead (an index seek and a GOP demuxed, nothing decoded)."""
    if stream.duration is not None and stream.time_base is not None and not _timed_by_container(container, stream):
        return float(stream.duration * stream.time_base)
    end = _end_pts(container, stream)
    if end is not None:
        return float((end - (stream.start_time or 0)) * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base   # demuxers that cannot seek to the end (FLV's is its end time)
    raise MediaError("unknown duration")


def _timed_by_container(container, stream) -> bool:
    """Whether the stream's start and duration are libav's copies of the container's, not its own: Matroska
    stores neither per stream, so a stream libav could not time unopened (B-frame video, frames not decoded)
    gets the segment's Duration (its end time) and the earliest other stream's start (often audio's, earlier)."""
    return stream.duration is not None and "matroska" in container.format.name.split(",")


def _misdated(container, stream) -> bool:
    """Whether the stream's start is a copy of the container's that its first packet contradicts (video that
    starts after the audio); a right copy spares the reopening, whose decoding costs ~10× the quick open."""
    if not _timed_by_container(container, stream):
        return False
    try:
        with _rewound(container):
            packets = container.demux(stream)
            first = next((p.pts for p in packets if p.pts is not None), None)
            packets.close()
    except av.FFmpegError:
        return True   # the decoding open will tell, or name the damage
    return first != stream.start_time


@contextmanager
def _rewound(container) -> Iterator[None]:
    """:func:`rewind` when done, also after an error."""
    try:
        yield
    finally:
        try:
            rewind(container)
        except av.FFmpegError:
            pass   # unseekable input: whoever reads next meets the damage and names it


def rewind(container) -> None:
    """Back to the first packet, as near as seeking allows: to time 0 (or the start, if negative) on the stream
    that starts first (audio on a tie). ``seek(0)`` lands on the video's first keyframe, skipping audio that starts
    earlier (MP4 edit lists, MPEG-TS, Matroska), and a seek to a stream's own start time can land past MPEG-TS's
    first keyframe. An MP4's AAC priming packet (before 0, though the stream starts at 0) stays skipped, as with
    ``seek(0)``: a seek further back fails on some demuxers (FLV)."""
    timed = [s for s in container.streams if s.start_time is not None and s.time_base is not None]
    first = min(timed, key=lambda s: (s.start_time * s.time_base, s.type == "video"), default=None)
    container.seek(0 if first is None else min(0, first.start_time), stream=first, backward=True)


_FAR = 1 << 62   # a seek target past any end: demuxers land on the last keyframe


def _end_pts(container, stream) -> Optional[int]:
    """When the stream's last frame ends (its time base), from the packets after its last keyframe; None when
    the container cannot seek there. Rewinds afterwards (:func:`_rewound`)."""
    frame = max(1, round(1 / (stream_fps(stream) * stream.time_base)))   # for packets that carry no duration
    try:
        with _rewound(container):
            container.seek(_FAR, stream=stream, backward=True)
            return max((p.pts + (p.duration or frame) for p in container.demux(stream) if p.pts is not None),
                       default=None)
    except av.FFmpegError:
        return None


def keyframe_timestamps(container, stream) -> List[float]:
    """Presentation times of the video's keyframes from its first frame, found by demuxing only (no decoding)."""
    origin = start_seconds(stream)
    with _rewound(container):
        return sorted(float(p.pts * stream.time_base) - origin for p in container.demux(stream)
                      if p.is_keyframe and p.pts is not None)


#: decoders that read ``skip_frame`` once, when they open, so it cannot be switched per packet: opened while an
#: unwanted packet had it set, libdav1d (AV1) never outputs a non-reference frame, wanted or not
_SKIP_SET_AT_OPEN = frozenset({"libdav1d"})


def skips_per_packet(context) -> bool:
    """Whether ``context``'s decoder honours ``skip_frame`` switched per packet (:func:`decode_packet`)."""
    return context.name not in _SKIP_SET_AT_OPEN


def decode_packet(context, packet, wanted: bool) -> list:
    """The frames one packet yields; unless ``wanted``, the decoder drops it when it is a non-reference frame
    (nothing else needs it). Decided per packet: ``skip_frame="NONREF"`` for a whole run drops wanted B-frames too,
    which gave wrong frames on B-frame files."""
    context.skip_frame = "DEFAULT" if wanted else "NONREF"
    try:
        with profile.stage("decode"):
            return context.decode(packet)
    except av.InvalidDataError as exc:   # also libavcodec's refusal of frames over max_pixels (see open_media)
        size = context.width * context.height
        raise MediaError(f"undecodable video packet: {context.width}x{context.height} frames ({size} pixels) "
                         "over max_pixels, or corrupt data") from exc


def seek_keyframe(container, stream, pts: int, *others) -> Iterator:
    """The packets of ``stream`` (and the ``others`` streams) from a keyframe shown at or before ``pts`` (the
    stream's time base), so decoding them yields every frame up to ``pts``. A seek can land elsewhere: anywhere
    in MPEG-TS and other unindexed containers, and in an open GOP on a keyframe shown after the frame wanted
    (indexes time keyframes by decode order, and the B-frames leading an open GOP need the GOP before). So the
    seek steps back until such a keyframe leads, or to the start. The packets read to check the landing are
    returned first, not seeked to again: a second seek can land elsewhere (MPEG-TS indexes packets as it reads)."""
    streams = (stream, *others)
    first = stream.start_time or 0
    step = max(1, int(1 / stream.time_base))   # one second, doubled after each miss
    target = pts
    while target > first:
        container.seek(target, stream=stream, backward=True)
        packets = container.demux(*streams)
        head = []
        for packet in packets:
            head.append(packet)
            if packet.stream is stream and packet.pts is not None:
                if packet.is_keyframe and packet.pts <= pts:
                    return itertools.chain(head, packets)
                break
        packets.close()   # not a keyframe shown in time, or nothing after the seek point: step back
        target, step = target - step, 2 * step
    rewind(container)
    return container.demux(*streams)
