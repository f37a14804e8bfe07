"""URL-table source: every format, local and fsspec, stable shard ids and keys, extra and clip columns."""
import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamv2d.errors import SourceError
from streamv2d.sources import TableSource, open_source
from streamv2d.sources.table import TableOptions
from streamv2d.sources.tar import TarSource
from conftest import write_csv

ROWS = [{"url": f"http://127.0.0.1:9/v{i}.mp4", "caption": f"cap {i}", "vid": i,
         "clips": json.dumps([[0, 1], [1.5, 2]])} for i in range(23)]


def write_table(path, fmt, rows=ROWS):
    if fmt in ("csv", "tsv"):
        write_csv(str(path), rows, delimiter="\t" if fmt == "tsv" else ",")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=7)
    elif fmt == "txt":
        path.write_text("".join(r["url"] + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet", "txt"])
def test_each_format_yields_every_row_once(tmp_path, fmt):
    table = write_table(tmp_path / f"urls.{fmt}", fmt)
    extra = {} if fmt == "txt" else {"caption_col": "caption", "save_additional_columns": ["vid"]}
    src = TableSource(table, samples_per_shard=5, table_cache=str(tmp_path / "cache"), **extra)
    assert [s.num_rows for s in src.shards()] == [5, 5, 5, 5, 3]
    rows = [r for shard in src.shards() for r in src.read(shard)]
    assert [r["json"]["url"] for r in rows] == [r["url"] for r in ROWS]
    assert rows[7]["__key__"] == "000012" and rows[7]["json"]["key"] == "000012"
    if fmt != "txt":
        assert rows[3]["txt"] == "cap 3" and rows[3]["json"]["caption"] == "cap 3"
        assert str(rows[3]["json"]["vid"]) == "3"


def test_clip_column_parsed_from_json_text(tmp_path):
    table = write_table(tmp_path / "urls.csv", "csv")
    src = TableSource(table, clip_col="clips", samples_per_shard=100, table_cache=str(tmp_path / "c"))
    row = next(src.read(src.shards()[0]))
    assert row["json"]["clips"] == [[0.0, 1.0], [1.5, 2.0]]


def test_bad_clip_cell_is_a_counted_failure_not_a_crash(tmp_path):
    rows = [dict(ROWS[0], clips="[[0, oops"), ROWS[1]]
    table = write_table(tmp_path / "urls.csv", "csv", rows)
    src = TableSource(table, clip_col="clips", table_cache=str(tmp_path / "c"))
    first, second = list(src.read(src.shards()[0]))
    assert first["json"]["status"] == "failed_to_download" and "clips" in first["json"]["error_message"]
    assert second["json"].get("status") is None


def test_several_files_glob_and_list_number_shards_continuously(tmp_path):
    for i in range(3):
        write_table(tmp_path / f"part{i}.parquet", "parquet", ROWS[:8])
    by_glob = TableSource(str(tmp_path / "part*.parquet"), samples_per_shard=5)
    by_list = TableSource([str(tmp_path / f"part{i}.parquet") for i in range(3)], samples_per_shard=5)
    assert [(s.id, s.path, s.start, s.stop) for s in by_glob.shards()] == \
           [(s.id, s.path, s.start, s.stop) for s in by_list.shards()]
    assert [s.id for s in by_glob.shards()] == list(range(6))
    assert by_glob.fingerprint() == by_list.fingerprint()


def test_same_input_gives_same_shards_and_keys_on_another_machine(tmp_path):
    table = write_table(tmp_path / "urls.jsonl", "jsonl")
    a = TableSource(table, samples_per_shard=4, table_cache=str(tmp_path / "cache_a"))
    b = TableSource(table, samples_per_shard=4, table_cache=str(tmp_path / "cache_b"))
    keys = lambda src: [r["__key__"] for s in src.shards() for r in src.read(s)]  # noqa: E731
    assert keys(a) == keys(b)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != TableSource(table, samples_per_shard=5, table_cache=str(tmp_path / "c")).fingerprint()


def test_fsspec_memory_filesystem(tmp_path):
    with fsspec.open("memory://tables/urls.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist(ROWS), f)
    src = TableSource("memory://tables/*.parquet", samples_per_shard=10)
    assert len(src.shards()) == 3
    assert next(src.read(src.shards()[2]))["json"]["url"] == ROWS[20]["url"]


def test_http_table(tmp_path, server, corpus_dir):
    write_table(__import__("pathlib").Path(corpus_dir) / "remote.parquet", "parquet")
    src = TableSource(server.url("files/remote.parquet"), samples_per_shard=10)
    assert sum(s.num_rows for s in src.shards()) == len(ROWS)
    assert [r["json"]["url"] for r in src.read(src.shards()[1])][0] == ROWS[10]["url"]


def test_large_row_groups_read_only_overlapping_groups(tmp_path):
    rows = [{"url": f"u{i}"} for i in range(1000)]
    path = str(tmp_path / "big.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=300)
    src = TableSource(path, samples_per_shard=250)
    assert [r["json"]["url"] for r in src.read(src.shards()[1])] == [f"u{i}" for i in range(250, 500)]
    assert [r["json"]["url"] for r in src.read(src.shards()[3])][-1] == "u999"


def test_open_source_dispatch(tmp_path):
    table = write_table(tmp_path / "urls.csv", "csv")
    assert isinstance(open_source(table), TableSource)
    for i in range(2):
        (tmp_path / f"x{i:05d}.tar").write_bytes(b"")
    assert isinstance(open_source(str(tmp_path / "x{00000..00001}.tar")), TarSource)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_column_types_that_change_after_the_first_block(tmp_path, fmt):
    rows = [{"url": f"u{i}", "videoid": i} for i in range(300_000)] + [{"url": "last", "videoid": "abc123"}]
    table = write_table(tmp_path / f"mixed.{fmt}", fmt, rows)
    src = TableSource(table, save_additional_columns=["videoid"], samples_per_shard=100_000,
                      table_cache=str(tmp_path / "c"))
    last = list(src.read(src.shards()[-1]))[-1]["json"]
    assert last["url"] == "last" and last["videoid"] == "abc123"
    assert str(next(src.read(src.shards()[0]))["json"]["videoid"]) == "0"


def test_parquet_list_column_for_clips_and_extras(tmp_path):
    rows = [{"url": "u0", "clips": [[0.0, 1.5], [2.0, 3.0]], "tags": ["a", "b"]}]
    path = str(tmp_path / "nested.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    src = TableSource(path, clip_col="clips", save_additional_columns=["tags"])
    row = next(src.read(src.shards()[0]))
    assert row["json"]["clips"] == [[0.0, 1.5], [2.0, 3.0]] and row["json"]["tags"] == ["a", "b"]


def test_table_options_record_and_keywords_build_the_same_source(tmp_path):
    table = write_table(tmp_path / "urls.csv", "csv")
    options = TableOptions(caption_col="caption", save_additional_columns="vid", samples_per_shard=5,
                           table_cache=str(tmp_path / "c"))
    assert options.save_additional_columns == ("vid",) and options.columns == ["url", "caption", "vid"]
    by_record, by_keywords = TableSource(table, options), TableSource(table, **vars(options))
    assert by_record.fingerprint() == by_keywords.fingerprint() and by_record.shards() == by_keywords.shards()
    assert TableSource(table, options, samples_per_shard=10).options.samples_per_shard == 10   # keywords on top


@pytest.mark.parametrize("bad, message", [({"samples_per_shard": 0}, "samples_per_shard must be at least 1"),
                                          ({"input_format": "xlsx"}, "unknown input_format 'xlsx'")])
def test_table_options_are_checked_once_for_every_reader(bad, message):
    with pytest.raises(SourceError, match=message):
        TableOptions(**bad)


def test_unknown_keywords_are_named_whatever_the_source(tmp_path):
    import streamv2d as sv

    table = write_table(tmp_path / "urls.csv", "csv")
    ds = sv.VideoDataset(table, url_col="url", samples_per_shard=4, table_cache=str(tmp_path / "c"))
    assert ds.job.table.samples_per_shard == 4 and ds.num_shards == 6
    for source in (table, str(tmp_path / "x{00000..00001}.tar")):
        with pytest.raises(TypeError, match=r"VideoDataset\(\) got unexpected keyword argument\(s\) shuffle_bufer; "
                                            r"table options are url_col"):
            sv.VideoDataset(source, shuffle_bufer=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'urlcol'"):
        TableSource(table, urlcol="link")


def test_yaml_reading_section_accepts_exactly_the_table_options(tmp_path):
    from streamv2d.config import load_config

    config = tmp_path / "job.yaml"
    config.write_text("reading: {url_col: link, table_cache: /tmp/t, save_additional_columns: [a]}\n")
    table = load_config(str(config)).table
    assert (table.url_col, table.table_cache, table.save_additional_columns) == ("link", "/tmp/t", ("a",))
    config.write_text("reading: {url_col: link, caption_column: name}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) in reading: \['caption_column'\]"):
        load_config(str(config))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "txt"])
@pytest.mark.parametrize("compression", ["", ".gz"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_row(tmp_path, fmt, compression):
    plain = write_table(tmp_path / f"plain.{fmt}", fmt, ROWS[:3])
    path = str(tmp_path / f"bom.{fmt}{compression}")
    with fsspec.open(path, "wb", compression="infer") as f:
        f.write(b"\xef\xbb\xbf" + open(plain, "rb").read())
    src = TableSource(path, table_cache=str(tmp_path / "cache"))
    assert [r["json"]["url"] for r in src.read(src.shards()[0])] == [r["url"] for r in ROWS[:3]]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_listed_text_table_reads_on_a_node_without_its_arrow_copy(tmp_path, fmt):
    """An engine ships the listed source to tasks on other nodes, where the Arrow copy made at listing does not
    exist: the task makes its own copy (it failed with "No such file"), and refuses a table changed since."""
    import pickle
    import shutil

    table = write_table(tmp_path / f"urls.{fmt}", fmt)
    listed = TableSource(table, samples_per_shard=5, table_cache=str(tmp_path / "cache"))
    shipped = pickle.dumps(listed)
    shutil.rmtree(tmp_path / "cache")                       # another node: nothing of the listing's copy
    task = pickle.loads(shipped)
    assert [r["json"]["url"] for r in task.read(task.shards()[2])] == [r["url"] for r in ROWS[10:15]]
    shutil.rmtree(tmp_path / "cache")
    write_table(tmp_path / f"urls.{fmt}", fmt, ROWS[:20])   # changed after the job was listed
    with pytest.raises(SourceError, match="content changed since the job was listed"):
        list(pickle.loads(shipped).read(listed.shards()[0]))
