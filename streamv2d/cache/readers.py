"""Read a published output shard back as samples, in any output format (json → dict, txt → str)."""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..sample import Sample
from ..sources import InputShard
from ..sources.tar import TarSource, decode_payload, split_member
from .formats import tfrecord_samples
from .layout import ShardPaths
from .location import Location
from .writer import spool_samples


def read_output_shard(paths: ShardPaths, location: Optional[Location] = None, skip: int = 0) -> Iterator[Sample]:
    """The samples of the published shard at ``paths`` (on ``location``: default the local folder), in written
    order, after the first ``skip`` (not decoded: tar headers, parquet row counts, file names tell where they
    end)."""
    if location is not None and not location.local:
        return _stored_samples(paths, location, skip)
    if paths.fmt == "tar":
        return spool_samples(paths.data, paths.shard_id, skip)
    if paths.fmt == "parquet":
        return _parquet_samples(paths.data, skip)
    if paths.fmt == "tfrecord":
        return itertools.islice(tfrecord_samples(paths.data), skip, None)
    if paths.fmt == "dummy":
        raise ValueError("output format 'dummy' keeps no samples to read back; use tar, parquet, files or tfrecord")
    return itertools.islice(_files_samples(paths.data, read_index(paths).get("keys")), skip, None)


def read_index(paths: ShardPaths, location: Optional[Location] = None) -> Dict[str, Any]:
    """The index of a published shard (``outputs_per_row``; ``keys`` in written order for the files format, whose
    directory does not keep it), or {} when it has none."""
    try:
        if location is not None and not location.local:
            index = location.read_json(paths.index)
        else:
            with open(paths.index) as f:
                index = json.load(f)
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _stored_samples(paths: ShardPaths, location: Location, skip: int = 0) -> Iterator[Sample]:
    """The samples of a shard on an object store, streamed from it (a files folder is copied locally first)."""
    url = location.display(paths.data)
    if paths.fmt == "tar":
        source = TarSource(url, storage_options=location.storage_options, allow_pickle=True)
        yield from source.read(InputShard(paths.shard_id, url), skip)
    elif paths.fmt == "parquet":
        with location.open(paths.data, "rb") as f:
            yield from _parquet_samples(f, skip, url)
    else:
        with tempfile.TemporaryDirectory() as local:
            location.fs.get(paths.data.rstrip("/") + "/", local, recursive=True)
            keys = read_index(paths, location).get("keys")
            for sample in itertools.islice(_files_samples(local, keys), skip, None):
                yield {**sample, "__url__": url}


def _parquet_samples(path, skip: int = 0, url: Optional[str] = None) -> Iterator[Sample]:
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
            sample: Sample = {"__key__": key, "__url__": url or path}
            for ext in payloads:
                value = columns[ext][i]
                if value is not None:
                    sample[ext] = decode_payload(ext, value.encode("utf-8") if isinstance(value, str) else value)
            yield sample


def _files_samples(directory: str, order: Optional[Sequence[str]] = None) -> Iterator[Sample]:
    """The samples of a files directory, in ``order`` of keys (the written one) when known, else sorted by key."""
    groups: Dict[str, List[str]] = {}
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
            key, ext = split_member(rel)
            if key is not None:
                groups.setdefault(key, []).append(ext)
    for key in (k for k in order if k in groups) if order is not None else sorted(groups):
        sample: Sample = {"__key__": key, "__url__": directory}
        for ext in sorted(groups[key]):
            with open(os.path.join(directory, f"{key}.{ext}"), "rb") as f:
                sample[ext] = decode_payload(ext, f.read())
        yield sample
