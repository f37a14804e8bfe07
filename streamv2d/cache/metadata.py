"""The metadata parquet of an output shard: one row per written sample (failure records included), describing
the final samples — their ``json`` after every cached stage — under one schema for every shard of a job, so
``pyarrow.parquet.read_table`` reads a whole output folder at once.

Columns: video2dataset's leading fields (``key``, ``url``, ``caption``, ``status``, ``error_message``), then the
fields the source and the stages declare (table columns keep their Arrow type; nested values are JSON text),
then any undeclared field a custom stage added, as JSON text. Declare a custom stage's fields
(``metadata_fields``) to have its columns in every shard, even one where no row produced them."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import temp_name

log = logging.getLogger("streamv2d")

#: Fields every shard has, in this order (video2dataset's names), and the detail of a failure.
LEADING: Dict[str, str] = {"key": "string", "url": "string", "caption": "string", "status": "string",
                           "error_message": "string", "error_detail": "string"}
_NAMED = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
FieldType = Union[str, pa.DataType]


def _primitive(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind))


def _arrow_type(kind: FieldType) -> pa.DataType:
    """The column type of a declared field: a named scalar, a primitive Arrow type, or (JSON) text."""
    if isinstance(kind, pa.DataType):
        return kind if _primitive(kind) else pa.string()
    if kind not in _NAMED and kind != "json":
        raise ValueError(f"metadata field type {kind!r}: expected one of {sorted(_NAMED)}, json or an Arrow type")
    return _NAMED.get(kind, pa.string())


def _is_json(kind: FieldType) -> bool:
    """Whether values of ``kind`` are stored as JSON text (nested Arrow types included)."""
    return kind == "json" or (isinstance(kind, pa.DataType) and not _primitive(kind))


class MetadataSchema:
    """The columns of a job's metadata parquets: :data:`LEADING`, then ``declared`` (name → type) in order."""

    def __init__(self, declared: Mapping[str, FieldType] = ()):
        self.fields: Dict[str, FieldType] = dict(LEADING)
        for name, kind in dict(declared).items():
            _arrow_type(kind)   # checked now, not when a shard is published
            self.fields.setdefault(name, kind)

    def table(self, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """``rows`` as a table of this schema; undeclared fields follow, sorted, as JSON text."""
        extra = sorted({k for r in rows for k in r} - set(self.fields))
        columns = {name: self._column(name, kind, [r.get(name) for r in rows]) for name, kind in self.fields.items()}
        columns.update({name: self._column(name, "json", [r.get(name) for r in rows]) for name in extra})
        return pa.table(columns)

    @staticmethod
    def _column(name: str, kind: FieldType, values: List[Any]) -> pa.Array:
        if _is_json(kind):
            return pa.array([None if v is None else json.dumps(v, default=str, sort_keys=True) for v in values],
                            pa.string())
        target = _arrow_type(kind)
        if target == pa.string():
            return pa.array([v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values],
                            pa.string())
        try:
            return pa.array(values, target)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:   # keep the schema: a value of another type is lost
            log.warning("metadata column %r: values that are not %s stored as null (%s)", name, target, exc)
            return pa.array([_or_none(v, target) for v in values], target)

    def write(self, path: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``rows`` to ``path`` under a temporary name, then rename."""
        tmp = temp_name(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)   # the hidden folder, for format parquet
        pq.write_table(self.table(rows), tmp)
        os.replace(tmp, path)


def _or_none(value: Any, target: pa.DataType) -> Any:
    try:
        pa.array([value], target)
        return value
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
