"""compile_chain: consecutive video ops fused into one decode → filter graph → encode pass."""
from __future__ import annotations

from typing import List, Sequence

from .base import SubsamplerLike
from .probe import Probe
from .video import Clip, SpanClip, Transcode, VideoOp


def consumes_spans(subsampler: SubsamplerLike) -> bool:
    """Whether ``subsampler`` decodes ``json["span"]`` of shared media itself (Frames does), so a clip group
    before it need not encode."""
    return bool(getattr(subsampler, "consumes_spans", False))


def compile_chain(subsamplers: Sequence[SubsamplerLike]) -> List[SubsamplerLike]:
    """The chain to run: each run of consecutive video ops (Clip, FPS, Resolution, Encode) becomes one
    :class:`Transcode`; a run holding a Clip directly before a span consumer becomes a :class:`SpanClip`
    (no encoding; its FPS/Resolution are then left to the consumer's own options); a ``Probe`` right before a
    Transcode is fused into it (its metadata read from the same open container, the pixel format from the first
    decoded frame). Call once, reuse per sample."""
    compiled: List[SubsamplerLike] = []
    group: List[VideoOp] = []
    for subsampler in list(subsamplers) + [None]:
        if isinstance(subsampler, VideoOp):
            group.append(subsampler)
            continue
        if group:
            clip = next((op for op in group if isinstance(op, Clip)), None)
            if clip is not None and subsampler is not None and consumes_spans(subsampler):
                compiled.append(SpanClip(clip))
            else:
                transcode = Transcode(group)
                if not transcode.remux and compiled and type(compiled[-1]) is Probe:
                    transcode.probe = compiled.pop()   # one open and one decode serve both
                compiled.append(transcode)
            group = []
        if subsampler is not None:
            compiled.append(subsampler)
    return compiled
