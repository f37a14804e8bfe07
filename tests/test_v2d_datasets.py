"""Each page of docs/datasets runs as written: its config and its command, on a loopback stand-in table with the
dataset's columns (finding 7 of issue 13)."""
from __future__ import annotations

import json
import os
import re
import shlex

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamv2d.cli import main
from streamv2d.demo import LoopbackServer
from tests.conftest import write_csv

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "datasets")
ROWS = 3


def blocks(page: str, language: str):
    return [part.split("```", 1)[0] for part in open(os.path.join(DOCS, page)).read().split(f"```{language}\n")[1:]]


def command(page: str):
    [bash] = [b for b in blocks(page, "bash") if b.lstrip().startswith("streamv2d video2dataset")]
    return shlex.split(bash.replace("\\\n", " "))[1:]


def option(argv, name):
    for token in argv:
        match = re.match(rf"--{name.replace('_', '[-_]')}=(.*)", token)
        if match:
            return match.group(1)
    return None


def calm_video(audio: bool, shade: int, seconds: float = 8.0, fps: int = 10) -> bytes:
    """One scene (a small square drifting over a flat background: no cut for the detector), a keyframe a
    second, AAC sound when ``audio``."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for n in range(int(seconds * fps)):
            image = np.full((64, 96, 3), (shade, 120, 200 - shade), np.uint8)
            image[20:36, n % 80:n % 80 + 16] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = n
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            tone = (0.1 * np.sin(np.arange(int(seconds * 16000)) / 5)).astype(np.float32)[None, :]
            for start in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="flt",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return buf.getvalue()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Eight-second clips with a keyframe a second, every other one with sound, served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("stand-in")
    for i in range(ROWS):
        (folder / f"v{i}.mp4").write_bytes(calm_video(audio=i % 2 == 0, shade=60 * i))
    with LoopbackServer(str(folder)) as server:
        yield str(folder), [server.url(f"videos/v{i}.mp4") for i in range(ROWS)]


def stand_in(page: str, folder: str, urls):
    """The table the page's command reads, with the dataset's columns (URLs or local paths to the clips)."""
    local = [os.path.join(folder, f"v{i}.mp4") for i in range(ROWS)]
    rows = {
        "WebVid.md": [{"contentUrl": u, "name": f"clip {i}", "videoid": 100 + i, "page_idx": i, "page_dir": "d",
                       "duration": "PT00H00M08S"} for i, u in enumerate(urls)],
        "HDVILA.md": [{"video_id": f"id{i}", "url": u, "clips": [[0.0, 2.0]]} for i, u in enumerate(urls)],
        "Kinetics.md": [{"path": p, "label": "abseiling", "youtube_id": f"y{i}", "time_start": 0, "time_end": 8,
                         "split": "train", "is_cc": 0} for i, p in enumerate(local)],
        "MSRVTT.md": [{"location": p, "video_id": f"video{i}", "category": 3, "id": i,
                       **{f"caption_{c}": f"caption {c} of {i}" for c in range(20)}} for i, p in enumerate(local)],
        "ACAV.md": [{"video_link": u, "title": f"t{i}", "clips": [[1.0, 3.0]], "videoID": f"v{i}", "start": 1.0,
                     "end": 3.0} for i, u in enumerate(urls)],
        "VideoCC.md": [{"video_url": u, "start": 0.0, "end": 8.0, "caption": f"c{i}"} for i, u in enumerate(urls)],
    }[page]
    return rows


PAGES = ["WebVid.md", "HDVILA.md", "Kinetics.md", "MSRVTT.md", "ACAV.md", "VideoCC.md"]


@pytest.mark.parametrize("page", PAGES)
def test_dataset_page_runs(page, tmp_path, monkeypatch, videos):
    monkeypatch.chdir(tmp_path)
    argv = command(page)
    table = option(argv, "url_list")
    rows = stand_in(page, *videos)
    if table.endswith(".csv"):
        write_csv(table, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), table)
    config = option(argv, "config")
    if config and config.endswith(".yaml"):
        [text] = blocks(page, "yaml")
        (tmp_path / config).write_text(text)
    assert main(["video2dataset", *argv]) == 0
    out = tmp_path / option(argv, "output_folder")
    stats = json.load(open(out / "00000_stats.json"))
    assert stats["count"] == ROWS and stats["successes"] == ROWS, stats["status_dict"]
    import streamv2d as sv

    samples = list(sv.VideoDataset(str(out / "00000.tar")))
    assert all("mp4" in s for s in samples)
    check = {
        "WebVid.md": lambda s: s["json"]["videoid"] in (100, 101, 102) and s["txt"].startswith("clip"),
        "HDVILA.md": lambda s: "cuts" in s["json"] and ("m4a" in s) == s["json"]["url"].endswith(("v0.mp4", "v2.mp4")),
        "Kinetics.md": lambda s: s["txt"] == "abseiling" and s["json"]["split"] == "train",
        "MSRVTT.md": lambda s: s["json"]["caption_19"].startswith("caption 19"),
        "ACAV.md": lambda s: s["__key__"].endswith("_00000") and s["json"]["clips"] == [[1.0, 3.0]],
        "VideoCC.md": lambda s: s["json"]["video_metadata"]["format"]["format_name"].startswith("mov")
                                and s["json"]["cuts"] and s["json"]["clips"],
    }[page]
    assert samples and all(check(s) for s in samples)
