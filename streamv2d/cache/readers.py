"""Read a published output shard back as samples, in any output format (json → dict, txt → str)."""
from __future__ import annotations

import itertools
import os
from typing import Dict, Iterator, List

import pyarrow as pa
import pyarrow.parquet as pq

from ..sample import Sample
from ..sources.tar import decode_payload, split_member
from .formats import tfrecord_samples
from .layout import ShardPaths
from .writer import spool_samples


def read_output_shard(paths: ShardPaths, skip: int = 0) -> Iterator[Sample]:
    """The samples of the published shard at ``paths``, in written order, after the first ``skip`` (not
    decoded: tar headers, parquet row counts, file names tell where they end)."""
    if paths.fmt == "tar":
        return spool_samples(paths.data, paths.shard_id, skip)
    if paths.fmt == "parquet":
        return _parquet_samples(paths.data, skip)
    if paths.fmt == "tfrecord":
        return itertools.islice(tfrecord_samples(paths.data), skip, None)
    if paths.fmt == "dummy":
        raise ValueError("output format 'dummy' keeps no samples to read back; use tar, parquet, files or tfrecord")
    return itertools.islice(_files_samples(paths.data), skip, None)


def _parquet_samples(path: str, skip: int = 0) -> Iterator[Sample]:
    parquet = pq.ParquetFile(path)
    groups = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
    first = 0
    while first < len(groups) and skip >= groups[first]:   # whole row groups before the position: never read
        skip -= groups[first]
        first += 1
    for batch in parquet.iter_batches(batch_size=64, row_groups=range(first, len(groups))):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        batch, skip = batch.slice(skip), 0
        payloads = [f.name for f in batch.schema if pa.types.is_binary(f.type) or f.name in ("txt", "json")]
        columns = batch.select(["__key__"] + payloads).to_pydict()   # the rest: metadata columns, also in json
        for i, key in enumerate(columns["__key__"]):
            sample: Sample = {"__key__": key, "__url__": path}
            for ext in payloads:
                value = columns[ext][i]
                if value is not None:
                    sample[ext] = decode_payload(ext, value.encode("utf-8") if isinstance(value, str) else value)
            yield sample


def _files_samples(directory: str) -> Iterator[Sample]:
    groups: Dict[str, List[str]] = {}
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
            key, ext = split_member(rel)
            if key is not None:
                groups.setdefault(key, []).append(ext)
    for key in sorted(groups):
        sample: Sample = {"__key__": key, "__url__": directory}
        for ext in sorted(groups[key]):
            with open(os.path.join(directory, f"{key}.{ext}"), "rb") as f:
                sample[ext] = decode_payload(ext, f.read())
        yield sample
