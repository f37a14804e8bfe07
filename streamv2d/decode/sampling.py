"""Which frames to decode: a span in seconds → frame indices, uniform or random, with an optional step."""
from __future__ import annotations

import bisect
import math
import random
from typing import List, Optional, Sequence

from .base import MediaError, VideoInfo

SAMPLINGS = ("uniform", "random")

#: how ``Frames`` reaches the sampled frames: ``exact`` decodes the very frames; ``keyframe`` takes the
#: keyframe nearest to each (one packet decoded per distinct keyframe: approximate, for training reads)
SEEKS = ("exact", "keyframe")


def span_frames(info: VideoInfo, span: Optional[Sequence[float]] = None) -> range:
    """Indices of the frames shown within ``span = [start_s, end_s)`` (the whole video without a span)."""
    if span is None:
        return range(info.num_frames)
    start, end = float(span[0]), float(span[1])
    if not 0 <= start < end:
        raise MediaError(f"invalid span [{start}, {end}]")
    if end > info.duration + 1 / info.fps:
        raise MediaError(f"span [{start:.3f}, {end:.3f}] s goes beyond the video's {info.duration:.3f} s")
    first = math.ceil(start * info.fps - 1e-6)
    stop = min(info.num_frames, math.ceil(end * info.fps - 1e-6))
    if stop <= first:
        raise MediaError(f"span [{start:.3f}, {end:.3f}] s holds no frame")
    return range(first, stop)


def frame_step(info: VideoInfo, fps: Optional[float], stride: Optional[int]) -> Optional[float]:
    """Frames between two sampled frames: from a target ``fps``, a fixed ``stride``, or None (spread out)."""
    if fps is not None:
        return info.fps / fps
    return float(stride) if stride is not None else None


def sample_indices(frames: range, num_frames: int, sampling: str, step: Optional[float],
                   rng: random.Random) -> List[int]:
    """``num_frames`` indices from ``frames``. Without ``step``: one per equal segment (its centre for
    ``uniform``, a random member for ``random``). With ``step``: a contiguous window of ``num_frames``
    frames ``step`` apart, centred (``uniform``) or at a random offset (``random``)."""
    count = len(frames)
    if step is None:
        if count < num_frames:
            raise MediaError(f"{num_frames} frames requested but the clip has {count}")
        bounds = [k * count // num_frames for k in range(num_frames + 1)]
        if sampling == "uniform":
            offsets = [(2 * k + 1) * count // (2 * num_frames) for k in range(num_frames)]
        else:
            offsets = [rng.randrange(bounds[k], bounds[k + 1]) for k in range(num_frames)]
    else:
        offsets = [round(k * step) for k in range(num_frames)]
        room = count - 1 - offsets[-1]
        if room < 0:
            raise MediaError(f"{num_frames} frames {step:g} apart need {offsets[-1] + 1} frames "
                              f"but the clip has {count}")
        shift = room // 2 if sampling == "uniform" else rng.randint(0, room)
        offsets = [o + shift for o in offsets]
    return [frames[o] for o in offsets]


def keyframe_runs(wanted: Sequence[int], keyframes: Sequence[int]) -> List[List[int]]:
    """Split sorted ``wanted`` indices into runs to decode after one seek each: a new run starts where a
    keyframe lies after the previous wanted frame and at or before the next, so the GOP tail between
    them is never decoded. Without keyframes, one run: a single seek, then sequential decoding."""
    runs = [[wanted[0]]]
    for previous, current in zip(wanted, wanted[1:]):
        before = bisect.bisect_right(keyframes, current)
        if before and keyframes[before - 1] > previous:
            runs.append([current])
        else:
            runs[-1].append(current)
    return runs


def nearest_keyframes(indices: Sequence[int], keyframes: Sequence[int], frames: range) -> Optional[List[int]]:
    """Each of ``indices`` replaced by the nearest of the sorted ``keyframes`` inside ``frames`` (the earlier on a
    tie), in the same order, so a keyframe nearest to several indices repeats; None when ``frames`` holds none."""
    inside = keyframes[bisect.bisect_left(keyframes, frames.start):bisect.bisect_left(keyframes, frames.stop)]
    if not inside:
        return None

    def nearest(index: int) -> int:
        after = bisect.bisect_left(inside, index)
        candidates = inside[max(0, after - 1):after + 1]
        return min(candidates, key=lambda k: (abs(k - index), k))

    return [nearest(i) for i in indices]
