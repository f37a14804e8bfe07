"""CutDetection: content-based scene cuts (PySceneDetect's ContentDetector idea) on downscaled frames."""
from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..decode.media import duration_seconds, open_media, rewind, stream_fps, video_stream
from ..sample import Sample
from .base import Subsampler, decoding
from .probe import media_bytes
from .video import analysis_rate, reduced_frames, scene_spans


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV-scaled HSV (H in [0, 180), S and V in [0, 255]) as float32, the space ContentDetector scores in."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    delta = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * delta / np.maximum(v, 1e-6), 0.0)
    d = np.where(delta > 0, delta, 1.0)
    h = np.where(v == r, (g - b) / d, np.where(v == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
    h = np.where(delta > 0, (h * 30.0) % 180.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def content_scores(frames: Iterable[np.ndarray], strides: Sequence[int] = (1,)) -> List[List[float]]:
    """For each stride s, the scores of every s-th frame: mean absolute H, S and V change since the previous
    such frame, averaged (0 for the first). Each frame's HSV is computed once, whatever the strides."""
    scores: List[List[float]] = [[] for _ in strides]
    previous: List[Optional[np.ndarray]] = [None] * len(strides)
    for i, frame in enumerate(frames):
        hsv = None
        for k, stride in enumerate(strides):
            if i % stride:
                continue
            hsv = rgb_to_hsv(frame) if hsv is None else hsv
            scores[k].append(0.0 if previous[k] is None else float(np.abs(hsv - previous[k]).mean()))
            previous[k] = hsv
    return scores


def scenes_from_scores(scores: List[float], threshold: float, min_scene_len: int) -> List[List[int]]:
    """[[start, end), …] frame ranges: a cut where the score reaches ``threshold`` and the current scene has at
    least ``min_scene_len`` frames."""
    cuts, last = [], 0
    for i, score in enumerate(scores):
        if i > 0 and score >= threshold and i - last >= min_scene_len:
            cuts.append(i)
            last = i
    bounds = [0] + cuts + [len(scores)]
    return [[a, b] for a, b in zip(bounds, bounds[1:]) if b > a]


def frame_step(source_fps: Fraction, target_fps: float) -> int:
    """video2dataset's frame skipping for a target rate: every n-th source frame, n = max(1, source // target)."""
    return max(1, int(float(source_fps) // target_fps))


def analysis_passes(steps: Dict[str, Fraction], source_fps: Fraction) -> Dict[Fraction, Dict[str, int]]:
    """Decode passes for analyses every ``steps[key]`` source frames: {pass rate: {key: stride in that pass}}.
    Whole steps share one pass at their greatest common divisor; any other step gets a pass of its own."""
    whole = {key: int(step) for key, step in steps.items() if step.denominator == 1}
    passes: Dict[Fraction, Dict[str, int]] = {}
    if whole:
        common = math.gcd(*whole.values())
        passes[source_fps / common] = {key: step // common for key, step in whole.items()}
    for key, step in steps.items():
        if key not in whole:
            passes.setdefault(source_fps / step, {})[key] = 1
    return passes


def scenes_in_source_frames(scores: List[float], step: Fraction, threshold: float, min_scene_len: int,
                            total: int) -> List[List[int]]:
    """Scenes found on frames analysed every ``step`` source frames, as source frame ranges (PySceneDetect with
    frame skipping numbers frames this way too); ``min_scene_len`` counts source frames; the last scene ends at
    ``total`` (the duration's frame count) or after the last analysed frame, whichever is later."""
    min_len = max(1, math.ceil(min_scene_len / step))
    scenes = [[int(round(a * step)), int(round(b * step))]
              for a, b in scenes_from_scores(scores, threshold, min_len)]
    if scenes:
        scenes[-1][1] = max(total, int(round((len(scores) - 1) * step)) + 1)
    return scenes


class CutDetection(Subsampler):
    """Adds video2dataset's ``json["cuts"]``: ``original_fps``, ``cuts_original_fps`` (scenes as source frame
    ranges) and, for each of ``framerates``, ``cuts_{fps}``: scenes detected on every n-th source frame,
    n = max(1, source fps // fps) (video2dataset's frame skipping), still numbered in source frames. With
    ``cuts_are_clips`` also ``json["clips"]`` in seconds (from ``cuts_original_fps``), for a following ``Clip``.

    ``fps`` samples the frames of ``cuts_original_fps`` at a lower rate (non-reference packets skipped; frame
    numbers stay the source's); ``width`` is the analysis width; ``cut_detection_mode`` ``all`` or ``longest``.
    All analyses every whole number of source frames share one decode pass (at their common step, decoding only
    the frames some analysis scores); an ``fps`` that is not such a step costs a pass of its own."""

    metadata_fields = {"cuts": "json", "clips": "json"}

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 15, cut_detection_mode: str = "all",
                 cuts_are_clips: bool = False, fps: Optional[float] = None, width: int = 64,
                 framerates: Optional[Sequence[float]] = None) -> None:
        if cut_detection_mode not in ("all", "longest"):
            raise ValueError(f"cut_detection_mode must be all or longest, got {cut_detection_mode!r}")
        if framerates is not None and (isinstance(framerates, (str, bytes)) or not isinstance(framerates, Sequence)
                                       or not all(isinstance(r, numbers.Real) and r > 0 for r in framerates)):
            raise ValueError(f"framerates must be a list of positive frame rates, got {framerates!r}")
        self.threshold, self.min_scene_len, self.cut_detection_mode = threshold, min_scene_len, cut_detection_mode
        self.cuts_are_clips, self.fps, self.width = cuts_are_clips, fps, width
        self.framerates = list(framerates) if framerates else None

    @decoding
    def __call__(self, sample: Sample) -> Sample:
        _, data = media_bytes(sample)
        with open_media(data) as container:
            video = video_stream(container)
            source_fps = stream_fps(video)
            duration = duration_seconds(container, video)
            steps = {"cuts_original_fps": source_fps / analysis_rate(video, self.fps)}
            for target in self.framerates or ():
                steps[f"cuts_{target}"] = Fraction(frame_step(source_fps, target))
            scores: Dict[str, List[float]] = {}
            for i, (rate, strides) in enumerate(analysis_passes(steps, source_fps).items()):
                if i:  # a further pass: back to the first packet (seek(0) can land past MPEG-TS's first keyframe)
                    rewind(container)
                distinct = sorted(set(strides.values()))
                found = content_scores(reduced_frames(container, video, rate, self.width), distinct)
                scores.update({key: found[distinct.index(stride)] for key, stride in strides.items()})
        cuts: Dict[str, Any] = {"original_fps": float(source_fps)}
        total = int(round(duration * source_fps))
        for key, step in steps.items():
            scenes = scenes_in_source_frames(scores[key], step, self.threshold, self.min_scene_len, total)
            if self.cut_detection_mode == "longest" and scenes:
                scenes = [max(scenes, key=lambda s: s[1] - s[0])]
            cuts[key] = scenes
        meta = sample.setdefault("json", {})
        meta["cuts"] = cuts
        if self.cuts_are_clips:
            meta["clips"] = scene_spans(cuts, duration)
        return sample
