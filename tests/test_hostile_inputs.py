"""Untrusted input through the whole path: hostile tars written through the cache, tar members too large to
hold, media headers declaring absurd sizes, keys that cannot be files."""
import json
import os
import struct
import subprocess
import sys
import tarfile
import textwrap

import pyarrow.parquet as pq
import pytest

from conftest import tar_of

from streamv2d.cache import CacheStore, TarSpool, write_through
from streamv2d.decode.media import MAX_PIXELS, MediaError, open_media
from streamv2d.decode.pyav import PyAVReader
from streamv2d.demo.synth import make_video
from streamv2d.fetch import FetchConfig
from streamv2d.job import Job
from streamv2d.shard import ShardJob
from streamv2d.sources import TarSource
from streamv2d.subsamplers import CutDetection, Probe
from streamv2d.subsamplers.base import run_chain
from streamv2d.subsamplers.probe import probe
from streamv2d.subsamplers.video import Resolution, Transcode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(20)


def cached_pass(tar_path, cache, fmt="tar", stop_after=None):
    """Write a tar source's one shard through the cache; ``stop_after`` rows, then stop like a killed run."""
    shard_job = ShardJob(Job(source=TarSource(tar_path), fetch=FetchConfig(threads=1)))
    store = CacheStore.for_job(str(cache), shard_job, fmt=fmt)
    stream = write_through(shard_job, 0, store)
    if stop_after is None:
        return list(stream), store
    head = [next(stream) for _ in range(stop_after)]
    stream.close()
    return head, store


def metadata(store):
    return pq.read_table(store.paths(0).meta).to_pylist()


def stats(store):
    with open(store.paths(0).stats) as f:
        return json.load(f)


# -- tars --------------------------------------------------------------------------------------------------------

def test_malformed_json_members_are_counted_failures_and_the_shard_publishes(tmp_path):
    path = tar_of(tmp_path / "in.tar", [("a.mp4", MP4), ("a.json", b"not json{"), ("b.mp4", MP4),
                                        ("b.json", b"[1]"), ("c.mp4", MP4), ("c.json", b"\xff\xfe"),
                                        ("d.mp4", MP4), ("d.json", b'{"ok": 1}')])
    samples, store = cached_pass(path, tmp_path / "cache")
    assert store.is_complete(0)
    assert [s["json"].get("status") for s in samples] == ["failed_to_download"] * 3 + [None]
    counts = stats(store)
    assert (counts["count"], counts["successes"], counts["failed_to_download"]) == (4, 1, 3)
    assert [r["key"] for r in metadata(store)] == ["a", "b", "c", "d"]


def test_duplicate_keys_give_the_same_shard_resumed_or_not(tmp_path):
    path = tar_of(tmp_path / "in.tar", [("a.mp4", MP4), ("a.txt", b"1"), ("b.mp4", MP4),
                                        ("a.mp4", MP4), ("a.txt", b"2"), ("c.mp4", MP4)])
    _, whole = cached_pass(path, tmp_path / "whole")
    cached_pass(path, tmp_path / "resumed", stop_after=1)
    _, resumed = cached_pass(path, tmp_path / "resumed")
    with open(whole.paths(0).data, "rb") as a, open(resumed.paths(0).data, "rb") as b:
        assert a.read() == b.read()
    assert metadata(whole) == metadata(resumed) and len(metadata(whole)) == 4
    assert stats(resumed)["failed_to_download"] == stats(whole)["failed_to_download"] == 1
    with tarfile.open(whole.paths(0).data) as tar:
        assert tar.getnames() == ["a.mp4", "a.txt", "b.mp4", "c.mp4"]


def test_pickle_members_never_reach_an_output_shard(tmp_path):
    path = tar_of(tmp_path / "in.tar", [("a.mp4", MP4), ("a.pyd", b"\x80\x04K\x01."), ("b.mp4", MP4)])
    _, store = cached_pass(path, tmp_path / "cache")
    with tarfile.open(store.paths(0).data) as tar:
        assert tar.getnames() == ["a.json", "b.mp4"]   # a's failure record, without its members
    assert "pickle-capable member 'a.pyd'" in metadata(store)[0]["error_message"]


_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, tarfile
    from streamv2d.sources import TarSource

    def sparse_tar(path, size):
        '''big.mp4 of ``size`` zero bytes (a hole on disk), then small.mp4 and a terminated archive.'''
        big, small = tarfile.TarInfo("big.mp4"), tarfile.TarInfo("small.mp4")
        big.size, small.size = size, 4
        with open(path, "wb") as f:
            f.write(big.tobuf(tarfile.PAX_FORMAT))
            f.seek(f.tell() + size + (-size % 512))
            f.write(small.tobuf(tarfile.PAX_FORMAT) + b"tiny" + bytes(508 + 1024))

    def grown_mb(size):
        sparse_tar(sys.argv[1], size)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        src = TarSource(sys.argv[1])
        samples = list(src.read(src.shards()[0]))
        assert samples[-1]["mp4"] == b"tiny", samples
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        return grown, samples[0].get("json", {}).get("error_message")

    from streamv2d.sources.tar import MAX_MEMBER_BYTES
    print(*grown_mb(MAX_MEMBER_BYTES + 1), sep="|")           # just over the default max_member_bytes
    print(*grown_mb(200 << 20), sep="|")
""")


def test_an_oversized_member_is_skipped_unread_and_a_large_one_read_once(tmp_path):
    """Peak memory in a fresh process: a member over the default cap (FetchConfig.max_bytes) is passed over
    without being read, and one under it is held once (tarfile's own read held two copies)."""
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "big.tar")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    (skipped_mb, message), (read_mb, _) = [line.split("|") for line in done.stdout.splitlines()]
    from streamv2d.sources.tar import MAX_MEMBER_BYTES

    assert f"over max_member_bytes={MAX_MEMBER_BYTES}" in message
    assert float(skipped_mb) < 64
    assert float(read_mb) < 1.4 * 200


# -- media headers ---------------------------------------------------------------------------------------------
# A valid 64x64 H.264 MP4 is made with PyAV, then its boxes are patched: the SPS in avcC (re-encoded bit by bit,
# its Exp-Golomb sizes change length), the sample entry's size, the sample count, the timescale and durations.

def _boxes(data, start, end):
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        yield start, size, kind
        start += size


def _box(data, path, start=0, end=None):
    """Offset of the box at ``path`` (e.g. moov/trak/tkhd)."""
    for offset, size, kind in _boxes(data, start, len(data) if end is None else end):
        if kind == path[0].encode():
            return offset if len(path) == 1 else _box(data, path[1:], offset + 8, offset + size)
    raise KeyError(path)


_STBL = ["moov", "trak", "mdia", "minf", "stbl"]
_SAMPLE_ENTRY = 16   # stsd: box header, version/flags, entry count; then the avc1 entry
_AVCC = 8 + 78       # avc1: box header and the visual sample entry's fields; then its avcC child


class _Bits:
    def __init__(self, data):
        self.text, self.pos = "".join(f"{b:08b}" for b in data), 0

    def take(self, n):
        self.pos += n
        return int(self.text[self.pos - n:self.pos] or "0", 2)

    def ue(self):
        zeros = self.text.index("1", self.pos) - self.pos
        self.take(zeros)
        return self.take(zeros + 1) - 1


def _ue(value):
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def _sps_declaring(nal, width, height):
    """An H.264 SPS (libx264's: no scaling lists) declaring ``width`` x ``height``."""
    bits = _Bits(nal.replace(b"\0\0\3", b"\0\0"))
    bits.take(8)                                    # NAL header
    high = bits.take(8) >= 100                      # profile; then constraints and level
    bits.take(16), bits.ue()                        # ... and the SPS id
    if high:
        bits.ue(), bits.ue(), bits.ue()             # chroma format, luma and chroma bit depths
        assert bits.take(2) == 0                    # transform bypass, no scaling matrix
    bits.ue()                                       # frame_num bits
    if bits.ue() == 0:                              # POC type 0 (2 without B-frames, 1 libx264 never writes)
        bits.ue()
    bits.ue(), bits.take(1)                         # reference frames, gaps allowed
    head = bits.text[:bits.pos]
    bits.ue(), bits.ue()                            # the size in macroblocks, minus one
    tail = bits.text[bits.pos:].rstrip("0")[:-1]    # up to the stop bit
    text = head + _ue(width // 16 - 1) + _ue(height // 16 - 1) + tail + "1"
    text += "0" * (-len(text) % 8)
    out, zeros = bytearray(), 0
    for byte in bytes(int(text[i:i + 8], 2) for i in range(0, len(text), 8)):
        if zeros >= 2 and byte <= 3:                # emulation prevention
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def sps_size(mp4, width, height):
    """``mp4`` whose SPS declares ``width`` x ``height`` (the container's sample entry keeps 64x64)."""
    data = bytearray(mp4)
    stsd = _box(data, _STBL + ["stsd"])
    avcc = stsd + _SAMPLE_ENTRY + _AVCC
    assert data[avcc + 4:avcc + 8] == b"avcC" and data[avcc + 13] & 31 == 1
    length = struct.unpack(">H", data[avcc + 14:avcc + 16])[0]
    sps = _sps_declaring(bytes(data[avcc + 16:avcc + 16 + length]), width, height)
    data[avcc + 16:avcc + 16 + length] = sps
    struct.pack_into(">H", data, avcc + 14, len(sps))
    parents = [_box(data, _STBL[:i]) for i in range(1, len(_STBL) + 1)] + [stsd, stsd + _SAMPLE_ENTRY, avcc]
    for offset in parents:                          # moov comes after mdat: no chunk offset moves
        struct.pack_into(">I", data, offset, struct.unpack(">I", data[offset:offset + 4])[0] + len(sps) - length)
    return bytes(data)


def entry_size(mp4, width, height):
    """``mp4`` whose sample entry (stsd/avc1) declares ``width`` x ``height``."""
    data = bytearray(mp4)
    struct.pack_into(">HH", data, _box(data, _STBL + ["stsd"]) + _SAMPLE_ENTRY + 32, width, height)
    return bytes(data)


def sample_count(mp4, count):
    """``mp4`` whose sample tables list ``count`` samples of one byte."""
    data = bytearray(mp4)
    struct.pack_into(">II", data, _box(data, _STBL + ["stsz"]) + 12, 1, count)
    struct.pack_into(">I", data, _box(data, _STBL + ["stts"]) + 16, count)
    return bytes(data)


def lasting(mp4, seconds_per_frame):
    """``mp4`` whose 10 frames last ``seconds_per_frame`` each: media timescale 1 s, stts, mdhd and edit list."""
    data = bytearray(mp4)
    mdhd = _box(data, ["moov", "trak", "mdia", "mdhd"])
    struct.pack_into(">II", data, mdhd + 20, 1, 10 * seconds_per_frame)
    struct.pack_into(">I", data, _box(data, _STBL + ["stts"]) + 20, seconds_per_frame)
    struct.pack_into(">I", data, _box(data, ["moov", "trak", "edts", "elst"]) + 16, 1000 * 10 * seconds_per_frame)
    return bytes(data)


@pytest.fixture(scope="module")
def small_mp4():
    return make_video(1.0, 64, 64, 10)


def test_the_patched_files_differ_only_where_meant(small_mp4):
    assert probe(sps_size(small_mp4, 64, 64))["width"] == 64          # the SPS rewriter is lossless
    assert probe(lasting(small_mp4, 3))["duration"] == 30.0


def transcoded(data):
    (out,) = run_chain({"__key__": "k", "mp4": data, "json": {}}, [Transcode([Resolution(32)])])
    return out


def test_a_bitstream_larger_than_its_header_is_refused_by_every_opener(small_mp4):
    huge = sps_size(small_mp4, 16000, 16000)
    with pytest.raises(MediaError, match="16000x16000 .* exceed max_pixels=33177600"):
        probe(huge)                                  # the decoding open: before the frames are allocated
    with pytest.raises(MediaError, match="16000x16000 frames .* over max_pixels"):
        PyAVReader(huge).read([0])                   # header says 64x64: the decoder's own cap
    out = transcoded(huge)
    assert out["json"]["status"] == "failed_to_subsample" and "max_pixels" in out["json"]["error_message"]
    (cut,) = run_chain({"__key__": "k", "mp4": huge, "json": {}}, [CutDetection()])
    assert "max_pixels" in cut["json"]["error_message"]


def test_a_header_with_no_frame_size_is_a_media_error_not_a_division_by_zero(small_mp4):
    broken = entry_size(sps_size(small_mp4, 100000, 100000), 0, 0)
    out = transcoded(broken)
    assert "no frame size (0x0)" in out["json"]["error_message"]
    with pytest.raises(MediaError, match="no frame size"):
        PyAVReader(broken)


def test_declared_frame_counts_and_durations_are_checked(small_mp4):
    with pytest.raises(MediaError, match="declares 2147483647 frames in"):
        PyAVReader(sample_count(small_mp4, 2 ** 31 - 1))
    with pytest.raises(MediaError, match="declares 1000000 s"):
        probe(lasting(small_mp4, 100000))


def test_max_pixels_is_a_parameter_of_every_open(small_mp4):
    assert MAX_PIXELS == 7680 * 4320
    open_media(small_mp4, max_pixels=64 * 64).close()
    with pytest.raises(MediaError, match="64x64 .* exceed max_pixels=4095"):
        open_media(small_mp4, max_pixels=64 * 64 - 1)
    with pytest.raises(MediaError, match="max_pixels=4095"):
        open_media(small_mp4, pixel_format=True, max_pixels=64 * 64 - 1)
    (probed,) = run_chain({"__key__": "k", "mp4": small_mp4}, [Probe()])
    assert probed["json"]["video_summary"]["width"] == 64


# -- keys that cannot be files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sample, problem", [
    ({"__key__": "a.mp4/x", "mp4": b"x"}, "'.'"),
    ({"__key__": "d/" + "k" * 201, "mp4": b"x"}, "201 bytes"),
    ({"__key__": "é" * 101, "mp4": b"x"}, "202 bytes"),
    ({"__key__": "a//b", "mp4": b"x"}, "empty"),
    ({"__key__": "a\0b", "mp4": b"x"}, "NUL"),
    ({"__key__": "bad\udcff", "mp4": b"x"}, "UTF-8"),
    ({"__key__": "k", "x/y": b"x"}, "extension"),
    ({"__key__": "k", "e" * 60: b"x"}, "extension"),
])
def test_keys_whose_members_could_not_be_files_are_refused(tmp_path, sample, problem):
    spool = TarSpool(str(tmp_path / "s.tar.partial"))
    with pytest.raises(ValueError, match=problem):
        spool.write(sample)
    spool.close()


def test_a_files_shard_with_unwritable_keys_still_publishes(tmp_path):
    path = tar_of(tmp_path / "in.tar", [("a.mp4", MP4), ("a.mp4/x.mp4", MP4), ("k" * 256 + ".mp4", MP4),
                                        ("b.mp4", MP4)])
    samples, store = cached_pass(path, tmp_path / "cache", fmt="files")
    assert store.is_complete(0)
    assert sorted(os.listdir(store.paths(0).data)) == ["a.mp4", "b.mp4"]
    # the failure records the shard cannot hold are in its metadata only; the pass yields what a read returns
    assert [s["__key__"] for s in samples] == ["a", "b"] == [s["__key__"] for s in store.read(0)]
    meta = metadata(store)
    assert [m["status"] for m in meta] == ["success", "failed_to_subsample", "failed_to_subsample", "success"]
    assert "a '.'" in meta[1]["error_message"] and "256 bytes" in meta[2]["error_message"]
