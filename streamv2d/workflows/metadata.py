"""Dedicated metadata shards: a chain of metadata stages (optical flow, captions, embeddings, probe, …) run over
existing shards, writing shards that hold only ``json`` and the members those stages declare — no media — one
sample per source sample, under the source's keys and shard ids, so ``wds.WebDataset`` can zip the two.

A metadata stage says what it adds: ``metadata_fields`` (json fields, see :class:`~streamv2d.subsamplers.Subsampler`)
and, for members beside json, ``metadata_members`` (``OpticalFlow``'s ``npy``, ``Caption``'s ``txt``). The same
chain serves video2dataset's ``optical_flow``, ``caption`` and ``whisper`` stages (:mod:`streamv2d.v2d`)."""
from __future__ import annotations

import posixpath
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..job import Job
from ..materialize import MaterializeResult, materialize
from ..sample import Sample, key_widths
from ..shard import ShardJob
from ..subsamplers import Subsampler, SubsamplerLike
from ..subsamplers.video import VideoOp
from .reshard import tar_spec


def metadata_members(stage: SubsamplerLike) -> Tuple[str, ...]:
    """The members besides ``json`` that ``stage`` writes as metadata (its ``metadata_members``)."""
    return tuple(getattr(stage, "metadata_members", ()) or ())


def _stage_name(stage: SubsamplerLike) -> str:
    return getattr(stage, "__name__", type(stage).__name__)


def check_metadata_stage(index: int, stage: SubsamplerLike) -> None:
    """Refuse, before any row runs, a stage that changes the media or declares no metadata it adds."""
    name = _stage_name(stage)
    if isinstance(stage, VideoOp):
        raise ValueError(f"subsamplers[{index}]: {name} changes the media, which metadata shards do not hold; "
                         "run it with materialize")
    if not (getattr(stage, "metadata_fields", None) or metadata_members(stage)):
        raise ValueError(f"subsamplers[{index}]: {name} produces no metadata (it declares no metadata_fields or "
                         "metadata_members), so its metadata shards would be empty")


class OnePerSample(Subsampler):
    """Runs ``stage`` and keeps its shard aligned with the source: one sample in, the same key out. A stage that
    drops, splits or renames a sample fails it (a ``failed_to_subsample`` record under the source key)."""

    def __init__(self, stage: SubsamplerLike) -> None:
        self.stage = stage
        self.metadata_fields = dict(getattr(stage, "metadata_fields", None) or {})
        self.cacheable = getattr(stage, "cacheable", True)   # a stage making tensors is refused by materialize

    def __call__(self, sample: Sample) -> Sample:
        key = sample["__key__"]
        result = self.stage(sample)
        outputs = [result] if isinstance(result, dict) else list(result or ())
        if len(outputs) != 1 or outputs[0].get("__key__") != key:
            raise ValueError(f"{_stage_name(self.stage)} made {len(outputs)} sample(s) from {key!r}; a metadata "
                             "shard needs exactly one per source sample, under its key")
        return outputs[0]


class MetadataOnly(Subsampler):
    """Drops every member but ``json`` and ``members``: what a metadata shard holds."""

    def __init__(self, members: Sequence[str]) -> None:
        self.members = tuple(members)

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in sample.items() if k.startswith("__") or k == "json" or k in self.members}


def metadata_chain(stages: Sequence[SubsamplerLike], members: Sequence[str] = ()) -> List[SubsamplerLike]:
    """``stages`` checked (:func:`check_metadata_stage`) and kept one sample per source sample, then
    :class:`MetadataOnly` keeping ``json``, their ``metadata_members`` and ``members``."""
    if not stages:
        raise ValueError("subsamplers: a metadata shard job needs at least one metadata stage (optical flow, "
                         "caption, probe, …)")
    for index, stage in enumerate(stages):
        check_metadata_stage(index, stage)
    kept = dict.fromkeys(list(members) + [m for stage in stages for m in metadata_members(stage)])
    return [OnePerSample(stage) for stage in stages] + [MetadataOnly(tuple(kept))]


def check_aligned(shard_job: ShardJob, digits: int) -> None:
    """Refuse a source whose shard files are not named as their metadata shards will be (``00000.tar``, … in
    order, as materialize writes them): zipped by name, they would pair the wrong shards."""
    for shard in shard_job.shards():
        stem = posixpath.basename(shard.path).split(".", 1)[0]
        expected = f"{shard.id:0{digits}d}"
        if stem != expected:
            raise ValueError(f"source shard {shard.path}: its metadata shard would be {expected}.tar; give the "
                             f"source's shards as {expected[:-1]}…, numbered from 0 without gaps (a materialize "
                             "output folder is)")


def reprocess(source: Any, output: str, subsamplers: Optional[Sequence[SubsamplerLike]] = None,
              job: Optional[Job] = None, *,
              processes: Optional[int] = None, progress: bool = True, storage_options: Optional[dict] = None,
              tmp_dir: Optional[str] = None) -> MaterializeResult:
    """Run ``subsamplers`` (metadata stages) over the tar shards of ``source`` (an output folder, a pattern or a
    list of tars, local or fsspec) into dedicated metadata shards in ``output``: json plus the stages' members,
    one sample per source sample under its key, shard ``k`` named as source shard ``k``; resumable and
    idempotent like :func:`~streamv2d.materialize`. ``job`` gives the other settings (output format, fetch
    limits, processes) and, when ``subsamplers`` is None, the stages; a stage that makes no metadata or changes
    the media is refused before anything runs."""
    base = job or Job()
    table = {"storage_options": storage_options} if storage_options else {}
    stages = list(base.subsamplers if subsamplers is None else subsamplers)
    job = base.replace(source=tar_spec(source), subsamplers=metadata_chain(stages), table=table)
    shard_job = ShardJob(job)
    check_aligned(shard_job, key_widths(len(shard_job.shards()), 1)[0])
    return materialize(None, output, job, processes=processes, progress=progress, storage_options=storage_options,
                       tmp_dir=tmp_dir)
