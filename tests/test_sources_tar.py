"""WebDataset tar source: grouping by key, fsspec paths, unsafe members refused and counted."""
import io
import json
import tarfile

import webdataset as wds

from streamv2d.sources import TarSource


def add(tar, name, data, **info):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for k, v in info.items():
        setattr(member, k, v)
    tar.addfile(member, io.BytesIO(data))


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
        add(tar, "k.pyd", b"\x80\x04K\x01.")   # a pickle stays opaque bytes
    sample = next(TarSource(str(path)).read(TarSource(str(path)).shards()[0]))
    assert sample["json"] == {"a": 1} and sample["pyd"] == b"\x80\x04K\x01."


def test_pathlib_paths_are_accepted(tmp_path):
    import streamv2d as sv

    make_shard(tmp_path / "00000.tar", 2)
    assert len(list(sv.VideoDataset(tmp_path / "00000.tar"))) == 2
    assert len(list(sv.VideoDataset([tmp_path / "00000.tar"]))) == 2
    assert len(list(sv.VideoDataset(tmp_path))) == 2          # a folder of tars
