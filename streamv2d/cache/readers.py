"""Read a published output shard back as samples, in any output format (json → dict, txt → str)."""
from __future__ import annotations

import os
from typing import Dict, Iterator, List

import pyarrow.parquet as pq

from ..sample import Sample
from ..sources.tar import decode_payload, split_member
from .layout import ShardPaths
from .writer import spool_samples


def read_output_shard(paths: ShardPaths) -> Iterator[Sample]:
    """The samples of the published shard at ``paths``, in written order."""
    if paths.fmt == "tar":
        return spool_samples(paths.data, paths.shard_id)
    if paths.fmt == "parquet":
        return _parquet_samples(paths.data)
    return _files_samples(paths.data)


def _parquet_samples(path: str) -> Iterator[Sample]:
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=64):
        columns = batch.to_pydict()
        for i, key in enumerate(columns["__key__"]):
            sample: Sample = {"__key__": key, "__url__": path}
            for ext, values in columns.items():
                value = values[i]
                if ext != "__key__" and value is not None:
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
