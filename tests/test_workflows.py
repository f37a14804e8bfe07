"""video2dataset's workflows over existing shards: merge datasets and reshape them to another shard size
(``reshard``), and reprocess a folder into dedicated metadata shards that zip with it (``reprocess``)."""
import glob
import io
import json
import os
import tarfile

import fsspec
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from s3_server import bucket, moto_endpoint  # noqa: F401  (fixtures)

import streamv2d as sv
from streamv2d.cli import main
from streamv2d.sources import InputShard, TarSource


def dataset(folder, prefix, sizes, failed=()):
    """A materialize-like folder of ``{id:05d}.tar`` shards with ``sizes`` samples each, video2dataset keys
    (so two datasets share keys), fake media ``{prefix}{i}``; the samples numbered in ``failed`` are failure
    records (json only), as video2dataset writes failed rows."""
    os.makedirs(folder, exist_ok=True)
    i = 0
    for shard, size in enumerate(sizes):
        with wds.TarWriter(os.path.join(folder, f"{shard:05d}.tar")) as writer:
            for row in range(size):
                key = f"{shard:05d}{row:04d}"
                meta = {"key": key, "url": f"http://x/{prefix}{i}.mp4", "status": "success"}
                sample = {"__key__": key, "txt": f"{prefix} caption {i}"}
                if i in failed:
                    meta.update(status="failed_to_download", error_message="HTTP 404")
                else:
                    sample["mp4"] = f"{prefix}{i}".encode() * 50
                writer.write({**sample, "json": meta})
                i += 1
    return str(folder)


def read_tars(folder):
    """Every sample of a folder's tars, in order, members as bytes."""
    samples = []
    for path in sorted(glob.glob(os.path.join(str(folder), "*.tar"))):
        samples += list(wds.WebDataset(path, shardshuffle=False, empty_check=False))
    return samples


def folder_bytes(folder):
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(str(folder), "*")))
            if os.path.isfile(p) and not p.endswith("_stats.json")}


# ---- reshard ---------------------------------------------------------------------------------------------------

def test_reshard_merges_datasets_into_shards_of_the_size_asked_with_unique_keys(tmp_path):
    a = dataset(tmp_path / "a", "a", [3, 4], failed={2})
    b = dataset(tmp_path / "b", "b", [5])
    result = sv.reshard([a, b], str(tmp_path / "out"), 4, progress=False)
    assert not result.failed
    tars = sorted(glob.glob(str(tmp_path / "out" / "*.tar")))
    assert [os.path.basename(t) for t in tars] == ["00000.tar", "00001.tar", "00002.tar"]
    per_shard = [len(list(wds.WebDataset(t, shardshuffle=False, empty_check=False))) for t in tars]
    assert per_shard == [4, 4, 4]
    out = read_tars(tmp_path / "out")
    keys = [s["__key__"] for s in out]
    assert keys == [f"{j:05d}{i}" for j in range(3) for i in range(4)]      # video2dataset's key format
    metas = [json.loads(s["json"]) for s in out]
    assert [m["key"] for m in metas] == keys
    assert [m["source_key"] for m in metas] == ["000000000", "000000001", "000000002", "000010000", "000010001",
                                                "000010002", "000010003"] + [f"0000000{i:02d}" for i in range(5)]
    assert metas[0]["source_shard"].endswith(os.path.join("a", "00000.tar"))
    media = [s.get("mp4") for s in out]
    assert media[0] == b"a0" * 50 and media[7] == b"b0" * 50                 # media copied byte for byte
    assert media[2] is None and metas[2]["status"] == "failed_to_download"   # the failed row's record kept
    stats = json.load(open(tmp_path / "out" / "00000_stats.json"))
    assert (stats["count"], stats["successes"], stats["failed_to_download"]) == (4, 3, 1)
    table = pq.read_table(str(tmp_path / "out" / "00000.parquet"))
    assert table.column("key").to_pylist() == keys[:4]
    assert table.column("source_key").to_pylist() == ["000000000", "000000001", "000000002", "000010000"]


def test_reshard_last_shard_holds_the_rest(tmp_path):
    a = dataset(tmp_path / "a", "a", [7])
    sv.reshard(a, str(tmp_path / "out"), 3, progress=False)
    sizes = [len(list(wds.WebDataset(t, shardshuffle=False, empty_check=False)))
             for t in sorted(glob.glob(str(tmp_path / "out" / "*.tar")))]
    assert sizes == [3, 3, 1]


def test_reshard_is_the_same_bytes_run_to_run_and_resumes(tmp_path):
    a = dataset(tmp_path / "a", "a", [3, 4], failed={1})
    b = dataset(tmp_path / "b", "b", [2])
    first = sv.reshard([a, b], str(tmp_path / "one"), 2, progress=False)
    sv.reshard([a, b], str(tmp_path / "two"), 2, progress=False)
    assert first.written == 5
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    again = sv.reshard([a, b], str(tmp_path / "one"), 2, progress=False)
    assert (again.skipped, again.written) == (5, 0)
    for name in ("00003.tar", "00003_stats.json"):   # an interrupted run: shard 3 never published
        os.remove(tmp_path / "one" / name)
    resumed = sv.reshard([a, b], str(tmp_path / "one"), 2, progress=False)
    assert (resumed.skipped, resumed.written) == (4, 1)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")


def test_reshard_refuses_pickle_members(tmp_path):
    folder = tmp_path / "a"
    os.makedirs(folder)
    with wds.TarWriter(str(folder / "00000.tar")) as writer:
        writer.write({"__key__": "000000000", "mp4": b"video", "json": {"key": "000000000"}})
        writer.write({"__key__": "000000001", "mp4": b"video", "pyd": b"cos\nsystem\n", "json": {}})
    sv.reshard(str(folder), str(tmp_path / "out"), 10, progress=False)
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        names = tar.getnames()
        record = json.load(tar.extractfile("000001.json"))
    assert not any(n.endswith(".pyd") for n in names)
    assert record["status"] == "failed_to_download" and "pickle" in record["error_message"]


def test_reshard_reads_and_writes_object_stores(tmp_path, bucket):  # noqa: F811  (the fixture)
    local = dataset(tmp_path / "a", "a", [2, 3], failed={3})
    fs, root = fsspec.core.url_to_fs(bucket)
    for path in glob.glob(os.path.join(local, "*.tar")):
        fs.put_file(path, f"{root}/in/{os.path.basename(path)}")
    result = sv.reshard(f"{bucket}/in", f"{bucket}/out", 4, progress=False, tmp_dir=str(tmp_path / "scratch"))
    assert not result.failed and result.summary.shards == 2
    sv.reshard(local, str(tmp_path / "out"), 4, progress=False)
    fs.invalidate_cache()
    remote = {p.rsplit("/", 1)[1]: fs.cat_file(p) for p in fs.find(f"{root}/out") if "/.streamv2d/" not in p}
    assert sorted(remote) == ["00000.parquet", "00000.tar", "00000_stats.json", "00001.parquet", "00001.tar",
                              "00001_stats.json"]
    reference = tmp_path / "out" / "00001.tar"
    with tarfile.open(fileobj=io.BytesIO(remote["00001.tar"])) as tar, tarfile.open(reference) as ref:
        assert tar.getnames() == ref.getnames() == ["000010.json", "000010.mp4", "000010.txt"]
        assert tar.extractfile("000010.mp4").read() == b"a4" * 50


def test_reshard_command_line(tmp_path, capsys):
    a = dataset(tmp_path / "a", "a", [3])
    b = dataset(tmp_path / "b", "b", [3])
    assert main(["reshard", a, b, str(tmp_path / "out"), "--samples-per-shard", "5", "--format", "parquet"]) == 0
    captured = capsys.readouterr()
    assert "samples written: 6" in captured.out
    assert "shard" in captured.err   # the progress bar
    rows = [k for p in sorted(glob.glob(str(tmp_path / "out" / "*.parquet")))
            for k in pq.read_table(p).column("key").to_pylist()]
    assert rows == ["000000", "000001", "000002", "000003", "000004", "000010"]


def test_materialize_of_tar_shards_honours_samples_per_shard(tmp_path):
    a = dataset(tmp_path / "a", "a", [3, 4])
    assert main(["materialize", a, str(tmp_path / "out"), "--samples-per-shard", "5", "-q"]) == 0
    keys = [s["__key__"] for s in read_tars(tmp_path / "out")]
    assert keys == ["000000", "000001", "000002", "000003", "000004", "000010", "000011"]


def test_tar_count_matches_the_samples_read(tmp_path):
    path = str(tmp_path / "x.tar")
    with tarfile.open(path, "w") as tar:
        for name in ("a.mp4", "a.json", "b.mp4", "../evil.mp4", "c.txt", "a.txt"):
            data = b"{}" if name.endswith("json") else b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = TarSource(path)
    shard = InputShard(0, path)
    assert source.count(shard) == len(list(source.read(shard))) == 5


# ---- reprocess into metadata shards -----------------------------------------------------------------------------

@pytest.fixture()
def video_shards(tmp_path, corpus_dir, corpus_names):
    """Two shards of real videos (video2dataset keys), the second holding a failed row's record."""
    folder = tmp_path / "videos"
    os.makedirs(folder)
    names = corpus_names[:5]
    for shard, chunk in enumerate((names[:3], names[3:])):
        with wds.TarWriter(str(folder / f"{shard:05d}.tar")) as writer:
            for row, name in enumerate(chunk):
                key = f"{shard:05d}{row:04d}"
                with open(os.path.join(corpus_dir, name), "rb") as f:
                    writer.write({"__key__": key, "mp4": f.read(), "txt": name, "json": {"key": key, "url": name}})
            key = f"{shard:05d}{len(chunk):04d}"
            writer.write({"__key__": key, "json": {"key": key, "status": "failed_to_download",
                                                   "error_message": "HTTP 404"}})
    return str(folder)


class Brightness(sv.Subsampler):
    """A custom metadata stage: declares the field it adds (and fails a sample it cannot read)."""

    metadata_fields = {"media_bytes": "int64"}

    def __call__(self, sample):
        sample["json"]["media_bytes"] = len(sample["mp4"])
        return sample


def test_reprocess_writes_metadata_shards_that_zip_with_the_source(video_shards, tmp_path):
    out = str(tmp_path / "meta")
    result = sv.reprocess(video_shards, out, [sv.Probe(), sv.OpticalFlow(fps=2, width=32), Brightness()],
                          progress=False)
    assert not result.failed
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.tar")))
    assert names == ["00000.tar", "00001.tar"]
    for name in names:
        source = wds.WebDataset(os.path.join(video_shards, name), shardshuffle=False, empty_check=False)
        meta = wds.WebDataset(os.path.join(out, name), shardshuffle=False, empty_check=False)
        pairs = list(zip(source, meta))
        assert len(pairs) == len(list(source)) == len(list(meta)) == {"00000.tar": 4, "00001.tar": 3}[name]
        for src, md in pairs:
            assert src["__key__"] == md["__key__"]
            assert "mp4" not in md and "txt" not in md   # no media copied, only metadata members
            info = json.loads(md["json"])
            if "mp4" in src:
                assert set(md) - {"__key__", "__url__", "__local_path__"} == {"json", "optical_flow.npy"}
                assert info["media_bytes"] == len(src["mp4"]) and "video_metadata" in info
                assert "mean_optical_flow_magnitude" in info
            else:
                assert info["status"] == "failed_to_download"
    stats = json.load(open(os.path.join(out, "00001_stats.json")))
    assert (stats["successes"], stats["failed_to_download"]) == (2, 1)
    assert pq.read_table(os.path.join(out, "00000.parquet")).column("media_bytes").to_pylist()[:3] == [
        len(s["mp4"]) for s in wds.WebDataset(os.path.join(video_shards, "00000.tar"), shardshuffle=False,
                                              empty_check=False) if "mp4" in s]


@pytest.mark.parametrize("stage, says", [(sv.FPS(5), "changes the media"),
                                         (lambda s: s, "produces no metadata"),
                                         (sv.Frames(4), "produces no metadata")])
def test_reprocess_refuses_a_stage_without_metadata_up_front(video_shards, tmp_path, stage, says):
    with pytest.raises(ValueError, match=says):
        sv.reprocess(video_shards, str(tmp_path / "meta"), [Brightness(), stage], progress=False)
    assert not os.path.exists(tmp_path / "meta")


def test_reprocess_keeps_alignment_when_a_stage_drops_or_splits(video_shards, tmp_path):
    class Dropper(Brightness):
        def __call__(self, sample):
            if sample["__key__"].endswith("1"):
                return None
            return [sample, dict(sample)] if sample["__key__"].endswith("2") else sample

    sv.reprocess(video_shards, str(tmp_path / "meta"), [Dropper()], progress=False)
    meta = list(wds.WebDataset(str(tmp_path / "meta" / "00000.tar"), shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in meta] == ["000000000", "000000001", "000000002", "000000003"]
    statuses = [json.loads(s["json"]).get("status", "success") for s in meta]
    assert statuses == ["success", "failed_to_subsample", "failed_to_subsample", "failed_to_download"]


def test_reprocess_refuses_shards_that_would_not_line_up(video_shards, tmp_path):
    os.rename(os.path.join(video_shards, "00001.tar"), os.path.join(video_shards, "00002.tar"))
    with pytest.raises(ValueError, match="00002.tar: its metadata shard would be 00001.tar"):
        sv.reprocess(video_shards, str(tmp_path / "meta"), [Brightness()], progress=False)


def test_reprocess_command_line_with_a_yaml_config(video_shards, tmp_path):
    config = tmp_path / "flow.yaml"
    config.write_text("subsampling:\n  - probe\n  - optical_flow: {fps: 2, width: 32}\n")
    out = str(tmp_path / "meta")
    assert main(["reprocess", video_shards, out, "--config", str(config), "-q"]) == 0
    sample = next(iter(wds.WebDataset(os.path.join(out, "00000.tar"), shardshuffle=False, empty_check=False)))
    assert sample["__key__"] == "000000000" and "optical_flow.npy" in sample and "mp4" not in sample
    config.write_text("subsampling:\n  - fps: {rate: 5}\n")
    assert main(["reprocess", video_shards, str(tmp_path / "worse"), "--config", str(config), "-q"]) == 2


def test_a_job_over_tar_shards_honours_samples_per_shard_from_python(tmp_path):
    """``Job(table={"samples_per_shard": N})`` over tar shards cuts them anew, as the CLI does (it was ignored)."""
    a = dataset(tmp_path / "a", "a", [3, 4])
    job = sv.Job(source=a, table={"samples_per_shard": 5})
    assert not sv.materialize(None, str(tmp_path / "out"), job, progress=False).failed
    assert [s["__key__"] for s in read_tars(tmp_path / "out")] == ["000000", "000001", "000002", "000003",
                                                                  "000004", "000010", "000011"]
    same = sv.materialize(None, str(tmp_path / "kept"), sv.Job(source=a), progress=False)
    assert not same.failed and len(glob.glob(str(tmp_path / "kept" / "*.tar"))) == 2   # the default keeps shards


def test_video_dataset_over_tar_shards_cuts_them_as_materialize_does(tmp_path):
    """One meaning for ``samples_per_shard`` on tar shards: VideoDataset, with and without a cache, yields what
    materialize writes (keys and media), and the cache holds shards of the size asked."""
    a = dataset(tmp_path / "a", "a", [3, 4], failed={1})
    job = sv.Job(source=a, table={"samples_per_shard": 3})
    assert not sv.materialize(None, str(tmp_path / "out"), job, progress=False).failed
    written = [(s["__key__"], s.get("mp4")) for s in read_tars(tmp_path / "out") if "mp4" in s]
    # cut anew into 3 + 3 + 1 (the failed row's record is not a video)
    assert [k for k, _ in written] == ["000000", "000002", "000010", "000011", "000012", "000020"]

    def streamed(**options):
        return [(s["__key__"], s.get("mp4")) for s in sv.VideoDataset(a, samples_per_shard=3, **options)]

    assert streamed() == written
    assert streamed(cache_dir=str(tmp_path / "cache")) == written          # epoch 1 writes through
    assert streamed(cache_dir=str(tmp_path / "cache")) == written          # epoch 2 reads the cache
    cached = sv.VideoDataset(a, samples_per_shard=3, cache_dir=str(tmp_path / "cache")).cache
    assert cached.complete_shards() == [0, 1, 2]
