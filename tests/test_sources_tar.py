"""WebDataset tar source: grouping by key, fsspec paths, unsafe members refused and counted."""
import io
import json
import tarfile

import pytest
import webdataset as wds

from streamv2d.sources import TarSource


def add(tar, name, data, **info):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for k, v in info.items():
        setattr(member, k, v)
    tar.addfile(member, io.BytesIO(data))


def tar_of(path, members):
    """A tar of ``(name, bytes)`` members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            add(tar, name, data)
    return str(path)


def read_all(source):
    return [s for shard in source.shards() for s in source.read(shard)]


def only_sample(source):
    (sample,) = read_all(source)
    return sample


def failures(samples):
    """Error messages of the failure records, by the key their metadata row names."""
    return {s["json"]["key"]: s["json"]["error_message"] for s in samples
            if s.get("json", {}).get("status") == "failed_to_download"}


def make_shard(path, n, start=0):
    with wds.TarWriter(str(path)) as writer:
        for i in range(start, start + n):
            writer.write({"__key__": f"{i:09d}", "mp4": b"\x00\x00\x00\x18ftypisom" + bytes(20),
                          "txt": f"caption {i}", "json": {"url": f"u{i}", "key": f"{i:09d}"}})
    return str(path)


def test_brace_pattern_groups_members_by_key(tmp_path):
    for k in range(3):
        make_shard(tmp_path / f"{k:05d}.tar", 4, start=4 * k)
    src = TarSource(str(tmp_path / "{00000..00002}.tar"))
    assert [s.id for s in src.shards()] == [0, 1, 2]
    samples = [s for shard in src.shards() for s in src.read(shard)]
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(12)]
    assert samples[5]["txt"] == "caption 5" and samples[5]["json"]["url"] == "u5"
    assert samples[5]["mp4"].startswith(b"\x00\x00\x00\x18ftyp")


def test_glob_and_memory_filesystem(tmp_path):
    import fsspec

    make_shard(tmp_path / "a.tar", 2)
    with fsspec.open("memory://shards/00000.tar", "wb") as f:
        f.write((tmp_path / "a.tar").read_bytes())
    src = TarSource("memory://shards/*.tar")
    assert len(list(src.read(src.shards()[0]))) == 2


def test_path_traversal_and_links_are_refused_and_counted(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, "good.mp4", b"\x00\x00\x00\x18ftypisom")
        add(tar, "good.txt", b"fine")
        add(tar, "../escape.mp4", b"x")
        add(tar, "/abs/olute.mp4", b"x")
        add(tar, "a/../../up.txt", b"x")
        add(tar, "link.mp4", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    src = TarSource(str(path))
    samples = list(src.read(src.shards()[0]))
    good = [s for s in samples if "json" not in s]
    refused = [s for s in samples if s.get("json", {}).get("status") == "failed_to_download"]
    assert [s["__key__"] for s in good] == ["good"] and good[0]["txt"] == "fine"
    assert len(refused) == 4
    assert all("escape" in s["json"]["error_message"] or "absolute" in s["json"]["error_message"]
               or "link" in s["json"]["error_message"] for s in refused)
    assert not (tmp_path.parent / "escape.mp4").exists()


def test_corrupt_tar_ends_with_a_failure_record(tmp_path):
    good = make_shard(tmp_path / "ok.tar", 3)
    data = open(good, "rb").read()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2 + 100] + b"garbage" * 100)
    src = TarSource(str(tmp_path / "cut.tar"))
    samples = list(src.read(src.shards()[0]))
    assert samples[-1]["json"]["status"] == "failed_to_download"
    assert "unreadable tar" in samples[-1]["json"]["error_message"]


def test_json_member_is_parsed_never_unpickled(tmp_path):
    path = tmp_path / "p.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, "k.json", json.dumps({"a": 1}).encode())
        add(tar, "k.pyd", b"\x80\x04K\x01.")   # allowed, a pickle stays opaque bytes
    sample = only_sample(TarSource(str(path), allow_pickle=True))
    assert sample["json"] == {"a": 1} and sample["pyd"] == b"\x80\x04K\x01."


def test_pathlib_paths_are_accepted(tmp_path):
    import streamv2d as sv

    make_shard(tmp_path / "00000.tar", 2)
    assert len(list(sv.VideoDataset(tmp_path / "00000.tar"))) == 2
    assert len(list(sv.VideoDataset([tmp_path / "00000.tar"]))) == 2
    assert len(list(sv.VideoDataset(tmp_path))) == 2          # a folder of tars


MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(20)


@pytest.mark.parametrize("payload, problem", [
    (b"not json{", "not JSON"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b"7", "a JSON int, not an object"),
    (b"\xff\xfe{\x00}", "not JSON"),
    (b"[" * 100000, "not JSON"),                            # nesting deeper than the parser recurses
    (b'{"status": "failed_to_download", "error_message": ["x"]}', "'error_message' is not a string"),
])
def test_a_malformed_json_member_fails_its_sample_only(tmp_path, payload, problem):
    path = tar_of(tmp_path / "j.tar", [("a.mp4", MP4), ("a.json", b'{"n": 1}'),
                                      ("b.mp4", MP4), ("b.json", payload), ("c.mp4", MP4)])
    samples = read_all(TarSource(path))
    assert [s["__key__"] for s in samples] == ["a", "b", "c"]
    assert samples[0]["json"] == {"n": 1} and samples[2]["mp4"] == MP4
    assert set(failures(samples)) == {"b"} and "b.json" in failures(samples)["b"]
    assert problem in failures(samples)["b"] and "mp4" not in samples[1]


def test_a_duplicate_key_keeps_the_first_sample_and_fails_the_later_group(tmp_path):
    path = tar_of(tmp_path / "d.tar", [("a.mp4", MP4), ("a.txt", b"first"), ("b.mp4", MP4),
                                       ("a.mp4", MP4), ("a.txt", b"second"), ("c.mp4", MP4)])
    samples = read_all(TarSource(path))
    assert [s["json"]["key"] if "json" in s else s["__key__"] for s in samples] == ["a", "b", "a", "c"]
    assert samples[0]["txt"] == "first" and "json" not in samples[0]
    assert "duplicate key 'a'" in samples[2]["json"]["error_message"]
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == len(keys)                      # a journal keyed by __key__ tells every row apart


def test_a_repeated_extension_fails_the_sample_instead_of_overwriting(tmp_path):
    path = tar_of(tmp_path / "r.tar", [("a.txt", b"one"), ("a.txt", b"two"), ("b.txt", b"fine")])
    samples = read_all(TarSource(path))
    assert "duplicate member 'a.txt'" in failures(samples)["a"]
    assert samples[1] == {"__key__": "b", "__url__": path, "txt": "fine"}


def test_a_reserved_extension_cannot_replace_the_key(tmp_path):
    path = tar_of(tmp_path / "k.tar", [("a.__key__", b"other"), ("a.mp4", MP4)])
    assert "a.__key__" in failures(read_all(TarSource(path)))["a"]


@pytest.mark.parametrize("name", ["k.pyd", "k.pickle", "k.pkl", "k.pth", "k.pt", "k.meta.pkl", "k.PKL"])
def test_pickle_capable_members_fail_their_sample_unless_allowed(tmp_path, name):
    path = tar_of(tmp_path / "p.tar", [("k.mp4", MP4), (name, b"\x80\x04K\x01.")])
    message = failures(read_all(TarSource(path)))["k"]
    assert name in message and "allow_pickle" in message
    ext = name.split(".", 1)[1]
    assert only_sample(TarSource(path, allow_pickle=True))[ext] == b"\x80\x04K\x01."


def test_every_extension_webdataset_unpickles_or_torch_loads_is_refused():
    from webdataset import autodecode

    from streamv2d.sources.tar import PICKLE_EXTENSIONS

    loaders = {autodecode.unpickle_loads, autodecode.decoders["pth"]}
    assert {ext for ext, load in autodecode.decoders.items() if load in loaders} <= PICKLE_EXTENSIONS


def test_an_oversized_member_fails_its_sample_and_the_next_one_is_read(tmp_path):
    path = tar_of(tmp_path / "big.tar", [("a.mp4", bytes(2048)), ("a.txt", b"x"), ("b.mp4", MP4)])
    samples = read_all(TarSource(path, max_member_bytes=1024))
    assert "a.mp4 has 2048 bytes, over max_member_bytes=1024" in failures(samples)["a"]
    assert samples[1]["mp4"] == MP4


def test_the_member_cap_defaults_to_the_fetch_cap():
    from streamv2d.fetch import FetchConfig

    assert TarSource.__init__.__kwdefaults__["max_member_bytes"] == FetchConfig().max_bytes == 256 << 20
