"""Review finding on the fixed-length (DDP) mode with ``yield_failures``."""
import json

import streamv2d as sv
from conftest import tar_of


def broken(sample):
    raise ValueError("cannot decode")


def test_failure_records_fill_a_fixed_length_epoch_when_they_are_yielded(tmp_path):
    """Finding: with yield_failures=True, shards that make only failure records yielded them, then raised "no shard
    produced a sample" part-way through the epoch — a DDP rank dying mid-epoch although it had items to give."""
    paths = [tar_of(tmp_path / f"in{s}.tar", [(f"s{s}k{i}.json", json.dumps({"i": i}).encode()) for i in range(3)])
             for s in range(2)]
    ds = sv.VideoDataset(paths, subsamplers=[broken], samples_per_rank=10, yield_failures=True)
    samples = list(ds)
    assert len(samples) == 10 and {s["json"]["status"] for s in samples} == {"failed_to_subsample"}
