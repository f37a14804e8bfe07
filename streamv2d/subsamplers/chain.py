"""The chain of a job: consecutive video ops fused into one decode → filter graph → encode pass, and the one
place a cache may cut it."""
from __future__ import annotations

from typing import Dict, List, Sequence

from .base import SubsamplerLike
from .probe import Probe
from .video import Clip, SpanClip, Transcode, VideoOp


def consumes_spans(subsampler: SubsamplerLike) -> bool:
    """Whether ``subsampler`` decodes ``json["span"]`` of shared media itself (Frames does), so a clip group
    before it need not encode."""
    return bool(getattr(subsampler, "consumes_spans", False))


def cacheable(stage: SubsamplerLike) -> bool:
    """Whether a shard can hold what ``stage`` outputs (``cacheable = False`` says it cannot: tensors)."""
    return getattr(stage, "cacheable", True) is not False


def compile_chain(subsamplers: Sequence[SubsamplerLike]) -> List[SubsamplerLike]:
    """The stages to run: each run of consecutive video ops (Clip, FPS, Resolution, Encode) becomes one
    :class:`Transcode`; a group that is only a Clip directly before a span consumer becomes a :class:`SpanClip`
    (spans marked, nothing encoded: the consumer decodes them); a ``Probe`` right before a Transcode is fused into
    it (its metadata read from the same open container). A group with FPS, Resolution or Encode is always
    transcoded, so what the consumer decodes is what they asked for. Call once, reuse per sample."""
    compiled: List[SubsamplerLike] = []
    group: List[VideoOp] = []
    for subsampler in list(subsamplers) + [None]:
        if isinstance(subsampler, VideoOp):
            group.append(subsampler)
            continue
        if group:
            if all(isinstance(op, Clip) for op in group) and subsampler is not None and consumes_spans(subsampler):
                compiled.append(SpanClip(group[-1]))
            else:
                transcode = Transcode(group)
                if not transcode.remux and compiled and type(compiled[-1]) is Probe:
                    transcode.probe = compiled.pop()   # one open and one decode serve both
                compiled.append(transcode)
            group = []
        if subsampler is not None:
            compiled.append(subsampler)
    return compiled


class Chain:
    """A job's subsamplers, checked and compiled once; ``before_cache`` and ``after_cache`` are the stages on
    either side of the cache: the cut comes before the first stage a shard cannot hold, so with or without a
    cache the same stages run in the same order on the same inputs."""

    def __init__(self, subsamplers: Sequence[SubsamplerLike] = ()):
        self.given = list(subsamplers)
        for i, subsampler in enumerate(self.given):
            if not callable(subsampler):
                hint = (f" (build it from its name with sv.from_config([{subsampler!r}]))"
                        if isinstance(subsampler, (str, dict)) else "")
                raise ValueError(f"subsamplers[{i}]: {subsampler!r} is not callable; give subsampler objects such "
                                 f"as sv.Probe() or functions sample -> sample{hint}")
        self.stages = compile_chain(self.given)
        cut = next((i for i, stage in enumerate(self.stages) if not cacheable(stage)), len(self.stages))
        self.before_cache, self.after_cache = self.stages[:cut], self.stages[cut:]

    def metadata_fields(self) -> Dict[str, str]:
        """The json fields the cached stages declare (see ``Subsampler.metadata_fields``)."""
        declared: Dict[str, str] = {}
        for stage in self.before_cache:
            for op in getattr(stage, "ops", [stage]) + [getattr(stage, "probe", None)]:
                declared.update(getattr(op, "metadata_fields", {}) or {})
        return declared
