"""The thinnest whole path: URL table → loopback fetch → samples → DataLoader."""
import torch

import streamv2d as sv
from conftest import write_csv


def test_url_table_through_dataloader(tmp_path, url_rows, server):
    table = write_csv(str(tmp_path / "urls.csv"), url_rows)
    ds = sv.VideoDataset(table, caption_col="caption", samples_per_shard=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    samples = list(loader)
    assert len(samples) == len(url_rows)
    assert len({s["__key__"] for s in samples}) == len(url_rows)
    for s in samples:
        assert s["mp4"][4:8] == b"ftyp"
        assert s["txt"] == s["json"]["caption"]
        assert s["json"]["status"] == "success" and s["json"]["url"].startswith(server.base_url)


def test_every_kind_of_bad_url_is_counted_and_the_epoch_goes_on(tmp_path, url_rows, server, corpus_names):
    name = corpus_names[0]
    bad = ["status/404", "status/500", f"slow/3/{name}", f"truncated/{name}", "garbage/3000", "html",
           "big/3000000/no", "drop"]
    rows = url_rows[:3] + [{"url": server.url(p), "caption": p} for p in bad] + url_rows[3:5]
    table = write_csv(str(tmp_path / "mixed.csv"), rows)
    fetch = {"retries": 1, "backoff": 0.01, "read_timeout": 0.5, "max_bytes": 1_000_000, "yt_dlp": "never"}
    ds = sv.VideoDataset(table, caption_col="caption", samples_per_shard=4, fetch=fetch, yield_failures=True)
    samples = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert len(samples) == len(rows)
    failed = {s["txt"]: s["json"]["error_message"] for s in samples if s["json"]["status"] == "failed_to_download"}
    assert set(failed) == set(bad)
    assert "HTTP 404" in failed["status/404"] and "HTTP 500" in failed["status/500"]
    assert "truncated" in failed[f"truncated/{name}"] and "max_bytes" in failed["big/3000000/no"]
    assert "HTML" in failed["html"] and "not media" in failed["garbage/3000"]
    assert sum(s["json"]["status"] == "success" for s in samples) == 5
    assert len(list(sv.VideoDataset(table, samples_per_shard=4, fetch=fetch))) == 5


def test_shard_stats_use_video2dataset_fields(tmp_path, url_rows, server):
    from streamv2d.stats import ShardStats

    rows = url_rows[:3] + [{"url": server.url("status/404"), "caption": "x"}]
    ds = sv.VideoDataset(write_csv(str(tmp_path / "t.csv"), rows), samples_per_shard=10)
    stats = ShardStats(0)
    list(ds.shard_job.rows(0, stats=stats))
    doc = stats.to_dict()
    assert {k: doc[k] for k in ("count", "successes", "failed_to_download", "failed_to_subsample")} == \
           {"count": 4, "successes": 3, "failed_to_download": 1, "failed_to_subsample": 0}
    assert doc["status_dict"] == {"success": 3, "HTTP 404": 1} and doc["bytes_downloaded"] > 0
    assert doc["duration"] >= 0 and doc["end_time"] >= doc["start_time"]


def test_tar_shards_through_dataloader(tmp_path):
    import webdataset as wds

    for k in range(3):
        with wds.TarWriter(str(tmp_path / f"{k:05d}.tar")) as w:
            for i in range(4):
                w.write({"__key__": f"{k:05d}{i}", "mp4": b"\x00\x00\x00\x18ftypisom", "txt": "c"})
    ds = sv.VideoDataset(str(tmp_path / "{00000..00002}.tar"))
    keys = [s["__key__"] for s in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
    assert sorted(keys) == sorted(f"{k:05d}{i}" for k in range(3) for i in range(4))


def test_subsampler_chain_and_failures(tmp_path, url_rows):
    def tag(sample):
        sample["json"]["tagged"] = True
        return sample

    def split_in_two(sample):
        return [dict(sample, __key__=f"{sample['__key__']}_{i}") for i in range(2)]

    def explode_on_first(sample):
        if sample["__key__"].endswith("0_0"):
            raise ValueError("no video stream")
        return sample

    table = write_csv(str(tmp_path / "t.csv"), url_rows[:3])
    ds = sv.VideoDataset(table, subsamplers=[tag, split_in_two, explode_on_first, lambda s: s], yield_failures=True)
    samples = list(ds)
    assert [s["__key__"] for s in samples] == [f"00000{row:03d}_{i}" for row in range(3) for i in range(2)]
    assert samples[0]["json"]["status"] == "failed_to_subsample"
    assert samples[0]["json"]["error_message"] == "ValueError: no video stream"
    assert all(s["json"]["tagged"] for s in samples)


def test_batching_inside_workers(tmp_path, url_rows):
    def as_tensor(sample):
        sample["frames"] = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
        return sample

    ds = sv.VideoDataset(write_csv(str(tmp_path / "t.csv"), url_rows[:5]), subsamplers=[as_tensor], batch_size=2)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1))
    assert [b["frames"].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0]["frames"].shape == (2, 2, 4, 4, 3) and len(batches[0]["__key__"]) == 2


def test_unreadable_table_shard_is_a_counted_failure(tmp_path, url_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.Table.from_pylist(url_rows[:4]), path, row_group_size=2)
    ds = sv.VideoDataset(path, samples_per_shard=2, yield_failures=True)
    data = bytearray(open(path, "rb").read())
    data[4:60] = b"\xff" * 56                          # break the first row group's pages, keep the footer
    open(path, "wb").write(bytes(data))
    samples = list(ds)
    failures = [s for s in samples if s["json"]["status"] != "success"]
    assert failures and "unreadable shard" in failures[0]["json"]["error_message"]


def test_stats_count_rows_not_samples(tmp_path, url_rows):
    from streamv2d.stats import ShardStats

    def split(sample):
        return [dict(sample, __key__=f"{sample['__key__']}_{i}") for i in range(3)]

    def drop_second(sample):
        return None if sample["__key__"].startswith("000001") else sample

    ds = sv.VideoDataset(write_csv(str(tmp_path / "t.csv"), url_rows[:3]), subsamplers=[split, drop_second],
                         samples_per_shard=10)
    stats = ShardStats(0)
    list(ds.shard_job.rows(0, stats=stats))
    doc = stats.to_dict()
    assert (doc["count"], doc["successes"], doc["samples"]) == (3, 2, 6)
    assert doc["status_dict"] == {"success": 2, "filtered": 1}
