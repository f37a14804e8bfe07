"""URL tables (csv, tsv, json, jsonl, parquet, txt) cut into input shards of ``samples_per_shard`` rows.

Parquet is read in place: its footer gives row counts, so listing 10 M rows takes milliseconds, and shards
are streamed in batches from the row group holding their first row (never a whole row group in memory: with
pyarrow's default 1 Mi-row groups that costs seconds and ~0.5 GB per worker). Text formats have no row index,
so they are converted once, in a streaming pass, to an Arrow IPC file in a local cache; every worker then
memory-maps it and slices rows for free. Nothing ever turns the whole table into Python objects.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from bisect import bisect_right
from itertools import accumulate
from dataclasses import dataclass, field, replace
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from ..errors import SourceError
from ..sample import FAILED_TO_DOWNLOAD, Sample, key_widths, make_key, mark_failed
from .base import InputShard
from .paths import PathSpec, expand, file_identity, stream_digest

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "txt")
_COMPRESSED = (".gz", ".bz2", ".zst", ".xz")
_BATCH_ROWS = 65536


def detect_format(path: str) -> str:
    """The table format from the file name (``.csv.gz`` is csv); raises SourceError when unknown."""
    name = path.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = name.rsplit(".", 1)[-1] if "." in os.path.basename(name) else ""
    if ext == "ndjson":
        ext = "jsonl"
    if ext not in FORMATS:
        raise SourceError(f"{path}: unknown table format {ext!r}; expected one of {', '.join(FORMATS)} "
                          "(or pass input_format=)")
    return ext


def default_table_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "streamv2d", "tables")


@dataclass(frozen=True)
class TableOptions:
    """How a URL table is read: the one list of the keywords that ``TableSource``, ``VideoDataset`` and the YAML
    ``reading`` section accept, with their defaults and checks. ``save_additional_columns`` are copied into each
    sample's json; text tables are converted to Arrow once in ``table_cache`` (default ~/.cache/streamv2d/tables)."""

    url_col: str = "url"
    caption_col: Optional[str] = None
    clip_col: Optional[str] = None
    save_additional_columns: Sequence[str] = ()
    samples_per_shard: int = 1000
    input_format: Optional[str] = None
    storage_options: Optional[Dict[str, Any]] = field(default=None, hash=False)
    table_cache: Optional[str] = None

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise SourceError(f"samples_per_shard must be at least 1, got {self.samples_per_shard}")
        if self.input_format is not None and self.input_format not in FORMATS:
            raise SourceError(f"unknown input_format {self.input_format!r}; expected one of {', '.join(FORMATS)}")
        extra = self.save_additional_columns or ()
        object.__setattr__(self, "save_additional_columns", (extra,) if isinstance(extra, str) else tuple(extra))
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    @property
    def columns(self) -> List[str]:
        """The columns a sample is made from, each once, url first."""
        cols = [self.url_col] + [c for c in (self.caption_col, self.clip_col) if c] + list(self.save_additional_columns)
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class _TableFile:
    """One table file, ready for row-range reads: the file itself (parquet) or its Arrow IPC copy."""

    path: str          # the user's file, for messages and sample json
    readable: str      # parquet URL or local .arrow path
    kind: str          # "parquet" or "arrow"
    num_rows: int
    first_shard: int
    content: str                         # digest of what the file holds (see ``TableSource.fingerprint``)
    types: Dict[str, pa.DataType]        # the Arrow type of each column read
    group_starts: Tuple[int, ...] = ()   # parquet: the first row of each row group
    fmt: str = "parquet"                 # the format it was read as (a text table's Arrow copy is made from it)


@dataclass
class _ParquetCursor:
    """An open parquet file streamed forward in batches: ``batch`` holds rows ``[batch_start, end)``.
    Owned by the process that opened it (a forked worker opens its own)."""

    pid: int
    path: str
    file: IO[bytes]
    batches: Iterator[pa.RecordBatch]
    batch_start: int
    batch: Optional[pa.RecordBatch] = field(default=None)

    @property
    def end(self) -> int:
        return self.batch_start + (self.batch.num_rows if self.batch is not None else 0)

    def advance(self) -> None:
        self.batch_start = self.end
        self.batch = next(self.batches)


class TableSource:
    """Rows of one or more URL tables, cut into input shards with stable ids and keys."""

    needs_fetch = True

    def __init__(self, spec: PathSpec, options: Optional[TableOptions] = None, **keywords: Any):
        """``options``, with any of its fields given as keywords on top (``TableSource(path, url_col="link")``)."""
        self.options = replace(options or TableOptions(), **keywords)
        samples_per_shard, self.columns = self.options.samples_per_shard, self.options.columns
        self.storage_options = self.options.storage_options
        self.table_cache = self.options.table_cache or default_table_cache()
        self.paths = expand(spec, self.storage_options)
        self._files: List[_TableFile] = []
        first_shard = 0
        for path in self.paths:
            fmt = self.options.input_format or detect_format(path)
            table_file = self._open(path, fmt, first_shard)
            self._files.append(table_file)
            first_shard += -(-table_file.num_rows // samples_per_shard)
        if first_shard == 0:
            raise SourceError(f"empty source: {', '.join(self.paths)} holds no rows")
        self._shards = [
            InputShard(f.first_shard + i, f.path, start, min(start + samples_per_shard, f.num_rows))
            for f in self._files
            for i, start in enumerate(range(0, f.num_rows, samples_per_shard))
        ]
        self._widths = key_widths(len(self._shards), samples_per_shard)
        self._by_path: Dict[str, _TableFile] = {f.path: f for f in self._files}
        self._cursor: Optional[_ParquetCursor] = None

    # -- listing -----------------------------------------------------------------------------------------
    def shards(self) -> Sequence[InputShard]:
        return self._shards

    def fingerprint(self) -> str:
        """What the shards hold: each file's content (a parquet's footer; a text table's SHA-256, taken
        when it is converted) and how rows become samples — never the path or modification time, so a touched,
        copied or remounted table finds its cache again."""
        o = self.options
        document = [[f.content for f in self._files], self.columns, o.url_col, o.samples_per_shard, o.caption_col,
                    o.clip_col]
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]

    def metadata_fields(self) -> Dict[str, Any]:
        """The json fields rows carry, with the Arrow type of the column each comes from (for metadata parquets)."""
        o, types = self.options, self._files[0].types
        fields = {"url": types.get(o.url_col, pa.string())}
        if o.caption_col:
            fields["caption"] = types.get(o.caption_col, pa.string())
        fields.update({c: types.get(c, pa.string()) for c in o.save_additional_columns})
        if o.clip_col:
            fields["clips"] = "json"
        return fields

    def _check_columns(self, path: str, names: Sequence[str]) -> None:
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise SourceError(f"{path}: column(s) {', '.join(map(repr, missing))} not found; "
                              f"the table has {', '.join(map(repr, names)) or 'no columns'}")

    def _open(self, path: str, fmt: str, first_shard: int) -> _TableFile:
        try:
            if fmt == "parquet":
                with fsspec.open(path, "rb", **self.storage_options) as f:
                    parquet = pq.ParquetFile(f)
                    meta, schema = parquet.metadata, parquet.schema_arrow   # top-level names, not leaves
                self._check_columns(path, schema.names)
                sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                starts = tuple(accumulate(sizes, initial=0))[:-1]
                return _TableFile(path, path, "parquet", meta.num_rows, first_shard,
                                  _footer_digest(meta), _types(schema), starts)
            arrow_path, content = self._convert(path, fmt)
            with pa.memory_map(arrow_path) as mm:
                table = pa.ipc.open_file(mm).read_all()
            return _TableFile(path, arrow_path, "arrow", table.num_rows, first_shard, content, _types(table.schema),
                              fmt=fmt)
        except SourceError:
            raise
        except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: cannot read as {fmt}: {exc}") from exc

    # -- text formats → Arrow IPC --------------------------------------------------------------------------
    def _convert(self, path: str, fmt: str) -> Tuple[str, str]:
        """Stream ``path`` into ``<table_cache>/<digest>.arrow`` once (later calls reuse the file), with the
        SHA-256 of ``path``'s content beside it; returns the Arrow file's path and that SHA-256."""
        digest = hashlib.sha256(
            json.dumps([path, fmt, self.columns, file_identity([path], self.storage_options), "typed"]).encode()
        ).hexdigest()[:24]
        target = os.path.join(self.table_cache, f"{digest}.arrow")
        content_file = target + ".sha256"
        if not os.path.exists(content_file) or not os.path.exists(target):
            os.makedirs(self.table_cache, exist_ok=True)
            self._convert_to(path, fmt, target, digest)
            _write_atomically(content_file, stream_digest(path, self.storage_options))
        with open(content_file) as f:
            return target, f.read().strip()

    def _convert_to(self, path: str, fmt: str, target: str, digest: str) -> None:
        """Write ``path`` as Arrow IPC to ``target``, through a temporary file of the same folder."""
        fd, tmp = tempfile.mkstemp(prefix=f"{digest}.", suffix=".tmp", dir=self.table_cache)
        os.close(fd)
        try:
            try:
                self._write_ipc(path, fmt, tmp)
            except pa.ArrowInvalid:
                if fmt != "jsonl":
                    raise
                self._write_ipc(path, "jsonl-mixed", tmp)   # types change between lines: parse them ourselves
            if fmt in ("csv", "tsv"):
                _type_columns(tmp, self.options.save_additional_columns)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _write_ipc(self, path: str, fmt: str, tmp: str) -> None:
        with fsspec.open(path, "rb", compression="infer", **self.storage_options) as f:
            batches = self._text_batches(f, path, fmt)
            first = next(batches, None)
            schema = first.schema if first is not None else pa.schema([(c, pa.string()) for c in self.columns])
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                if first is not None:
                    writer.write_batch(first)
                for batch in batches:
                    writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)

    def _text_batches(self, f, path: str, fmt: str) -> Iterator[pa.RecordBatch]:
        if fmt == "jsonl-mixed":
            yield from _jsonl_string_batches(f, path, self.columns, self._check_columns)
            return
        if fmt == "txt":
            yield from _txt_batches(f, self.options.url_col)
            return
        if fmt == "json":
            yield from _json_array_batches(f, path, self.columns, self._check_columns)
            return
        if fmt == "jsonl":
            reader = pjson.open_json(f, read_options=pjson.ReadOptions(block_size=1 << 22))
        else:
            strings = {c: pa.string() for c in self.columns}   # types guessed from one block break on later ones
            reader = pcsv.open_csv(
                f,
                read_options=pcsv.ReadOptions(block_size=1 << 22),
                parse_options=pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(column_types=strings),
            )
        self._check_columns(path, reader.schema.names)
        for batch in reader:
            yield batch.select(self.columns)

    # -- reading one shard ------------------------------------------------------------------------------------
    def read(self, shard: InputShard, start: int = 0) -> Iterator[Sample]:
        """The rows of ``shard`` from its ``start``-th on, as samples."""
        table = self._rows(shard)
        o = self.options
        columns = {name: table.column(name).to_pylist() for name in self.columns}
        for i in range(start, table.num_rows):
            row = {name: values[i] for name, values in columns.items()}
            key = make_key(shard.id, i, self._widths)
            meta = {"url": row[o.url_col], "key": key}
            if o.caption_col:
                meta["caption"] = row[o.caption_col]
            for col in o.save_additional_columns:
                meta[col] = row[col]
            sample: Sample = {"__key__": key, "__url__": shard.path, "json": meta}   # as webdataset names the shard
            if o.caption_col and meta["caption"] is not None:
                sample["txt"] = str(meta["caption"])
            if o.clip_col:
                try:
                    meta["clips"] = _parse_clips(row[o.clip_col])
                except (ValueError, TypeError) as exc:
                    sample = mark_failed(sample, FAILED_TO_DOWNLOAD, f"bad {o.clip_col!r} cell: {exc}")
            yield sample

    def _rows(self, shard: InputShard) -> pa.Table:
        table_file = self._by_path[shard.path]
        if table_file.kind == "arrow":
            mm = pa.memory_map(self._arrow_copy(table_file))
            return pa.ipc.open_file(mm).read_all().slice(shard.start, shard.num_rows)
        return self._parquet_rows(table_file, shard.start, shard.stop)

    def _arrow_copy(self, table_file: _TableFile) -> str:
        """The local Arrow copy of a text table, made again where it is missing — a task on another node than
        the one that listed the job — and checked to hold what the listing saw (its shards and keys depend on
        it)."""
        if not os.path.exists(table_file.readable):
            readable, content = self._convert(table_file.path, table_file.fmt)
            if content != table_file.content:
                raise SourceError(f"{table_file.path}: its content changed since the job was listed; start the job "
                                  "again to list it anew")
            table_file = self._by_path[table_file.path] = replace(table_file, readable=readable)
            self._files = [table_file if f.path == table_file.path else f for f in self._files]
        return table_file.readable

    def _parquet_rows(self, table_file: _TableFile, start: int, stop: int) -> pa.Table:
        """Rows ``[start, stop)`` from a forward-streaming cursor. A consumer reads its shards in increasing
        order, so each row is decoded at most once per pass; a range behind the cursor, or in a later row
        group than the cursor has reached, reopens the stream at the row group holding ``start``."""
        starts = table_file.group_starts
        group = bisect_right(starts, start) - 1
        cursor = self._cursor
        if (cursor is None or cursor.pid != os.getpid() or cursor.path != table_file.readable
                or start < cursor.batch_start or cursor.end < starts[group]):
            cursor = self._open_cursor(table_file, group)
        pieces, row = [], start
        while row < stop:
            if row >= cursor.end:
                cursor.advance()
                continue
            take = min(stop, cursor.end) - row
            pieces.append(cursor.batch.slice(row - cursor.batch_start, take))
            row += take
        return pa.Table.from_batches(pieces)

    def _open_cursor(self, table_file: _TableFile, group: int) -> _ParquetCursor:
        """A cursor at the first row of ``group``; it replaces (and closes) the previous one."""
        if self._cursor is not None and self._cursor.pid == os.getpid():
            self._cursor.file.close()
        f = fsspec.open(table_file.readable, "rb", **self.storage_options).open()
        groups = range(group, len(table_file.group_starts))
        batches = pq.ParquetFile(f).iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=self.columns)
        self._cursor = _ParquetCursor(os.getpid(), table_file.readable, f, batches, table_file.group_starts[group])
        return self._cursor

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cursor"] = None
        return state


def _type_columns(path: str, columns: Sequence[str]) -> None:
    """Give the extra columns of a csv/tsv conversion at ``path`` the type their every value has — int64,
    float64 or bool, else text; empty cells are missing — as pandas reads them for video2dataset, so a
    ``videoid`` column reaches json as numbers. Read as text first: one block's guess breaks on a later one."""
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
        typed = table
        for name in columns:
            column = table.column(name)
            if not pa.types.is_string(column.type):
                continue
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
            for kind in (pa.int64(), pa.float64(), pa.bool_()):
                try:
                    typed = typed.set_column(typed.schema.get_field_index(name), name, pc.cast(column, kind))
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
        if typed is not table:
            with pa.OSFile(path + ".typed", "wb") as sink, pa.ipc.new_file(sink, typed.schema) as writer:
                writer.write_table(typed, max_chunksize=_BATCH_ROWS)
    if os.path.exists(path + ".typed"):
        os.replace(path + ".typed", path)


def _footer_digest(meta: pq.FileMetaData) -> str:
    """A parquet file's content identity: its footer (schema, row groups with their offsets, sizes and column
    statistics, writer), read with the file's metadata anyway."""
    return hashlib.sha256(json.dumps(meta.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _types(schema: pa.Schema) -> Dict[str, pa.DataType]:
    return {name: schema.field(name).type for name in schema.names}


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _txt_batches(f, url_col: str) -> Iterator[pa.RecordBatch]:
    """One URL a line, blank lines skipped; a UTF-8 byte order mark (Windows editors write one) is not part of
    the first URL. The csv, tsv, json and jsonl readers (pyarrow's, Python's json) drop it themselves."""
    urls: List[str] = []
    for number, raw in enumerate(f):
        line = raw.decode("utf-8-sig" if number == 0 else "utf-8").strip()
        if line:
            urls.append(line)
        if len(urls) >= _BATCH_ROWS:
            yield pa.record_batch([pa.array(urls, pa.string())], names=[url_col])
            urls = []
    if urls:
        yield pa.record_batch([pa.array(urls, pa.string())], names=[url_col])


def _json_array_batches(f, path: str, columns: List[str], check) -> Iterator[pa.RecordBatch]:
    """A JSON array of objects (pandas ``orient='records'``); it has no streaming form, so it is parsed whole."""
    records = json.load(f)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SourceError(f"{path}: a .json table must be an array of objects; use .jsonl for one object a line")
    if records:
        check(path, list(records[0].keys()))
    rows = [{c: r.get(c) for c in columns} for r in records]
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):   # a column changes type: keep every value, as text
        table = pa.Table.from_pylist([{c: _as_text(v) for c, v in row.items()} for row in rows],
                                     schema=pa.schema([(c, pa.string()) for c in columns]))
    yield from table.to_batches(_BATCH_ROWS)


def _as_text(value: Any) -> Optional[str]:
    """A cell as text for a column whose type changes between rows: strings as is, the rest as JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _jsonl_string_batches(f, path: str, columns: List[str], check) -> Iterator[pa.RecordBatch]:
    """JSON lines whose values change type from line to line: every selected column as text (non-strings
    JSON-encoded), which is what the arrow reader cannot do."""
    rows: List[dict] = []
    checked = False
    for number, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise SourceError(f"{path}: line {number} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise SourceError(f"{path}: line {number} is not a JSON object")
        if not checked:
            check(path, list(record))
            checked = True
        rows.append({c: _as_text(record.get(c)) for c in columns})
        if len(rows) >= _BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in columns]))
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in columns]))


def _parse_clips(value) -> Optional[list]:
    """A clip cell: a list of ``[start, end]`` pairs (seconds), possibly JSON text in csv files."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    return [[_clip_time(s), _clip_time(e)] for s, e in value]


def _clip_time(value) -> Any:
    """Seconds as a float, or an ``HH:MM:SS.fff`` string kept for Clip to read (video2dataset's clip format)."""
    return value if isinstance(value, str) and ":" in value else float(value)
