"""video2dataset's function and command line on streamv2d, and its outputs (findings 4–5 of issue 13)."""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import struct

import numpy as np
import pytest

import streamv2d as sv
from streamv2d.cli import main
from streamv2d.v2d.cli import parse
from tests.conftest import write_csv


@pytest.fixture()
def webvid(tmp_path, server, corpus_names):
    """A WebVid-style table (contentUrl, name, videoid …) on the loopback server."""
    rows = [{"contentUrl": server.url(f"videos/{n}"), "name": f"caption {i}", "videoid": 1000 + i,
             "page_dir": f"dir{i}"} for i, n in enumerate(corpus_names[:4])]
    return write_csv(str(tmp_path / "webvid.csv"), rows)


def run(table, out, **kwargs):
    options = {"url_col": "contentUrl", "caption_col": "name", "progress": False, **kwargs}
    return sv.video2dataset(table, output_folder=str(out), **options)


def test_fire_style_command_lines_parse():
    argv = ['--url_list=results_2M_val.csv', '--input_format', 'csv', '--output-format=webdataset',
            "--save_additional_columns=[videoid,page_idx,page_dir,duration]", '--enable_wandb=True',
            '--stage', 'caption', '--encode_formats', '{}', '--config=default', '--max_shard_retry=3']
    assert parse(argv) == {"url_list": "results_2M_val.csv", "input_format": "csv", "output_format": "webdataset",
                           "save_additional_columns": ["videoid", "page_idx", "page_dir", "duration"],
                           "enable_wandb": True, "stage": "caption", "encode_formats": {}, "config": "default",
                           "max_shard_retry": 3}
    assert parse(["x.csv", "--enable_wandb"]) == {"url_list": "x.csv", "enable_wandb": True}
    assert parse(["--url_list=x", '--encode_formats={"optical_flow": "npy"}'])["encode_formats"] == \
        {"optical_flow": "npy"}
    with pytest.raises(ValueError, match="unknown argument --colour"):
        parse(["--url_list=x", "--colour=red"])


def test_command_line_downloads_like_video2dataset(tmp_path, webvid):
    out = tmp_path / "dataset"
    code = main(["video2dataset", f"--url_list={webvid}", "--input_format=csv", "--output-format=webdataset",
                 f"--output_folder={out}", "--url_col=contentUrl", "--caption_col=name",
                 "--save_additional_columns=[videoid,page_dir]", "--config=default"])
    assert code == 0
    assert sorted(os.listdir(out)) == [".streamv2d", "00000.parquet", "00000.tar", "00000_stats.json"]
    samples = list(sv.VideoDataset(str(out / "00000.tar")))
    assert [s["txt"] for s in samples] == [f"caption {i}" for i in range(4)]
    assert samples[0]["json"]["page_dir"] == "dir0" and samples[0]["json"]["yt_meta_dict"] == {}
    assert samples[0]["json"]["videoid"] == 1000       # csv columns keep pandas' types, as video2dataset reads them


def test_default_output_is_files_and_overwrite_starts_again(tmp_path, webvid):
    out = tmp_path / "files"
    run(webvid, out)
    assert sorted(os.listdir(out / "00000"))[:3] == ["00000000.json", "00000000.mp4", "00000000.txt"]
    marker = out / "00000" / "stale.txt"
    marker.write_text("x")
    run(webvid, out)                                  # incremental: complete shards are skipped
    assert marker.exists()
    run(webvid, out, incremental_mode="overwrite")    # overwrite: the folder is made again
    assert not marker.exists()
    with pytest.raises(ValueError, match="incremental_mode: 'append'"):
        run(webvid, out, incremental_mode="append")


def _crc32c(data: bytes) -> int:
    """CRC-32C bit by bit, from its definition (polynomial 0x82F63B78, reflected)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_varint(data, i):
    value = shift = 0
    while True:
        value |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
        if data[i - 1] < 0x80:
            return value, i


def _fields(data):
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        assert key & 7 == 2
        size, i = _read_varint(data, i)
        yield key >> 3, data[i:i + size]
        i += size


def _example(record: bytes) -> dict:
    """A tf.train.Example decoded from the protobuf wire format, independently of streamv2d's code."""
    features = {}
    [(number, body)] = list(_fields(record))
    assert number == 1
    for _, entry in _fields(body):
        parts = dict(_fields(entry))
        kind, values = next(_fields(parts[2]))   # bytes_list = 1, float_list = 2, int64_list = 3
        items = [v for _, v in _fields(values)]   # bytes: one field each; numbers: one packed field
        if kind == 2:
            items = list(struct.unpack(f"<{len(items[0]) // 4}f", items[0]))
        elif kind == 3:
            packed, items, i = items[0], [], 0
            while i < len(packed):
                value, i = _read_varint(packed, i)
                items.append(value)
        features[parts[1].decode()] = items
    return features


def test_tfrecord_output_reads_with_a_reader_from_the_spec(tmp_path, webvid):
    out = tmp_path / "tf"
    run(webvid, out, output_format="tfrecord", save_additional_columns=["videoid"])
    assert sorted(os.listdir(out)) == [".streamv2d", "00000.parquet", "00000.tfrecord", "00000_stats.json"]
    data = (out / "00000.tfrecord").read_bytes()
    examples, i = [], 0
    while i < len(data):
        length_bytes = data[i:i + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == _masked(_crc32c(length_bytes))
        payload = data[i + 12:i + 12 + length]
        assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == _masked(_crc32c(payload))
        examples.append(_example(payload))
        i += 16 + length
    assert [e["key"] for e in examples] == [[f"0000000{k}".encode()] for k in range(4)]
    first = examples[0]
    assert first["mp4"][0][4:8] == b"ftyp" and first["txt"] == [b"caption 0"]
    assert first["status"] == [b"success"] and json.loads(first["json"][0])["videoid"] == 1000
    from streamv2d.cache.formats import tfrecord_samples

    shard = list(tfrecord_samples(str(out / "00000.tfrecord")))      # and our own reader gets the samples back
    assert shard[0]["mp4"] == first["mp4"][0] and shard[0]["json"]["key"] == "00000000"
    assert examples[0]["videoid"] == [1000]                          # an int64 feature


def test_dummy_output_keeps_stats_only(tmp_path, webvid):
    out = tmp_path / "dummy"
    result = run(webvid, out, output_format="dummy")
    assert not result.failed and sorted(os.listdir(out)) == [".streamv2d", "00000.parquet", "00000_stats.json"]
    assert json.load(open(out / "00000_stats.json"))["successes"] == 4


def test_tsv_gz_and_webdataset_inputs(tmp_path, server, corpus_names):
    table = tmp_path / "t.tsv.gz"
    with gzip.open(table, "wt") as f:
        lines = [f"{server.url('videos/' + n)}\tc{i}\n" for i, n in enumerate(corpus_names[:2])]
        f.write("url\tcaption\n" + "".join(lines))
    first = tmp_path / "first"
    sv.video2dataset(str(table), output_folder=str(first), input_format="tsv.gz", output_format="webdataset",
                     caption_col="caption", progress=False)
    subset = tmp_path / "subset"
    sv.video2dataset(str(first / "{00000..00000}.tar"), output_folder=str(subset), input_format="webdataset",
                     output_format="webdataset", stage="subset", config="downsample_ml", progress=False)
    assert os.path.exists(subset / "00000_stats.json")
    with pytest.raises(ValueError, match="stage 'subset' reads webdataset"):
        sv.video2dataset(str(table), output_folder=str(tmp_path / "x"), input_format="tsv.gz", stage="subset")


def test_optical_flow_stage_writes_metadata_shards(tmp_path, webvid):
    pytest.importorskip("cv2")
    first = tmp_path / "dataset"
    run(webvid, first, output_format="webdataset")
    flow = tmp_path / "flow"
    sv.video2dataset(str(first / "00000.tar"), output_folder=str(flow), input_format="webdataset",
                     output_format="webdataset", stage="optical_flow", encode_formats={"optical_flow": "npy"},
                     config="optical_flow", progress=False)
    samples = list(sv.VideoDataset(str(flow / "00000.tar")))
    assert sorted(samples[0]) == ["__key__", "__url__", "json", "npy"]   # the media is not copied
    array = np.load(io.BytesIO(samples[0]["npy"]), allow_pickle=False)
    assert array.dtype == np.float16 and array.shape[-1] == 2 and min(array.shape[1:3]) == 16
    assert samples[0]["json"]["mean_optical_flow_magnitude"] >= 0


def test_encode_formats_audio_is_kept_even_without_sound(tmp_path, webvid):
    out = tmp_path / "av"
    run(webvid, out, output_format="webdataset", encode_formats={"video": "mp4", "audio": "m4a"})
    samples = list(sv.VideoDataset(str(out / "00000.tar")))
    assert all(s["json"]["status"] == "success" for s in samples)
    with_audio = [s for s in samples if "m4a" in s]
    assert with_audio and len(with_audio) < len(samples)   # every third corpus video has sound


def test_arguments_are_checked_up_front(tmp_path, webvid):
    with pytest.raises(ValueError, match="output_format: 'hdf5'"):
        run(webvid, tmp_path / "o", output_format="hdf5")
    with pytest.raises(ValueError, match="tmp_dir: '/no/such/dir'"):
        run(webvid, tmp_path / "o", tmp_dir="/no/such/dir")
    with pytest.raises(ValueError, match="max_shard_retry"):
        run(webvid, tmp_path / "o", max_shard_retry=-1)
    with pytest.raises(ValueError, match="config: 'nonesuch'"):
        run(webvid, tmp_path / "o", config="nonesuch")
    assert main(["video2dataset", "--url_list", webvid, "--stage=train"]) == 2


def test_failed_shards_are_retried(tmp_path, webvid, monkeypatch):
    import streamv2d.v2d.api as api

    calls = []
    real = api.materialize

    def flaky(source, output, job, **kwargs):
        result = real(source, output, job, **kwargs)
        calls.append(1)
        return result if len(calls) > 1 else type(result)(result.skipped, 0, [0], result.summary)

    monkeypatch.setattr(api, "materialize", flaky)
    assert not run(webvid, tmp_path / "o", max_shard_retry=2).failed and len(calls) == 2


def test_wandb_offline(tmp_path, webvid, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(webvid, tmp_path / "o", enable_wandb=True, wandb_project="v2d-test")
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*"))


def test_yt_metadata_and_subtitles(tmp_path, monkeypatch):
    """yt_metadata_args give json["yt_meta_dict"] (info less formats, subtitles parsed from WebVTT)."""
    from streamv2d.demo import LoopbackServer
    import streamv2d.subsamplers.youtube as youtube

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "en.vtt").write_text("WEBVTT\n\n00:01.000 --> 00:02.500\nHello <b>there</b>\n\n"
                                              "00:00:02.500 --> 00:00:04.000\nHello there\nGeneral\n")
    with LoopbackServer(str(tmp_path / "subs")) as srv:
        info = {"id": "abc", "title": "T", "formats": [1], "thumbnails": [2], "subtitles": {}, "automatic_captions": {},
                "requested_formats": [], "requested_subtitles": {"en": {"url": srv.url("videos/en.vtt"), "ext": "vtt"}}}
        seen = []
        monkeypatch.setattr(youtube, "extract_info", lambda url, options: seen.append(options) or dict(info))
        stage = youtube.YtMetadata(writesubtitles="all", subtitleslangs=["en", "fr"], get_info=True)
        out = stage({"__key__": "k", "json": {"url": "https://www.youtube.com/watch?v=abc"}})
    meta = out["json"]["yt_meta_dict"]
    assert meta["info"] == {"id": "abc", "title": "T", "requested_subtitles": info["requested_subtitles"]}
    assert meta["subtitles"] == {"en": [{"start": "00:00:01.000", "end": "00:00:02.500", "lines": ["Hello there"]},
                                        {"start": "00:00:02.500", "end": "00:00:04.000", "lines": ["General"]}]}
    assert seen[0]["writesubtitles"] and seen[0]["subtitleslangs"] == ["en", "fr"]
    assert stage({"json": {"url": "http://127.0.0.1/v.mp4"}})["json"]["yt_meta_dict"] == {}


def test_captions_are_subtitles_clip_and_caption(tmp_path):
    from streamv2d.demo import make_video
    from streamv2d.subsamplers import run_chain
    from streamv2d.subsamplers.registry import V2DContext, from_video2dataset

    stages = from_video2dataset({}, [], V2DContext(captions_are_subtitles=True))
    assert [type(s).__name__ for s in stages] == ["SubtitleClips", "Clip", "SubtitleCaptions"]
    subs = {"en": [{"start": "00:00:00.000", "end": "00:00:01.000", "lines": ["one"]},
                   {"start": "00:00:01.000", "end": "00:00:02.000", "lines": ["two"]}],
            "fr": [{"start": "00:00:00.000", "end": "00:00:01.000", "lines": ["un"]},
                   {"start": "00:00:01.000", "end": "00:00:02.000", "lines": ["deux"]}]}
    sample = {"__key__": "k", "mp4": make_video(3.0, 64, 48, fps=10, gop=5),
              "json": {"key": "k", "status": "success", "yt_meta_dict": {"subtitles": subs}}}
    out = run_chain(sample, stages)
    assert [o["txt"] for o in out] == ["one", "two"]
    assert out[1]["json"]["clip_subtitles"] == [{"start": "00:00:01.000", "end": "00:00:02.000",
                                                 "lines": {"en": ["two"], "fr": ["deux"]}}]


def test_parquet_output_is_one_file_of_metadata_and_media(tmp_path, webvid):
    """It was {id}_samples.parquet beside a metadata {id}.parquet; video2dataset writes one {id}.parquet."""
    import pyarrow.parquet as pq

    out = tmp_path / "pq"
    run(webvid, out, output_format="parquet", save_additional_columns=["videoid"])
    assert sorted(os.listdir(out)) == [".streamv2d", "00000.parquet", "00000_stats.json"]
    table = pq.read_table(out / "00000.parquet")
    assert {"key", "url", "caption", "status", "error_message", "videoid", "txt", "mp4"} <= set(table.column_names)
    rows = table.to_pylist()
    assert rows[0]["videoid"] == 1000 and rows[0]["mp4"][4:8] == b"ftyp" and rows[0]["txt"] == "caption 0"
    from streamv2d.cache.layout import ShardPaths
    from streamv2d.cache.readers import read_output_shard

    back = list(read_output_shard(ShardPaths(str(out), 0, "parquet")))   # and the cache reads it back
    assert [s["__key__"] for s in back] == [r["key"] for r in rows] and back[0]["mp4"] == rows[0]["mp4"]
    assert back[0]["json"]["videoid"] == 1000


def test_clips_are_keyed_and_described_as_video2dataset_writes_them():
    """Its ClippingSubsampler keys clips ``{key}_{i:05d}`` (we wrote ``{key}_{i}``), gives every clip of a video
    with subtitles its ``clip_subtitles``, and keeps ``yt_meta_dict`` on the first clip only."""
    from streamv2d.demo import make_video
    from streamv2d.subsamplers import Clip, run_chain

    subs = {"en": [{"start": "00:00:00.000", "end": "00:00:01.000", "lines": ["one"]},
                   {"start": "00:00:01.000", "end": "00:00:02.000", "lines": ["two"]}]}
    sample = {"__key__": "000000012", "mp4": make_video(3.0, 64, 48, fps=10, gop=5),
              "json": {"key": "000000012", "status": "success", "clips": [[0, 1], [1, 2]],
                       "yt_meta_dict": {"info": {"id": "x"}, "subtitles": subs}}}
    out = run_chain(sample, [Clip()])
    assert [o["__key__"] for o in out] == ["000000012_00000", "000000012_00001"]
    assert [o["json"]["key"] for o in out] == ["000000012_00000", "000000012_00001"]
    assert out[0]["json"]["yt_meta_dict"]["info"] == {"id": "x"} and out[1]["json"]["yt_meta_dict"] == {}
    assert [o["json"]["clip_subtitles"][0]["lines"] for o in out] == [{"en": ["one"]}, {"en": ["two"]}]
