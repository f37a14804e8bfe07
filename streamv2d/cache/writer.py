"""Output shard files: the append-only tar spool a shard is written to, its conversion to a WebDataset tar,
a parquet file or a files directory for publication, and ``_stats.json``."""
from __future__ import annotations

import glob
import json
import os
import shutil
import tarfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq

from .. import profile
from ..batching import batched
from ..sample import Sample
from ..sources import InputShard
from ..sources.tar import TarSource, split_member
from .formats import WRITERS
from .layout import ShardPaths, temp_name
from .location import Location

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
#: Fixed member mtime: a resumed shard and an uninterrupted one are byte-identical.
MEMBER_MTIME = 0
#: Samples per parquet row group when converting a spool.
PARQUET_BATCH = 64


def encode_value(ext: str, value: Any) -> bytes:
    """One payload as bytes, the way webdataset encodes it: bytes as is, str as UTF-8, dict/list as JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str).encode("utf-8")   # dates and the like from extra columns
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode("utf-8")
    raise TypeError(f"cannot cache payload {ext!r} of type {type(value).__name__}: the cache stores encoded "
                    "media, text and json only; decode to tensors after the cache, not in a cached subsampler")


def encode_sample(sample: Sample) -> List[Tuple[str, bytes]]:
    """``(extension, bytes)`` pairs of ``sample`` in sorted order; ``__*`` keys are skipped."""
    return [(ext, encode_value(ext, sample[ext])) for ext in sorted(sample) if not ext.startswith("__")]


#: Longest part of a key, in bytes: with its ``.ext`` a file name stays within the 255 bytes file systems allow.
MAX_KEY_PART_BYTES = 200
#: Longest extension, in bytes (the rest of those 255).
MAX_EXT_BYTES = 255 - MAX_KEY_PART_BYTES - 1


def _check_key(key: str, exts: Sequence[str] = ()) -> str:
    """``key`` if it and its extensions name members that every output format can hold (the ``files`` format
    makes each a file); ValueError naming the rule broken otherwise, so the sample fails before it is spooled."""
    problem = _member_name_problem(key, exts)
    if problem:
        raise ValueError(f"sample key {key!r} cannot name output members: {problem}")
    return key


def _member_name_problem(key: str, exts: Sequence[str]) -> Optional[str]:
    """What makes ``key.ext`` unusable as a tar member and a file, or None. No dot anywhere in the key:
    webdataset groups by a name's first dot, and a dotted directory could be another member's file
    (``a.mp4/x`` beside ``a.mp4``); no empty part (absolute, ``//``); parts and extensions short enough."""
    try:
        parts = [part.encode("utf-8") for part in key.split("/")]
        ext_sizes = [len(ext.encode("utf-8")) for ext in exts]
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if "\0" in key or any("\0" in ext for ext in exts):
        return "a NUL character"
    if not all(parts):
        return "an empty part (empty, absolute or '//')"
    if "." in key:
        return "a '.' (webdataset splits member names at the first one)"
    longest = max(map(len, parts))
    if longest > MAX_KEY_PART_BYTES:
        return f"a part of {longest} bytes, over {MAX_KEY_PART_BYTES}"
    bad = [ext for ext, size in zip(exts, ext_sizes) if "/" in ext or size > MAX_EXT_BYTES]
    if bad:
        return f"extension {bad[0]!r} is not one file name of at most {MAX_EXT_BYTES} bytes"
    return None


class TarSpool:
    """An append-only, unterminated tar of one shard's samples; ``offset`` after each sample is a safe
    resume point (truncate there and append again)."""

    def __init__(self, path: str, offset: int = 0):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = open(path, "r+b" if offset else "wb")   # resuming needs the spool: no silent zero-fill
        self._file.truncate(offset)
        self._file.seek(offset)

    @property
    def offset(self) -> int:
        return self._file.tell()

    def write(self, sample: Sample) -> None:
        """Append one sample's members; all of them, or (on a crash) a tail past the last safe offset."""
        with profile.stage("tar"):
            self._append(sample)

    def _append(self, sample: Sample) -> None:
        members = encode_sample(sample)
        key = _check_key(sample["__key__"], [ext for ext, _ in members])
        chunks = []
        for ext, data in members:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), MEMBER_MTIME, 0o444
            chunks += [info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), data, _padding(len(data))]
        self._file.write(b"".join(chunks))

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> None:
        """Terminate the archive the way tarfile does (two zero blocks, padded to a record), sync, close."""
        end = self.offset + 2 * _BLOCK
        self._file.write(bytes(2 * _BLOCK + (-end % _RECORD)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.close()

    def close(self) -> None:
        self._file.close()


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def spool_samples(path: str, shard_id: int, skip: int = 0) -> Iterator[Sample]:
    """The samples of a spool or published tar after the first ``skip`` (passed over by their headers), decoded
    like :class:`TarSource` (json → dict, txt → str); pickle members are kept: untrusted input is refused as it
    enters, these were written by the subsamplers."""
    if os.path.getsize(path) == 0:
        return iter(())
    return TarSource(path, allow_pickle=True).read(InputShard(shard_id, path), skip)


def spool_keys(path: str) -> List[str]:
    """The keys of a spool's samples in written order, from the member headers alone (payloads are not read)."""
    keys: List[str] = []
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            key, _ = split_member(member.name)
            if key is not None and (not keys or keys[-1] != key):
                keys.append(key)
    return keys


def remove_stale_temps(paths: ShardPaths) -> None:
    """Delete the staged files of this shard left by a process killed while publishing it (beside the spool),
    and ``<final name>.tmp-…`` files of a local folder's renames."""
    spool_folder = os.path.dirname(paths.spool)
    finals = (paths.data, paths.meta, paths.stats)
    patterns = [os.path.join(spool_folder, glob.escape(os.path.basename(f)) + ".tmp-*") for f in finals]
    if "://" not in paths.root and os.path.isdir(paths.root):
        patterns += [glob.escape(f) + ".tmp-*" for f in finals]
    for pattern in patterns:
        for stale in glob.glob(pattern):
            shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)


def publish_data(spool: str, paths: ShardPaths, location: Optional[Location] = None,
                 metadata: Optional[str] = None) -> None:
    """Turn a finished spool into ``paths.data`` in ``paths.fmt`` at ``location`` (default: the local folder
    ``paths.root``), atomically; the spool is consumed. ``metadata``: the shard's metadata parquet, which the
    ``parquet`` format folds into its data file (default: ``paths.meta``)."""
    (location or Location(paths.root)).publish(stage_data(spool, paths, metadata), paths.data)


def stage_data(spool: str, paths: ShardPaths, metadata: Optional[str] = None) -> str:
    """The local file (or folder) that becomes ``paths.data``: the finished spool itself for tar, else the spool
    converted beside it to parquet, tfrecord, a files folder or nothing (dummy); the spool is then deleted."""
    if paths.fmt == "tar":
        return spool
    staged = paths.staged(paths.data)
    if paths.fmt == "parquet":
        _spool_to_parquet(spool, paths.shard_id, staged, metadata or paths.meta)
    elif paths.fmt in WRITERS:
        WRITERS[paths.fmt](spool_samples(spool, paths.shard_id), staged)
    else:
        _spool_to_files(spool, paths.shard_id, staged)
    os.remove(spool)
    return staged


def _spool_to_parquet(spool: str, shard_id: int, target: str, metadata: str) -> None:
    """video2dataset's parquet layout: one row per sample, the metadata columns (from the ``metadata`` parquet,
    one row per written sample in the same order) then ``__key__``, ``txt``, each media member as a binary
    column named by its extension, and ``json`` (the whole metadata as JSON text, read back exactly)."""
    with tarfile.open(spool, "r:") as tar:   # headers only: the column set
        exts = sorted({m.name.split(".", 1)[1] for m in tar if "." in m.name} - {"json"})
    meta = pq.read_table(metadata) if os.path.exists(metadata) else None
    meta_fields = [f for f in meta.schema if f.name not in exts + ["__key__", "json"]] if meta is not None else []
    schema = pa.schema(meta_fields + [("__key__", pa.string())]
                       + [(e, pa.string() if e == "txt" else pa.binary()) for e in exts] + [("json", pa.string())])
    start = 0
    with pq.ParquetWriter(target, schema) as out:
        for batch in batched(spool_samples(spool, shard_id), PARQUET_BATCH, collate=list):
            columns = {f.name: meta.column(f.name).slice(start, len(batch)) for f in meta_fields}
            columns["__key__"] = [s["__key__"] for s in batch]
            for ext in exts + ["json"]:
                columns[ext] = [_parquet_cell(ext, s.get(ext)) for s in batch]
            out.write_table(pa.table(columns, schema=schema))
            start += len(batch)


def _parquet_cell(ext: str, value: Any) -> Any:
    if value is None:
        return None
    data = encode_value(ext, value)
    return data.decode("utf-8") if ext in ("json", "txt") else data


def _spool_to_files(spool: str, shard_id: int, target: str) -> None:
    os.makedirs(target)
    for sample in spool_samples(spool, shard_id):
        for ext, data in encode_sample(sample):
            path = os.path.join(target, f"{sample['__key__']}.{ext}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)


def write_json(path: str, document: Dict[str, Any]) -> None:
    """Write ``document`` under a temporary name, then rename it to ``path``."""
    tmp = temp_name(path)
    try:
        with open(tmp, "w") as f:
            json.dump(document, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:   # a full disk, a kill: never leave the temporary behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def optional_size(path: str) -> Optional[int]:
    """Size of a file, or None when it does not exist."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None
