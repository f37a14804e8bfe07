"""Output shard files: spool encoding, formats, webdataset compatibility, metadata, sizes, the journal."""
import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds

from streamv2d.cache import Journal, ShardPaths, TarSpool, encode_sample, parse_size, read_output_shard
from streamv2d.cache.writer import publish_data, write_metadata
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
    assert os.path.basename(paths.data) == {"tar": "00007.tar", "parquet": "00007_samples.parquet",
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


def test_metadata_has_a_row_per_input_row(tmp_path):
    rows = [{"key": "0", "url": "u0", "status": "success", "error_message": None, "clips": [[0, 1]]},
            {"key": "1", "url": "u1", "status": "failed_to_download", "error_message": "HTTP 404",
             "permanent": True, "clips": "oops"}]
    path = str(tmp_path / "00000.parquet")
    write_metadata(path, rows)
    table = pq.read_table(path).to_pylist()
    assert [r["key"] for r in table] == ["0", "1"]
    assert table[1]["status"] == "failed_to_download" and table[1]["permanent"] is True
    assert table[0]["permanent"] is None
    assert json.loads(table[0]["clips"]) == [[0, 1]]      # mixed-type column stored as JSON text


@pytest.mark.parametrize("text,expected", [("2TB", 2 * 10**12), ("500MB", 500 * 10**6), ("1.5GiB", 3 * 2**29),
                                           ("10k", 10_000), (123, 123), ("77", 77), (None, None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_refuses_nonsense():
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("lots")


def test_journal_commits_rows_and_clears(tmp_path):
    journal = Journal(str(tmp_path / "j"), "ns")
    other = Journal(str(tmp_path / "j"), "other")
    stats = ShardStats(3)
    stats.count = 2
    journal.commit_row(3, "k0", 100, stats, {"key": "k0", "url": "u0", "status": "success"})
    journal.commit_row(3, "k1", 250, stats, {"key": "k1", "url": "u1", "status": "failed_to_download",
                                             "error_message": "HTTP 404"}, permanent_failure=True)
    progress = journal.progress(3)
    assert (progress.offset, progress.rows, progress.stats.count) == (250, 2, 2)
    assert journal.done_keys(3) == {"k0", "k1"} and other.done_keys(3) == set()
    assert [m["key"] for m in journal.metadata(3)] == ["k0", "k1"]
    assert other.failure("u1")["error_message"] == "HTTP 404"   # the memo is shared by namespaces
    journal.clear(3)
    assert journal.progress(3) is None and journal.metadata(3) == [] and journal.failure("u1") is not None


def test_stale_temporaries_of_a_killed_publish_are_removed(tmp_path):
    from streamv2d.cache.layout import ShardPaths
    from streamv2d.cache.writer import remove_stale_temps

    paths = ShardPaths(str(tmp_path), 7, "tar", 5)
    for name in (paths.data + ".tmp-999", paths.stats + ".tmp-12", paths.meta + ".tmp-3"):
        open(name, "w").close()
    keep = tmp_path / "00008.tar.tmp-5"
    keep.write_text("another shard's")
    remove_stale_temps(paths)
    assert sorted(os.listdir(tmp_path)) == ["00008.tar.tmp-5"]
