"""Review finding: a shuffle buffer rebuilt on resume fetches its rows again, and a fetch can fail this time."""
import json

import pytest

import streamv2d as sv
from conftest import tar_of

#: Keys whose row fails from now on (a URL gone, a timeout): module state, so the job's identity stays the same.
GONE = set()


def clips(sample):
    """Two outputs per row, unless the row is gone."""
    if sample["__key__"] in GONE:
        raise ValueError("gone since the state was saved")
    return [{**sample, "__key__": f"{sample['__key__']}_{j}"} for j in range(2)]


@pytest.fixture()
def paths(tmp_path):
    GONE.clear()
    yield [tar_of(tmp_path / f"in{s}.tar", [(f"s{s}k{i}.json", json.dumps({"i": i}).encode()) for i in range(5)])
           for s in range(2)]
    GONE.clear()


def saved(ds, stop):
    it = iter(ds)
    head = [next(it)["__key__"] for _ in range(stop)]
    return head, json.loads(json.dumps(ds.state_dict()))


def test_a_buffered_row_that_fails_when_fetched_again_is_left_out(paths):
    """Finding: resuming raised LookupError ("no sample 1 in row 2 … any more") when a buffered row failed on its
    second fetch, and yielded the failure record of its first output although yield_failures was off."""
    make = lambda: sv.VideoDataset(paths, subsamplers=[clips], shuffle_buffer=4)  # noqa: E731
    whole = [s["__key__"] for s in make()]
    head, state = saved(make(), 3)
    shard, row, _ = state["loader"]["buffer"][0]
    GONE.add(f"s{shard}k{row}")
    again = make()
    again.load_state_dict(state)
    tail = list(again)
    assert all(s["json"].get("status", "success") == "success" for s in tail)
    lost = {k for k in whole if k.startswith(f"s{shard}k{row}_")} - set(head)
    assert sorted(head + [s["__key__"] for s in tail]) == sorted(set(whole) - lost)


def test_a_fixed_length_epoch_keeps_its_length_when_a_buffered_row_fails(paths):
    """A lost buffered sample is topped up: a DDP rank yielding one sample fewer would hang its collectives."""
    make = lambda: sv.VideoDataset(paths, subsamplers=[clips], shuffle_buffer=4, samples_per_rank=12)  # noqa: E731
    head, state = saved(make(), 3)
    shard, row, _ = state["loader"]["buffer"][0]
    GONE.add(f"s{shard}k{row}")
    again = make()
    again.load_state_dict(state)
    assert len(head) + len(list(again)) == 12
