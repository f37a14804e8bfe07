"""Review findings on the dataset's own state: a state loaded but not yet iterated."""
import json

import streamv2d as sv
from conftest import tar_of


def tars(tmp_path, shards=2, rows=4):
    return [tar_of(tmp_path / f"in{s}.tar", [(f"s{s}k{i}.json", json.dumps({"i": i}).encode()) for i in range(rows)])
            for s in range(shards)]


def keys(samples):
    return [s["__key__"] for s in samples]


def test_a_state_loaded_and_saved_again_before_iterating_is_the_same_state(tmp_path):
    """Finding: ``state_dict()`` between ``load_state_dict`` and ``iter`` (a checkpoint taken before the first step
    of a resumed run) returned the start of the epoch — or the position of an earlier iteration of the same object
    — so resuming from that checkpoint yielded delivered samples again."""
    paths = tars(tmp_path)
    ds = sv.VideoDataset(paths, shuffle_buffer=3)
    it = iter(ds)
    head = keys(next(it) for _ in range(3))
    state = json.loads(json.dumps(ds.state_dict()))
    rest = keys(it)
    fresh = sv.VideoDataset(paths, shuffle_buffer=3)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    ds.load_state_dict(state)                                    # the object that iterated to its end
    assert ds.state_dict() == state
    again = sv.VideoDataset(paths, shuffle_buffer=3)
    again.load_state_dict(json.loads(json.dumps(ds.state_dict())))
    assert head + keys(again) == head + rest


def test_a_mix_state_loaded_and_saved_again_before_iterating_is_the_same_state(tmp_path):
    """The same finding for ``sv.mix``."""
    paths = tars(tmp_path)
    make = lambda: sv.mix([sv.VideoDataset(paths[:1]), sv.VideoDataset(paths[1:])], seed=1)  # noqa: E731
    mixed = make()
    it = iter(mixed)
    head = keys(next(it) for _ in range(3))
    state = json.loads(json.dumps(mixed.state_dict()))
    rest = keys(it)
    fresh = make()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    again = make()
    again.load_state_dict(json.loads(json.dumps(fresh.state_dict())))
    assert head + keys(again) == head + rest


def test_reshard_refuses_states_it_cannot_deal_with_a_message(tmp_path):
    """Finding: a ``resampled=True`` or ``sv.mix`` state given to ``reshard_state`` failed with KeyError('segments')
    instead of saying it cannot be resharded (as the fixed-length mode does)."""
    import pytest

    paths = tars(tmp_path)
    for ds, reason in ((sv.VideoDataset(paths, resampled=True), "resampled=True"),
                       (sv.mix([sv.VideoDataset(paths[:1]), sv.VideoDataset(paths[1:])]), "mix"),
                       (sv.VideoDataset(paths, samples_per_rank=5, shuffle_buffer=2), "fixed-length")):
        it = iter(ds)
        next(it)
        with pytest.raises(ValueError, match=f"reshard_state: .*{reason}"):
            sv.reshard_state(ds.state_dict(), num_workers=2)
