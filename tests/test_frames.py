"""``Frames``: tensors of the right frames, the span contract, seeded sampling, failures, DataLoader use."""
from __future__ import annotations

import functools
import io
import pickle
import threading
import time

import av
import numpy as np
import pytest
import torch

from conftest import RecordingSlots, write_csv
from streamv2d import VideoDataset
from streamv2d.demo import make_video
from streamv2d.demo.synth import encode_video
from streamv2d.fetch.pool import ordered_map
from streamv2d.sample import FAILED_TO_SUBSAMPLE
from streamv2d.subsamplers import Frames, describe, run_chain


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_video(4.0, 320, 240, fps=10, audio=True)


def sample_of(data: bytes, key: str = "000000", **meta) -> dict:
    return {"__key__": key, "mp4": data, "txt": "a caption", "json": {"key": key, "status": "success", **meta}}


def reference_frames(data: bytes, indices) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in indices])


def test_uniform_native_size_gives_exact_frames(clip):
    out = Frames(num_frames=8, size=None)(sample_of(clip))
    assert out["frames"].dtype == torch.uint8 and out["frames"].shape == (8, 240, 320, 3)
    meta = out["json"]["frames"]
    assert meta["indices"] == [2, 7, 12, 17, 22, 27, 32, 37] and meta["source_fps"] == 10.0
    assert meta["timestamps"][:2] == [0.2, 0.7]
    np.testing.assert_array_equal(out["frames"].numpy(), reference_frames(clip, meta["indices"]))


def test_resize_crop_and_media_dropped(clip):
    out = Frames(num_frames=4, size=112)(sample_of(clip))
    assert out["frames"].shape == (4, 112, 112, 3)
    assert "mp4" not in out and out["txt"] == "a caption" and out["json"]["status"] == "success"
    assert "mp4" in Frames(num_frames=4, size=112, keep_media=True)(sample_of(clip))


def test_span_contract(clip):
    out = Frames(num_frames=4, size=None)(sample_of(clip, span=[1.0, 3.0]))
    assert out["json"]["frames"]["indices"] == [12, 17, 22, 27]
    assert all(0.0 <= t < 2.0 for t in out["json"]["frames"]["timestamps"])   # from the span's start
    np.testing.assert_array_equal(out["frames"].numpy(), reference_frames(clip, [12, 17, 22, 27]))
    assert Frames.consumes_spans is True


def test_fps_and_stride_windows(clip):
    by_fps = Frames(num_frames=4, size=None, fps=5)(sample_of(clip, span=[1.0, 3.0]))
    assert by_fps["json"]["frames"]["indices"] == [16, 18, 20, 22]
    by_stride = Frames(num_frames=3, size=32, stride=4, sampling="random")(sample_of(clip))
    indices = by_stride["json"]["frames"]["indices"]
    assert [b - a for a, b in zip(indices, indices[1:])] == [4, 4]


def test_random_is_reproducible_per_seed_and_key(clip):
    def draw(seed, key):
        return Frames(8, 32, "random", seed=seed)(sample_of(clip, key))["json"]["frames"]["indices"]

    assert draw(1, "a") == draw(1, "a")
    assert len({tuple(draw(s, k)) for s in (1, 2) for k in ("a", "b")}) > 1


KEYINT = 10


@pytest.fixture(scope="module")
def gop10() -> bytes:
    """60 frames at 10 fps, B-frames, a keyframe every ``KEYINT`` frames and nowhere else (no scene cuts)."""
    def images():
        for i in range(60):
            img = np.full((120, 160, 3), (9 * i) % 256, np.uint8)
            img[:60, : (i * 7) % 160] = 255 - (5 * i) % 256
            yield img

    return encode_video(images(), 10, gop=KEYINT, options={"preset": "veryfast", "bframes": "3", "crf": "30",
                                                            "x264-params": "scenecut=0"})


def decoded_key_flags(data: bytes) -> list:
    """``frame.key_frame`` of every frame of a full decode, in presentation order."""
    with av.open(io.BytesIO(data)) as container:
        return [bool(f.key_frame) for f in container.decode(video=0)]


@pytest.mark.parametrize("sampling,window", [("uniform", {}), ("random", {}), ("uniform", {"stride": 4})])
def test_keyframe_seek_returns_nearest_keyframes(gop10, sampling, window):
    out = Frames(num_frames=6, size=None, sampling=sampling, seek="keyframe", **window)(sample_of(gop10))
    meta, flags = out["json"]["frames"], decoded_key_flags(gop10)
    assert out["frames"].shape == (6, 120, 160, 3) and meta["num_frames"] == 6
    assert meta["indices"] == sorted(meta["indices"]) and all(flags[i] for i in meta["indices"])
    assert meta["timestamps"] == [i / 10 for i in meta["indices"]]
    exact = Frames(num_frames=6, size=None, sampling=sampling, **window)(sample_of(gop10))["json"]["frames"]
    assert [min(range(0, 60, KEYINT), key=lambda k: (abs(k - i), k)) for i in exact["indices"]] == meta["indices"]
    np.testing.assert_array_equal(out["frames"].numpy(), reference_frames(gop10, meta["indices"]))


def test_keyframe_seek_within_spans_resized(gop10):
    out = Frames(num_frames=4, size=64, seek="keyframe")(sample_of(gop10, span=[1.5, 4.2]))
    assert out["frames"].shape == (4, 64, 64, 3)
    assert out["json"]["frames"]["indices"] == [20, 20, 30, 40]            # keyframes inside [15, 42) only
    assert out["json"]["frames"]["timestamps"] == [0.5, 0.5, 1.5, 2.5]     # from the span's start
    no_keyframe = Frames(num_frames=3, size=None, seek="keyframe")(sample_of(gop10, span=[2.1, 2.9]))
    assert no_keyframe["json"]["frames"]["indices"] == [22, 25, 27]        # read exactly


def test_keyframe_seek_backends_agree(gop10):
    pyav, decord = (Frames(num_frames=6, size=None, backend=b, seek="keyframe")(sample_of(gop10)) for b in
                    ("pyav", "decord"))
    assert pyav["json"]["frames"] == decord["json"]["frames"] and torch.equal(pyav["frames"], decord["frames"])


def test_exact_seek_is_the_default(gop10):
    default, exact = Frames(num_frames=6, size=64)(sample_of(gop10)), Frames(6, 64, seek="exact")(sample_of(gop10))
    assert default["json"]["frames"] == exact["json"]["frames"] and torch.equal(default["frames"], exact["frames"])
    assert default["json"]["frames"]["indices"] == [5, 15, 25, 35, 45, 55]


@pytest.mark.parametrize("data,span,reason", [
    (b"not a video at all", None, "decodable"),
    (make_video(1.0, 64, 48, fps=10), [0.5, 5.0], "beyond"),
    (make_video(1.0, 64, 48, fps=10), None, "16 frames requested but the clip has 10"),
])
def test_bad_inputs_become_failed_to_subsample(data, span, reason):
    extra = {"span": span} if span else {}
    [record] = run_chain(sample_of(data, **extra), [Frames(num_frames=16, size=32)])
    assert record["json"]["status"] == FAILED_TO_SUBSAMPLE and "frames" not in record
    assert "MediaError" in record["json"]["error_message"] and reason in record["json"]["error_message"]


def test_decord_backend_agrees(clip):
    pyav = Frames(num_frames=6, size=None, backend="pyav")(sample_of(clip))["frames"]
    decord = Frames(num_frames=6, size=None, backend="decord")(sample_of(clip))["frames"]
    assert torch.equal(pyav, decord)


def test_config_and_pickling():
    frames = Frames(num_frames=8, size=112, sampling="random", seed=3)
    assert frames.config() == {"num_frames": 8, "size": 112, "sampling": "random", "fps": None, "stride": None,
                               "backend": "auto", "keep_media": False, "seed": 3, "seek": "exact"}
    assert describe(pickle.loads(pickle.dumps(frames))) == describe(frames)
    for bad in ({"sampling": "dense"}, {"fps": 2, "stride": 2}, {"num_frames": 0}, {"backend": "nope"},
                {"seek": "approximate"}):
        with pytest.raises(ValueError):
            Frames(**bad)
    with pytest.raises(ValueError, match="Frames seek must be one of .*'nearest'"):
        Frames(seek="nearest")


def test_dataset_with_frames_through_dataloader(tmp_path, url_rows):
    table = write_csv(str(tmp_path / "urls.csv"), url_rows)
    ds = VideoDataset(table, caption_col="caption", samples_per_shard=6, batch_size=3,
                      subsamplers=[Frames(num_frames=8, size=64)])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    batches = list(loader)
    assert sum(len(b["__key__"]) for b in batches) == len(url_rows)
    for batch in batches:
        assert batch["frames"].shape == (3, 8, 64, 64, 3) and batch["frames"].dtype == torch.uint8
        assert "mp4" not in batch and all(len(m["frames"]["indices"]) == 8 for m in batch["json"])


def test_decode_slots_are_per_process():
    from streamv2d.distribute import core_share
    from streamv2d.distribute.slots import decode_slot

    slots = decode_slot()
    assert decode_slot() is slots
    assert slots._free == core_share()   # the main process (no DataLoader worker) gets every core


def grants_after_queueing(slots, start_waiters, waiters):
    """Take the only slot, let ``start_waiters()`` queue ``waiters`` holders, release it: the grant order."""
    with slots.hold(-1):
        threads = start_waiters()
        while len(slots._waiting) < waiters:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    return slots.granted[1:]


def started(target):
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def start_holders(slots, seqs, one_by_one=False):
    """A thread per ``seq`` that takes a slot and gives it back; ``one_by_one``: each queued before the next."""
    def take(seq):
        with slots.hold(seq):
            pass

    threads = []
    for seq in seqs:
        threads.append(started(lambda s=seq: take(s)))
        while one_by_one and len(slots._waiting) < len(threads):
            time.sleep(0.01)
    return threads


@pytest.mark.timeout(60)
def test_decode_slots_go_to_the_earliest_row_first_then_in_arrival_order():
    slots = RecordingSlots()
    grants = grants_after_queueing(slots, lambda: start_holders(slots, [5, 2, 9, 1]), 4)
    assert [seq for seq, _ in grants] == [1, 2, 5, 9]
    slots = RecordingSlots()
    assert grants_after_queueing(slots, lambda: start_holders(slots, [None] * 3 + [7], True), 4)[0][0] == 7


@pytest.mark.timeout(60)
def test_tar_shard_with_keys_in_reverse_order_decodes_in_row_order(tmp_path, monkeypatch):
    import webdataset as wds

    import streamv2d.pipeline
    import streamv2d.subsamplers.base as base

    keys = [f"{i:03d}" for i in reversed(range(6))]
    data = make_video(0.5, 64, 48, fps=10)
    with wds.TarWriter(str(tmp_path / "00000.tar")) as writer:
        for key in keys:
            writer.write({"__key__": key, "mp4": data, "json": {"key": key, "status": "success"}})
    slots = RecordingSlots()
    monkeypatch.setattr(base, "decode_slot", lambda: slots)
    monkeypatch.setattr(streamv2d.pipeline, "core_share", lambda: 2)   # rows run in the pool on any machine
    # every row in flight at once (no slow start), so all six queue for the slot the test holds
    monkeypatch.setattr(streamv2d.pipeline, "ordered_map", functools.partial(ordered_map, initial=len(keys)))
    ds = VideoDataset(str(tmp_path / "00000.tar"), subsamplers=[Frames(num_frames=2, size=32)], fetch_threads=6)
    out = []
    grants = grants_after_queueing(slots, lambda: [started(lambda: out.extend(ds))], len(keys))
    assert grants == [(row, row) for row in range(len(keys))]   # asked for and given in row order
    assert [s["__key__"] for s in out] == keys                 # file order, every sample once
    assert all(set(s) == {"__key__", "__url__", "json", "frames"} for s in out)   # nothing about the row order
    assert all(set(s["json"]) == {"key", "status", "frames"} for s in out)
