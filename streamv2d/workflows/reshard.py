"""``reshard``: merge datasets of WebDataset shards and cut them into shards of another size.

The inputs' samples, in order (datasets in the order given, each one's tars sorted), are numbered once and cut
every ``samples_per_shard``: output shard ``j`` holds samples ``[j·N, (j+1)·N)``. Each gets a fresh key in
video2dataset's format (zero-padded shard id then zero-padded index), so keys are unique whatever the inputs
held; ``json["source_key"]`` and ``json["source_shard"]`` say where it came from. Failure records pass through as
records (and count as failures in the output stats); media is copied as is, never re-encoded. The work is
:func:`~streamv2d.materialize` over :class:`ReshardSource`: resumable, idempotent, any output format and store."""
from __future__ import annotations

import hashlib
import itertools
import os
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ..errors import SourceError
from ..job import Job, positive_int
from ..materialize import MaterializeResult, materialize
from ..sample import Sample, key_widths, make_key
from ..sources import InputShard, TarSource
from ..sources.paths import PathSpec
from ..sources.tar import MAX_MEMBER_BYTES, looks_like_tar_spec

#: json fields a resharded sample gains: its key and tar before.
PROVENANCE = {"source_key": "string", "source_shard": "string"}


def tar_spec(spec: PathSpec) -> PathSpec:
    """``spec`` as tar paths: a folder (local, or an fsspec URL not naming tars) stands for its ``*.tar``."""
    if isinstance(spec, (list, tuple)):
        return [p for item in spec for p in _as_list(tar_spec(item))]
    path = os.fspath(spec)
    if looks_like_tar_spec(path) or any(c in path for c in "*?[{"):
        return path
    return path.rstrip("/") + "/*.tar" if "://" in path else os.path.join(path, "*.tar")


def _as_list(spec: PathSpec) -> List[Any]:
    return list(spec) if isinstance(spec, (list, tuple)) else [spec]


class ReshardSource:
    """The samples of many tar shards, renumbered and cut every ``samples_per_shard`` (see the module docstring).
    Listing counts each tar's samples from its member headers (in parallel, once; the counts travel with the
    source to worker processes); reading a shard reads only the tars it spans, from the first sample it needs.
    Unsafe and pickle-capable members are refused as :class:`TarSource` refuses them."""

    needs_fetch = False

    def __init__(self, inputs: Union[PathSpec, Sequence[PathSpec]], samples_per_shard: int, *,
                 storage_options: Optional[dict] = None, max_member_bytes: int = MAX_MEMBER_BYTES,
                 allow_pickle: bool = False):
        self.samples_per_shard = positive_int("samples_per_shard", samples_per_shard)
        self.tars = TarSource(tar_spec(inputs if isinstance(inputs, (list, tuple)) else [inputs]),
                              storage_options=storage_options, max_member_bytes=max_member_bytes,
                              allow_pickle=allow_pickle)
        with ThreadPoolExecutor(16) as pool:
            self.counts: List[int] = list(pool.map(self.tars.count, self.tars.shards()))
        self.offsets: List[int] = [0] + list(accumulate(self.counts))[:-1]
        total = sum(self.counts)
        self._shards = [InputShard(j, self.tars.paths[self._tar_at(start)], start,
                                   min(start + self.samples_per_shard, total))
                        for j, start in enumerate(range(0, total, self.samples_per_shard))]
        self.widths = key_widths(len(self._shards), self.samples_per_shard)

    def shards(self) -> Sequence[InputShard]:
        return self._shards

    def fingerprint(self) -> str:
        """The tars' content digests and paths (``source_shard`` names them), in order, and the shard size."""
        document = [self.samples_per_shard, self.tars.fingerprint(), self.tars.paths]
        return hashlib.sha256(f"reshard{document}".encode()).hexdigest()[:16]

    def metadata_fields(self) -> Dict[str, str]:
        return dict(PROVENANCE)

    def read(self, shard: InputShard, start: int = 0) -> Iterator[Sample]:
        """Shard ``shard``'s samples from its ``start``-th, renamed; a tar holding fewer samples than when it was
        listed (it changed meanwhile) raises :class:`SourceError`, so the shard is not published short."""
        index, position = start, shard.start + start
        while position < shard.stop:
            t = self._tar_at(position)
            first = position - self.offsets[t]
            wanted = min(self.counts[t] - first, shard.stop - position)
            tar = self.tars.shards()[t]
            for sample in itertools.islice(self.tars.read(tar, first), wanted):
                yield renamed(sample, make_key(shard.id, index, self.widths), tar.path)
                index += 1
            position += wanted
            if shard.start + index != position:
                raise SourceError(f"{tar.path}: fewer samples than when it was listed (it changed); run again")

    def _tar_at(self, position: int) -> int:
        """The tar holding sample ``position`` of the whole input (empty tars hold none)."""
        return bisect_right(self.offsets, position) - 1


def renamed(sample: Sample, key: str, tar_path: str) -> Sample:
    """``sample`` under ``key``, its json's ``key`` too, with the key and tar it had as ``source_key`` and
    ``source_shard``."""
    meta = dict(sample.get("json") or {})
    meta.update(key=key, source_key=sample["__key__"], source_shard=tar_path)
    return {**sample, "__key__": key, "json": meta}


def reshard(inputs: Union[PathSpec, Sequence[PathSpec]], output: str, samples_per_shard: int, *,
            output_format: str = "tar", processes: Optional[int] = None, progress: bool = True,
            storage_options: Optional[Dict[str, Any]] = None, tmp_dir: Optional[str] = None,
            max_member_bytes: int = MAX_MEMBER_BYTES) -> MaterializeResult:
    """Merge the tar shards of ``inputs`` (output folders, patterns or tar paths; local or fsspec, opened with
    ``storage_options``) into ``output`` in shards of ``samples_per_shard`` samples, each sample once under a
    new unique key (see the module docstring). Complete shards are skipped, an interrupted run resumes."""
    source = ReshardSource(inputs, samples_per_shard, storage_options=storage_options,
                           max_member_bytes=max_member_bytes)
    job = Job(source=source, output_format=output_format, processes=processes, fetch={"max_bytes": max_member_bytes})
    return materialize(None, output, job, progress=progress, storage_options=storage_options, tmp_dir=tmp_dir)
