"""Bad input stops at construction with a message naming the file and the problem."""
import pytest

import streamv2d as sv
from streamv2d import SourceError
from conftest import write_csv


def test_missing_column_names_file_and_columns(tmp_path):
    table = write_csv(str(tmp_path / "t.csv"), [{"link": "http://x/v.mp4"}])
    with pytest.raises(SourceError, match=r"t\.csv: column\(s\) 'url' not found; the table has 'link'"):
        sv.VideoDataset(table)
    with pytest.raises(SourceError, match="'name' not found"):
        sv.VideoDataset(table, url_col="link", caption_col="name")


def test_missing_extra_column_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"url": ["u"]}), str(tmp_path / "t.parquet"))
    with pytest.raises(SourceError, match=r"t\.parquet: column\(s\) 'videoid' not found"):
        sv.VideoDataset(str(tmp_path / "t.parquet"), save_additional_columns=["videoid"])


def test_unreadable_table(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet: cannot read as parquet"):
        sv.VideoDataset(str(tmp_path / "broken.parquet"))
    (tmp_path / "broken.jsonl").write_text('{"url": "a"}\n{not json\n')
    with pytest.raises(SourceError, match=r"broken\.jsonl: line 2 is not JSON"):
        sv.VideoDataset(str(tmp_path / "broken.jsonl"), samples_per_shard=1)


def test_empty_source(tmp_path):
    (tmp_path / "empty.csv").write_text("url,caption\n")
    with pytest.raises(SourceError, match=r"empty source: .*empty\.csv holds no rows"):
        sv.VideoDataset(str(tmp_path / "empty.csv"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SourceError, match="holds no rows"):
        sv.VideoDataset(str(tmp_path / "empty.txt"))
    with pytest.raises(SourceError, match="no paths"):
        sv.VideoDataset([])


def test_unknown_format(tmp_path):
    (tmp_path / "urls.xlsx").write_bytes(b"PK")
    with pytest.raises(SourceError, match=r"urls\.xlsx: unknown table format 'xlsx'"):
        sv.VideoDataset(str(tmp_path / "urls.xlsx"))
    with pytest.raises(SourceError, match="unknown input_format 'xml'"):
        sv.VideoDataset(str(tmp_path / "urls.xlsx"), input_format="xml")


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.csv: no such file"):
        sv.VideoDataset(str(tmp_path / "nope.csv"))
    with pytest.raises(SourceError, match="matches no file"):
        sv.VideoDataset(str(tmp_path / "*.parquet"))


def test_json_must_be_an_array_of_objects(tmp_path):
    (tmp_path / "t.json").write_text('{"url": "a"}')
    with pytest.raises(SourceError, match="array of objects"):
        sv.VideoDataset(str(tmp_path / "t.json"))


def test_bad_options(tmp_path):
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "u"}])
    with pytest.raises(ValueError, match="unknown fetch option"):
        sv.VideoDataset(table, fetch={"timeout_s": 3})
    with pytest.raises(ValueError, match="samples_per_shard"):
        sv.VideoDataset(table, samples_per_shard=0)
    with pytest.raises(ValueError, match="fetch.threads"):
        sv.VideoDataset(table, fetch_threads=0)
