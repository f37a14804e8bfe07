"""Output formats beyond tar, parquet and files, for video2dataset's readers: ``tfrecord`` (one
``tf.train.Example`` a sample, in TFRecord framing, written here without TensorFlow) and ``dummy`` (writes no
samples: the stats and metadata only, for benchmarks).

TFRecord framing, per record: ``uint64 length``, ``uint32 masked_crc32c(length)``, ``data``,
``uint32 masked_crc32c(data)`` (little-endian; mask: rotate right by 15 and add 0xa282ead8). The Example holds,
as video2dataset's writer does, ``key``, each media member under its extension, ``txt``, and every metadata
field (ints as int64, floats as float, lists of them likewise, the rest as bytes; nested values as JSON text),
plus ``json``: the whole metadata as JSON text, so nothing is lost.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Callable, Dict, Iterator, List, Tuple

from ..sample import Sample

_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def _crc32c_python(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_function() -> Callable[[bytes], int]:
    """The ``crc32c`` package's (hardware) CRC-32C when installed (extra ``tfrecord``), else pure Python."""
    try:
        import crc32c
    except ImportError:
        return _crc32c_python
    return crc32c.crc32c


crc32c = _crc32c_function()


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    """One TFRecord record around ``data``."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def read_tfrecords(path: str) -> Iterator[bytes]:
    """The records of a TFRecord file, each checked against both its CRCs (ValueError when one is wrong)."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12 or struct.unpack("<I", head[8:])[0] != masked_crc(head[:8]):
                raise ValueError(f"{path}: corrupt TFRecord length")
            data = f.read(struct.unpack("<Q", head[:8])[0])
            tail = f.read(4)
            if len(tail) < 4 or struct.unpack("<I", tail)[0] != masked_crc(data):
                raise ValueError(f"{path}: corrupt TFRecord data")
            yield data


# -- protobuf wire format of tf.train.Example ---------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1   # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: Any) -> bytes:
    """A ``tf.train.Feature``: bytes_list = 1, float_list = 2, int64_list = 3 (numbers packed)."""
    values = value if isinstance(value, list) and value and all(_scalar(v) for v in value) else [value]
    if all(isinstance(v, (bool, int)) for v in values):
        return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))
    if all(isinstance(v, (bool, int, float)) for v in values):
        return _field(2, _field(1, b"".join(struct.pack("<f", float(v)) for v in values)))
    return _field(1, b"".join(_field(1, _as_bytes(v)) for v in values))


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, bytes))


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, default=str).encode("utf-8")


def example_bytes(features: Dict[str, Any]) -> bytes:
    """A serialized ``tf.train.Example`` (Example.features = 1; Features.feature = 1, a map entry of key = 1
    and value = 2), keys in sorted order."""
    entries = b"".join(_field(1, _field(1, key.encode("utf-8")) + _field(2, _feature(value)))
                       for key, value in sorted(features.items()))
    return _field(1, entries)


def sample_features(sample: Sample) -> Dict[str, Any]:
    """A sample's Example features, as video2dataset's TFRecordSampleWriter names them."""
    meta = dict(sample.get("json") or {})
    features: Dict[str, Any] = {k: v for k, v in meta.items() if v is not None}
    features.update({ext: value for ext, value in sample.items() if not ext.startswith("__") and ext != "json"})
    features["key"] = sample["__key__"]
    features["json"] = json.dumps(meta, default=str)
    return features


def write_tfrecord(samples: Iterator[Sample], target: str) -> None:
    """Write ``samples`` as a TFRecord file at ``target``."""
    with open(target, "wb") as f:
        for sample in samples:
            f.write(tfrecord_frame(example_bytes(sample_features(sample))))
        f.flush()
        os.fsync(f.fileno())


def write_dummy(samples: Iterator[Sample], target: str) -> None:
    """video2dataset's ``dummy``: no samples are kept; an empty marker says the shard's data is done."""
    for _ in samples:
        pass
    os.makedirs(os.path.dirname(target), exist_ok=True)
    open(target, "wb").close()


WRITERS: Dict[str, Callable[[Iterator[Sample], str], None]] = {"tfrecord": write_tfrecord, "dummy": write_dummy}


def _parse_fields(data: bytes) -> Iterator[Tuple[int, bytes]]:
    """(field number, payload) of the length-delimited fields of a message (the only kind an Example has)."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        size, i = _read_varint(data, i)
        yield key >> 3, data[i:i + size]
        i += size


def _read_varint(data: bytes, i: int) -> Tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def tfrecord_samples(path: str) -> Iterator[Sample]:
    """The samples of a TFRecord shard written here: key, media as bytes, txt as text, json from ``json``."""
    for record in read_tfrecords(path):
        sample: Sample = {"__url__": path}
        for _, entries in _parse_fields(record):
            for _, entry in _parse_fields(entries):
                parts = dict(_parse_fields(entry))
                name = parts[1].decode("utf-8")
                kind, body = next(_parse_fields(parts[2]))
                if kind != 1:
                    continue   # numbers are metadata fields, all in json
                values = [payload for _, payload in _parse_fields(body)]
                sample[name] = values[0] if len(values) == 1 else values
        sample["__key__"] = sample.pop("key").decode("utf-8")
        meta = json.loads(sample.pop("json").decode("utf-8"))
        for field in meta:   # metadata fields also written as features: json holds them
            if field in sample and field not in ("txt",):
                sample.pop(field)
        if "txt" in sample:
            sample["txt"] = sample["txt"].decode("utf-8")
        sample["json"] = meta
        yield sample
