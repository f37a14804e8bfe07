"""Every input limit reaches the pipeline from Python, YAML and the CLI; a full disk never ends a training epoch
and never leaves a temporary behind; materialize reports it per shard and resumes."""
import errno
import json
import logging
import os

import pytest

import streamv2d as sv
from conftest import tar_of, write_csv
from streamv2d.cache import writer
from streamv2d.cli import main
from streamv2d.config import job_from_dict
from streamv2d.demo import make_video


def statuses(ds):
    return [(s.get("json", {}).get("status", "success"), s.get("json", {}).get("error_message")) for s in ds]


def test_max_pixels_from_python_yaml_and_cli(tmp_path, url_rows, server):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:1])
    small = {"max_pixels": 64 * 64}
    [(status, message)] = statuses(sv.VideoDataset(table, subsamplers=[sv.Probe()], fetch=small, yield_failures=True))
    assert status == "failed_to_subsample" and "exceed max_pixels=4096" in message
    assert job_from_dict({"reading": {"fetch": small}}).fetch.max_pixels == 4096
    out = str(tmp_path / "out")
    config = tmp_path / "job.yaml"
    config.write_text("subsampling: [probe]\n")
    assert main(["materialize", table, out, "--config", str(config), "--fetch", "max_pixels=4096", "-q"]) == 0
    with open(os.path.join(out, "00000_stats.json")) as f:
        assert json.load(f)["failed_to_subsample"] == 1
    with pytest.raises(ValueError, match="fetch.max_pixels=0: must be an integer >= 1"):
        sv.FetchConfig(max_pixels=0)


def test_cli_fetch_settings_are_checked(tmp_path, capsys):
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "http://127.0.0.1:9/a.mp4"}])
    assert main(["materialize", table, str(tmp_path / "o"), "--fetch", "retries=-1"]) == 2
    assert "fetch.retries=-1" in capsys.readouterr().err
    assert main(["materialize", table, str(tmp_path / "o"), "--fetch", "colour=blue"]) == 2
    assert "unknown fetch option(s) ['colour']" in capsys.readouterr().err


def test_tar_member_limits_follow_the_job(tmp_path):
    video = make_video(1.0, 32, 32)
    source = tar_of(tmp_path / "in.tar", [("a.mp4", video), ("a.pyd", b"x"), ("b.mp4", video)])
    default = statuses(sv.VideoDataset(source, yield_failures=True))
    assert default[0][0] == "failed_to_download" and "pickle-capable" in default[0][1] and default[1][0] == "success"
    allowed = statuses(sv.VideoDataset(source, yield_failures=True, fetch={"allow_pickle_members": True}))
    assert [s for s, _ in allowed] == ["success", "success"]
    capped = statuses(sv.VideoDataset(source, yield_failures=True, fetch={"max_bytes": len(video) - 1}))
    assert all(s == "failed_to_download" and "over max_member_bytes" in m for s, m in capped)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_streams_the_shard_uncached_with_one_warning(tmp_path, url_rows, server, monkeypatch, caplog):
    """Finding: with cache_dir set, `OSError: No space left on device` out of the writer ended the epoch."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    ds = sv.VideoDataset(table, samples_per_shard=4, cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(writer.TarSpool, "write", _full_disk)
    with caplog.at_level(logging.WARNING, logger="streamv2d"):
        samples = list(ds)
    assert len(samples) == 4 and not ds.cache.is_complete(0)
    assert sum("cannot write the cache" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.undo()
    assert len(list(ds)) == 4 and ds.cache.is_complete(0)        # space is back: the shard is written


def test_materialize_reports_a_full_disk_per_shard_and_resumes(tmp_path, url_rows, server, monkeypatch):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    job = sv.Job(source=table, table={"samples_per_shard": 2})
    real = writer.TarSpool.write
    calls = {"n": 0}

    def fails_in_shard_1(self, sample):
        if "00001.tar" in self.path:
            _full_disk()
        calls["n"] += 1
        return real(self, sample)

    monkeypatch.setattr(writer.TarSpool, "write", fails_in_shard_1)
    result = sv.materialize(None, str(tmp_path / "out"), job, progress=False)
    assert result.failed == [1] and result.written == 1
    monkeypatch.undo()
    again = sv.materialize(None, str(tmp_path / "out"), job, progress=False)
    assert again.failed == [] and again.skipped == 1 and again.written == 1


def test_no_temporary_is_left_when_the_namespace_cannot_be_written(tmp_path, url_rows, monkeypatch):
    """Finding: with 0 bytes free, VideoDataset() raised and left namespace.json.tmp-<pid> behind."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:1])
    monkeypatch.setattr(writer.json, "dump", _full_disk)
    with pytest.raises(OSError, match="No space left"):
        sv.VideoDataset(table, cache_dir=str(tmp_path / "cache"))
    leftovers = [os.path.join(r, n) for r, _, names in os.walk(tmp_path / "cache") for n in names if ".tmp" in n]
    assert leftovers == []
