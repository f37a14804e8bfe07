"""Output shard files: spool encoding, formats, webdataset compatibility, metadata, sizes, the journal."""
import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds

from streamv2d.cache import (FailureMemo, MetadataSchema, ShardJournal, ShardPaths, TarSpool, encode_sample, parse_size,
                             read_output_shard)
from streamv2d.cache.writer import publish_data
from streamv2d.stats import ShardStats

SAMPLES = [
    {"__key__": f"00000{i}", "__url__": "ignored", "mp4": bytes([i]) * (700 + i),
     "txt": f"caption {i} é", "json": {"key": f"00000{i}", "status": "success", "n": i}}
    for i in range(3)
]


def _spool(path, samples=SAMPLES):
    spool = TarSpool(path)
    for sample in samples:
        spool.write(sample)
    spool.finish()
    return path


def test_encoding_follows_webdataset():
    pairs = dict(encode_sample(SAMPLES[1]))
    assert set(pairs) == {"json", "mp4", "txt"}          # __key__/__url__ skipped
    assert json.loads(pairs["json"]) == SAMPLES[1]["json"]
    assert pairs["txt"] == "caption 1 é".encode()
    assert pairs["mp4"] == SAMPLES[1]["mp4"]


def test_tensors_are_refused_clearly():
    with pytest.raises(TypeError, match="cannot cache payload 'pth'"):
        encode_sample({"__key__": "a", "pth": torch.zeros(2)})


def test_bad_keys_are_refused(tmp_path):
    spool = TarSpool(str(tmp_path / "x.tar.partial"))
    for key in ("a.b", "../a", "/abs", ""):
        with pytest.raises(ValueError):
            spool.write({"__key__": key, "txt": "x"})
    spool.close()


def test_webdataset_reads_the_tar_unchanged(tmp_path):
    paths = ShardPaths(str(tmp_path), 0)
    publish_data(_spool(paths.spool), paths)
    assert not os.path.exists(paths.spool)
    read = list(wds.WebDataset(paths.data, shardshuffle=False))
    assert [s["__key__"] for s in read] == [s["__key__"] for s in SAMPLES]
    for got, want in zip(read, SAMPLES):
        assert got["mp4"] == want["mp4"] and json.loads(got["json"]) == want["json"]
        assert got["txt"].decode() == want["txt"]
    with tarfile.open(paths.data) as tar:                  # tarfile agrees too, and sees a terminated archive
        assert len(tar.getmembers()) == 9


@pytest.mark.parametrize("fmt", ["tar", "parquet", "files"])
def test_formats_read_back_alike(tmp_path, fmt):
    paths = ShardPaths(str(tmp_path), 7, fmt)
    publish_data(_spool(paths.spool), paths)
    assert os.path.basename(paths.data) == {"tar": "00007.tar", "parquet": "00007.parquet",
                                            "files": "00007"}[fmt]
    back = list(read_output_shard(paths))
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in back] == \
           [{k: v for k, v in s.items() if k != "__url__"} for s in SAMPLES]
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n or n.endswith(".partial")] == []


def test_spool_resumes_at_an_offset(tmp_path):
    whole, cut = str(tmp_path / "whole.tar"), str(tmp_path / "cut.tar")
    _spool(whole)
    spool = TarSpool(cut)
    spool.write(SAMPLES[0])
    safe = spool.offset
    spool.write(SAMPLES[1])
    spool._file.write(b"torn tail")                      # a crash mid-row leaves garbage past the safe offset
    spool.close()
    resumed = TarSpool(cut, safe)
    for sample in SAMPLES[1:]:
        resumed.write(sample)
    resumed.finish()
    assert open(cut, "rb").read() == open(whole, "rb").read()


def test_metadata_parquets_of_a_job_share_one_schema(tmp_path):
    """Shards with and without failures, with and without a stage's field, read together (they did not:
    error_message typed null in a shard with no failure, columns present in some shards only)."""
    schema = MetadataSchema({"url": "string", "clips": "json", "clip_index": "int64", "video_metadata": "json"})
    ok = [{"key": "0", "url": "u0", "status": "success", "error_message": None, "clips": [[0, 1]], "clip_index": 0,
           "video_metadata": {"width": 64}}]
    failed = [{"key": "1", "url": "u1", "status": "failed_to_download", "error_message": "HTTP 404"}]
    for name, rows in (("00000.parquet", ok), ("00001.parquet", failed)):
        schema.write(str(tmp_path / name), rows)
    table = pq.read_table([str(tmp_path / "00000.parquet"), str(tmp_path / "00001.parquet")]).to_pylist()
    assert [r["key"] for r in table] == ["0", "1"] and table[1]["error_message"] == "HTTP 404"
    assert json.loads(table[0]["clips"]) == [[0, 1]] and table[0]["clip_index"] == 0
    assert table[1]["video_metadata"] is None and "permanent" not in table[0]
    assert pq.read_schema(str(tmp_path / "00000.parquet")) == pq.read_schema(str(tmp_path / "00001.parquet"))


@pytest.mark.parametrize("text,expected", [("2TB", 2 * 10**12), ("500MB", 500 * 10**6), ("1.5GiB", 3 * 2**29),
                                           ("10k", 10_000), (123, 123), ("77", 77), (None, None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_refuses_nonsense():
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("lots")


def test_shard_journal_resumes_by_position_and_survives_a_torn_line(tmp_path):
    journal = ShardJournal(str(tmp_path / "spool" / "00003.journal"))
    stats = ShardStats(3)
    stats.count = 2
    journal.start(journal.load(0))
    journal.append(0, 100, stats, [{"key": "k0"}])
    journal.append(1, 250, stats, [{"key": "k1"}, {"key": "k1_b"}])
    journal.close()
    with open(journal.path, "a") as f:
        f.write('{"row": 2, "offs')                             # a kill mid-line
    progress = journal.load(spool_size=300)
    assert (progress.rows, progress.offset, progress.stats.count) == (2, 250, 2)
    assert [m["key"] for m in progress.metadata] == ["k0", "k1", "k1_b"]
    assert journal.load(spool_size=200).rows == 1              # the spool lost row 1: resume after row 0
    assert journal.load(spool_size=None).rows == 0
    journal.start(progress)
    journal.seal(stats)
    sealed = journal.load(spool_size=None)                     # the spool was published: sealed stands alone
    assert sealed.sealed and sealed.rows == 2 and len(sealed.metadata) == 3
    journal.remove()
    assert journal.load(0).rows == 0 and not os.path.exists(journal.path)


def test_failure_memo_is_scoped_by_fetch_settings(tmp_path):
    memo, other = FailureMemo(str(tmp_path / "memo"), "a"), FailureMemo(str(tmp_path / "memo"), "b")
    memo.put("u1", {"status": "failed_to_download", "error_message": "HTTP 404"})
    assert memo.get("u1")["error_message"] == "HTTP 404" and memo.get("u2") is None and other.get("u1") is None


def test_stale_temporaries_of_a_killed_publish_are_removed(tmp_path):
    from streamv2d.cache.layout import ShardPaths
    from streamv2d.cache.writer import remove_stale_temps

    paths = ShardPaths(str(tmp_path), 7, "tar", 5)
    for name in (paths.data + ".tmp-h-999-ab", paths.stats + ".tmp-h-12-cd", paths.meta + ".tmp-h-3-ef"):
        open(name, "w").close()
    keep = tmp_path / "00008.tar.tmp-h-5-aa"
    keep.write_text("another shard's")
    remove_stale_temps(paths)
    assert sorted(os.listdir(tmp_path)) == ["00008.tar.tmp-h-5-aa"]
