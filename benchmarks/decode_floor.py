"""The floor of exact decoding: how much of a video a method returning exact frames must decode, per corpus.

    python benchmarks/decode_floor.py [--corpus NAME] [--count 9] [--repeats 3]

Every packet's decode cost is timed (CPU time) in single-threaded sequential decodes (median of ``--repeats``
passes). A packet is *mandatory* for a set of wanted frames when it is a wanted frame, or a reference frame (H.264
``nal_ref_idc`` ≠ 0) decoded between the keyframe its run starts from (``keyframe_runs``, as ``Frames`` seeks)
and the run's last wanted packet; skipping any other packet keeps every wanted frame exact. It is the floor of
methods that decide by the reference flag, as decoders' ``skip_frame`` does; going lower would mean proving that
no later frame uses a reference frame (parsing H.264's reference lists), which no decoder API offers. Two jobs:

- ``Frames``: 8 frames uniform (``frames.py`` (a)). Sequential decoding (the plain loader) pays for every packet
  up to the last wanted one (a little less than the plain loader, which must feed the packets its reorder delay
  waits for: the ratio is on the conservative side); the floor pays for the mandatory ones. Beside the model,
  measured in the same run: the plain loader's decode (``frames.plain_decode``) and ``Frames``' reader
  (``PyAVReader.read``), both to 224².
- ``FPS 5`` from 30 (``materialize.py``'s job, its decoding only): full decode against decoding only reference
  frames and the frames an output slot shows — the most non-reference skipping can save, before encoding.

Corpora: ``synthetic`` is ``frames.py``'s (panning texture; 2-s GOPs; I-frames carry most of the bytes); the
others are ``materialize.py``'s real footage, x264 ``veryfast``: B-pyramid ``normal`` (x264's default) or none
(``flat-b``), keyframes every 250 frames or at scene cuts (x264's default) or every 2 s (``gop2s``).
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from fractions import Fraction
from typing import Dict, List, Sequence, Tuple

import av

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoders import CORPORA, named_corpus, uniform  # noqa: E402
from frames import NUM_FRAMES, SIZE, plain_decode  # noqa: E402
from streamv2d.decode.pyav import PyAVReader  # noqa: E402
from streamv2d.decode.media import start_seconds  # noqa: E402
from streamv2d.decode.sampling import keyframe_runs  # noqa: E402
from streamv2d.subsamplers.video import FrameSelector, decode_selected  # noqa: E402

Packet = Tuple[int, bool, bool, float]   # (presentation index, keyframe, reference, decode seconds)


def is_reference(data: bytes) -> bool:
    """H.264 in MP4 (length-prefixed NAL units): the first slice's ``nal_ref_idc`` is non-zero."""
    i = 0
    while i + 5 <= len(data):
        size, header = int.from_bytes(data[i:i + 4], "big"), data[i + 4]
        if header & 0x1F in (1, 5):
            return header >> 5 != 0
        i += 4 + size
    return True


def single_threaded(data: bytes) -> "av.container.InputContainer":
    """``data`` opened with its video decoder on one thread, as costs are timed here."""
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    stream.codec_context.thread_type, stream.codec_context.thread_count = "NONE", 1
    return container


def timed_packets(data: bytes, repeats: int) -> List[Packet]:
    """The video's packets in decode order with their median decode cost (one thread)."""
    passes = []
    for _ in range(repeats):
        with single_threaded(data) as container:
            stream = container.streams.video[0]
            step = float(1 / (stream.average_rate * stream.time_base))
            start = stream.start_time or 0
            packets = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                began = time.process_time()
                stream.codec_context.decode(packet)
                packets.append((round((packet.pts - start) / step), packet.is_keyframe, is_reference(bytes(packet)),
                                time.process_time() - began))
            passes.append(packets)
    return [p[:3] + (statistics.median(q[3] for q in column),) for p, column in zip(passes[0], zip(*passes))]


def frames_costs(packets: List[Packet], wanted: Sequence[int]) -> Tuple[float, float]:
    """(sequential decoding up to the last wanted packet, the exact floor) for a Frames read of ``wanted``."""
    position = {index: n for n, (index, *_rest) in enumerate(packets)}
    keyframes = sorted(index for index, key, _, _ in packets if key)
    sequential = sum(cost for *_rest, cost in packets[:max(position[i] for i in wanted) + 1])
    floor = 0.0
    for run in keyframe_runs(sorted(wanted), keyframes):
        first = position[max(k for k in keyframes if k <= run[0])]
        last = max(position[i] for i in run)
        floor += sum(cost for index, _, ref, cost in packets[first:last + 1] if ref or index in run)
    return sequential, floor


def fps_costs(packets: List[Packet], step: int) -> Tuple[float, float]:
    """(full decode, the exact floor) for keeping every ``step``-th frame of the whole video."""
    full = sum(cost for *_rest, cost in packets)
    return full, sum(cost for index, _, ref, cost in packets if ref or index % step == 0)


def fps_decode(data: bytes, rate: float) -> Tuple[float, float]:
    """(streamv2d's decode for an ``FPS(rate)`` transcode of the whole video, its exact floor) in CPU s. The floor
    is one timed pass over every packet, summing the reference packets and those an output slot shows (the job's
    own ``FrameSelector``); then ``decode_selected``, as ``Transcode`` decodes, is timed alone."""
    def selector(stream) -> FrameSelector:
        return FrameSelector.for_stream(stream, start_seconds(stream), None, Fraction(rate).limit_denominator(1001))

    floor = 0.0
    with single_threaded(data) as container:
        stream = container.streams.video[0]
        wanted = selector(stream)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            mandatory = is_reference(bytes(packet)) or len(wanted.slots(packet.pts, packet.duration)) > 0
            began = time.process_time()
            stream.codec_context.decode(packet)
            floor += (time.process_time() - began) if mandatory else 0.0
    with single_threaded(data) as container:
        stream = container.streams.video[0]
        began = time.process_time()
        for _ in decode_selected(container.demux(stream), stream, selector(stream), skip=True):
            pass
        return time.process_time() - began, floor


def measured(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=list(CORPORA), default="synthetic")
    parser.add_argument("--count", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    totals: Dict[str, float] = {}
    for name, data in sorted(named_corpus(args.corpus, args.count)[1].items()):
        packets = timed_packets(data, args.repeats)
        wanted = uniform(data, NUM_FRAMES)
        figures = dict(zip(("sequential", "floor"), frames_costs(packets, wanted)))
        figures.update(zip(("full", "fps floor"), fps_costs(packets, 6)))
        figures["plain loader"] = measured(lambda: plain_decode(data), args.repeats)
        figures["Frames"] = measured(lambda: PyAVReader(data).read(wanted, SIZE), args.repeats)
        for key, value in figures.items():
            totals[key] = totals.get(key, 0.0) + value
    ms = {key: 1000 * value / args.count for key, value in totals.items()}
    print(f"corpus {args.corpus}, {args.count} videos; ms of one core per video (decode costs: median of "
          f"{args.repeats} timed passes)")
    print(f"Frames, {NUM_FRAMES} uniform: sequential decode {ms['sequential']:.0f}, exact floor {ms['floor']:.0f} "
          f"→ skipping by the reference flag cannot beat sequential decoding by more than "
          f"{ms['sequential'] / ms['floor']:.2f}×")
    print(f"  measured to {SIZE}² (conversions included): plain loader {ms['plain loader']:.0f}, Frames "
          f"{ms['Frames']:.0f} → {ms['plain loader'] / ms['Frames']:.2f}×")
    print(f"FPS 5 of 30: full decode {ms['full']:.0f}, exact floor {ms['fps floor']:.0f} → skipping saves at most "
          f"{100 * (1 - ms['fps floor'] / ms['full']):.0f} % of decoding")


if __name__ == "__main__":
    main()
