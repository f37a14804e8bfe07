"""Review findings on resuming through the write-through cache: a shuffle buffer rebuilt from a cached shard, and a
cached shard whose read breaks off part-way."""
import json

import streamv2d as sv
from conftest import tar_of


def tars(tmp_path, shards=3, rows=5):
    """``shards`` tars of ``rows`` samples each (json and txt), no network needed."""
    paths = []
    for s in range(shards):
        members = []
        for i in range(rows):
            members += [(f"s{s}k{i}.json", json.dumps({"i": i}).encode()), (f"s{s}k{i}.txt", f"t{s}{i}".encode())]
        paths.append(tar_of(tmp_path / f"in{s}.tar", members))
    return paths


def clips(sample):
    """Rows make 0, 1 or 3 outputs, as Clip windows and filters do."""
    i = sample["json"]["i"]
    count = {1: 0, 2: 3}.get(i, 1)
    return [{**sample, "__key__": f"{sample['__key__']}_{j}", "json": {**sample["json"], "j": j}} for j in range(count)]


def keys(samples):
    return [s["__key__"] for s in samples]


def resumed(make, stop):
    """The first ``stop`` keys of a run, and what a fresh dataset restored from its JSON-saved state yields."""
    ds = make()
    it = iter(ds)
    head = keys(next(it) for _ in range(stop))
    state = json.loads(json.dumps(ds.state_dict()))
    it.close()
    again = make()
    again.load_state_dict(state)
    return head, keys(again)


def test_a_shuffle_buffer_resumes_through_the_cache(tmp_path):
    """Finding: rebuilding the buffer asked the cache for one row, which it refused (ValueError: stop_row needs
    store=None), so any resume with shuffle_buffer and cache_dir failed."""
    paths = tars(tmp_path)
    whole = keys(sv.VideoDataset(paths, subsamplers=[clips], shuffle_buffer=4))
    for stop in (1, 5, 9):   # the shard being written when the state is taken, then complete when resumed
        cache = str(tmp_path / f"cache{stop}")
        make = lambda: sv.VideoDataset(paths, subsamplers=[clips], shuffle_buffer=4, cache_dir=cache)  # noqa: E731
        head, tail = resumed(make, stop)
        assert head + tail == whole
        head, tail = resumed(make, stop)                        # every shard complete: read from the cache
        assert head + tail == whole


def test_an_uncached_state_with_row_pieces_resumes_with_a_cache(tmp_path):
    """The state's job identity leaves the cache out (it changes no sample), so a state taken without a cache —
    here with row pieces, more consumers than shards — is accepted with one: it must resume, not fail."""
    paths = tars(tmp_path, shards=1, rows=4)
    state = sv.VideoDataset(paths).state_dict()
    state["loader"] = {"segments": [[0, 1, 0, 3]], "pending": []}   # a piece of shard 0: rows 1 and 2
    for _ in range(2):                                           # the shard not cached, then complete
        cached = sv.VideoDataset(paths, cache_dir=str(tmp_path / "cache"))
        cached.load_state_dict(state)
        assert keys(cached) == ["s0k1", "s0k2"]
        list(sv.VideoDataset(paths, cache_dir=str(tmp_path / "cache")))


def test_a_sample_the_shard_cannot_hold_does_not_shift_the_rows_read_back(tmp_path):
    """Finding: a failure record whose key cannot name tar members (here a stage gives row 1 a dotted key) is kept in
    the metadata only, but the index counted it as a sample of its row: reading the shard back broke off there
    (CacheMiss), fell back to running the stages again, and a resume past that row skipped one sample too many."""
    calls = []

    def dotted(sample):
        calls.append(sample["__key__"])
        return {**sample, "__key__": "a.b"} if sample["json"]["i"] == 1 else sample

    paths = tars(tmp_path, shards=1, rows=4)
    make = lambda: sv.VideoDataset(paths, subsamplers=[dotted], yield_failures=True,  # noqa: E731
                                   cache_dir=str(tmp_path / "cache"))
    written = keys(make())
    assert written == ["s0k0", "s0k2", "s0k3"]                  # what the shard holds, as a later read returns it
    calls.clear()
    assert keys(make()) == written and calls == []               # read back from disk, no stage run again
    head, tail = resumed(make, 2)
    assert head + tail == written and calls == []
