"""Model stages (finding 6 of issue 13): tiny models made from configs at test time, saved like checkpoints,
loaded and run by the real code — once per process, batched across rows, on CPU here."""
from __future__ import annotations

import os
import pickle
import threading

import numpy as np
import pytest

pytest.importorskip("transformers", reason="model stages need the caption/whisper/embedding extras")

import streamv2d as sv  # noqa: E402
from streamv2d.demo import make_video  # noqa: E402
from streamv2d.subsamplers.models import (Caption, FrameEmbedding, MicroBatcher, Transcribe,  # noqa: E402
                                          pick_device, synth)
from streamv2d.subsamplers.models import base as model_base  # noqa: E402
from streamv2d.subsamplers.registry import V2DContext, from_video2dataset  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return synth.all_models(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def videos():
    return [make_video(2.0, 64, 48, fps=10, audio=True, seed=i) for i in range(3)]


def samples(videos):
    return [{"__key__": f"k{i}", "mp4": v, "json": {"key": f"k{i}", "status": "success"}} for i, v in enumerate(videos)]


def stages(models):
    return [FrameEmbedding(models["clip"], num_frames=2, size=32, batch_size=2),
            Caption(models["captioner"], size=32, max_new_tokens=4, batch_size=2),
            Transcribe(models["whisper"], max_new_tokens=4, batch_size=2)]


def test_each_stage_batched_equals_one_at_a_time(models, videos):
    for stage in stages(models):
        one = [stage(s) for s in samples(videos)]
        many = stage.process_batch(samples(videos))      # 3 samples in batches of 2
        for a, b in zip(one, many):
            if isinstance(stage, FrameEmbedding):
                assert np.allclose(a["json"]["frame_embedding"]["embedding"], b["json"]["frame_embedding"]["embedding"],
                                   atol=1e-5)
                assert len(a["json"]["frame_embedding"]["embedding"]) == 8
            else:
                assert a["json"] == b["json"]
    caption = stages(models)[1](samples(videos)[0])["json"]["generated_caption"]
    assert len(caption.split()) == 4
    transcript = stages(models)[2](samples(videos)[0])["json"]["whisper_transcript"]
    [segment] = transcript["segments"]
    assert segment["start"] == 0.0 and segment["end"] == pytest.approx(2.0, abs=0.05)


def test_loaded_once_per_process_and_picklable(models, videos, monkeypatch):
    loads = []
    stage = FrameEmbedding(models["clip"], num_frames=1, size=32)
    real = stage.load
    monkeypatch.setattr(stage, "load", lambda device: loads.append(device) or real(device))
    monkeypatch.setattr(model_base, "_MODELS", {})
    for s in samples(videos):
        stage(s)
    assert loads == ["cpu"] == [pick_device("auto")]
    copy = pickle.loads(pickle.dumps(FrameEmbedding(models["clip"], num_frames=1, size=32)))
    assert copy.config() == FrameEmbedding(models["clip"], num_frames=1, size=32).config()


def test_micro_batcher_coalesces_concurrent_rows():
    sizes = []
    batcher = MicroBatcher(lambda items: sizes.append(len(items)) or [i * 10 for i in items], batch_size=4,
                           max_wait=60.0)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.submit(i))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [4] and results == {0: 0, 1: 10, 2: 20, 3: 30}
    lone = MicroBatcher(lambda items: [len(items)] * len(items), batch_size=4, max_wait=0.0)
    assert lone.submit("x") == 1        # a lone row does not wait for company that never comes


def test_a_failing_batch_fails_each_of_its_samples(models, videos):
    stage = FrameEmbedding(models["clip"], num_frames=1, size=32)
    [out] = sv.subsamplers.run_chain({"__key__": "bad", "mp4": b"not a video", "json": {}}, [stage])
    assert out["json"]["status"] == "failed_to_subsample"


def test_rows_of_a_shard_are_batched_through_the_pipeline(tmp_path, models, server, corpus_names, monkeypatch):
    from tests.conftest import write_csv

    sizes = []
    stage = FrameEmbedding(models["clip"], num_frames=1, size=32, batch_size=4, max_wait=1.0)
    real = stage.forward
    monkeypatch.setattr(stage, "forward", lambda bundle, inputs: sizes.append(len(inputs)) or real(bundle, inputs))
    table = write_csv(str(tmp_path / "t.csv"), [{"url": server.url(f"videos/{n}")} for n in corpus_names[:8]])
    out = list(sv.VideoDataset(table, subsamplers=[stage], fetch_threads=8))
    assert len(out) == 8 and all(s["json"]["frame_embedding"]["embedding"] for s in out)
    assert sum(sizes) == 8 and max(sizes) > 1      # rows met in one forward pass


def test_v2d_caption_and_whisper_configs_run(tmp_path, models, webdataset_shard):
    [caption] = from_video2dataset({"CaptionSubsampler": {"args": {"captioner_args": {
        "video_captioner": models["captioner"], "prompt": None}}}}, [],
        V2DContext(dataloader_args={"batch_size": 2, "resize_size": [32, 32], "decoder_kwargs": {"n_frames": 2}}))
    assert isinstance(caption, Caption) and caption.field == "vblip" and caption.to_txt
    [whisper] = from_video2dataset({"WhisperSubsampler": {"args": {"model_name": models["whisper"], "batch_size": 4,
                                                                   "compute_type": "float32"}}}, [])
    assert isinstance(whisper, Transcribe) and whisper.model == models["whisper"]
    assert Transcribe("large-v2").model == "openai/whisper-large-v2"
    config = {"subsampling": {"CaptionSubsampler": {"args": {"captioner_args": {
        "video_captioner": models["captioner"], "prompt": None}}}},
        "reading": {"dataloader_args": {"batch_size": 2, "resize_size": 32, "decoder_kwargs": {"n_frames": 1}}}}
    out = tmp_path / "captions"
    sv.video2dataset(webdataset_shard, output_folder=str(out), input_format="webdataset", output_format="webdataset",
                     stage="caption", encode_formats={}, config=config, progress=False)
    written = list(sv.VideoDataset(str(out / "00000.tar")))
    assert written and sorted(written[0]) == ["__key__", "__url__", "json", "txt"]
    assert written[0]["txt"] == written[0]["json"]["vblip"] and written[0]["txt"]


@pytest.fixture()
def webdataset_shard(tmp_path, server, corpus_names):
    from tests.conftest import write_csv

    table = write_csv(str(tmp_path / "t.csv"), [{"url": server.url(f"videos/{n}")} for n in corpus_names[:3]])
    sv.video2dataset(table, output_folder=str(tmp_path / "dataset"), output_format="webdataset", progress=False)
    return os.path.join(str(tmp_path / "dataset"), "00000.tar")
