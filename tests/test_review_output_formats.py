"""Review finding on the output formats: a shard read back in the ``files`` format must keep the written order."""
import json

import pytest

import streamv2d as sv
from conftest import fail_stats_writes, tar_of


def windows(sample):
    """Twelve outputs per row, keyed as Clip keys them (``key_0`` … ``key_11``: not in sorted order)."""
    return [{**sample, "__key__": f"{sample['__key__']}_{j}", "json": {**sample["json"], "j": j}} for j in range(12)]


def keys(samples):
    return [s["__key__"] for s in samples]


@pytest.mark.parametrize("fmt", ["tar", "parquet", "files"])
def test_every_format_reads_back_in_the_written_order_and_resumes_inside_a_row(tmp_path, fmt):
    """Finding: the files format read a shard back in sorted key order, so a tar whose members are not sorted, or a
    row of more than ten clips, came back in another order than the epoch that wrote it, and a resume position
    (row, output) inside such a row pointed at another sample: one yielded twice, one lost."""
    source = tar_of(tmp_path / "in.tar", [(f"{name}.json", json.dumps({"name": name}).encode())
                                          for name in ("zeta", "alpha", "mid")])
    make = lambda: sv.VideoDataset([source], subsamplers=[windows], cache_dir=str(tmp_path / "c"),  # noqa: E731
                                   cache_format=fmt)
    uncached = keys(sv.VideoDataset([source], subsamplers=[windows]))
    assert keys(make()) == uncached                              # written
    assert keys(make()) == uncached                              # read back
    ds = make()
    it = iter(ds)
    head = keys(next(it) for _ in range(15))                     # inside the second row, after its third output
    state = json.loads(json.dumps(ds.state_dict()))
    it.close()
    again = make()
    again.load_state_dict(state)
    assert head + keys(again) == uncached


def test_a_files_shard_whose_publication_was_killed_keeps_its_order(tmp_path, monkeypatch):
    """The written order is recorded before the data is published (publishing consumes the spool), so a run killed
    between the data and the stats rename still reads the shard back in order once the next run finishes it."""

    source = tar_of(tmp_path / "in.tar", [(f"{name}.json", b"{}") for name in ("zeta", "alpha")])
    make = lambda: sv.VideoDataset([source], cache_dir=str(tmp_path / "c"), cache_format="files")  # noqa: E731
    undo = fail_stats_writes(monkeypatch, KeyboardInterrupt("killed before the stats rename"))
    with pytest.raises(KeyboardInterrupt):
        list(make())
    undo()
    assert keys(make()) == ["zeta", "alpha"]                     # finishes the publication
    assert keys(make()) == ["zeta", "alpha"] and make().cache.complete_shards() == [0]


@pytest.mark.parametrize("fmt", ["tar", "parquet", "files"])
def test_the_epoch_that_writes_a_shard_names_it_as_later_reads_do(tmp_path, fmt):
    """Finding: ``__url__`` was the source's in the writing epoch, the hidden spool's for rows replayed from a
    journal, and the published shard's in later epochs: what is yielded while writing was not what a read returns."""
    source = tar_of(tmp_path / "in.tar", [(f"k{i}.json", json.dumps({"i": i}).encode()) for i in range(4)])
    make = lambda: sv.VideoDataset([source], cache_dir=str(tmp_path / "c"), cache_format=fmt)  # noqa: E731
    ds = make()
    it = iter(ds)
    head = [next(it) for _ in range(2)]
    it.close()                                                   # stopped mid-shard: rows 0-1 journaled
    writing = list(make())                                       # replays rows 0-1 from the spool, writes 2-3
    reading = list(make())
    published = make().cache.paths(0).data
    assert [s["__url__"] for s in head + writing] == [published] * 6
    assert [s["__url__"] for s in reading] == [published] * 4
