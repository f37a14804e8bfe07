"""Reads shards with video2dataset's own dataloader and prints one JSON line per sample; run by
tests/test_v2d_reader.py with the python of .venv-v2d (video2dataset 1.3.0, see .ci/v2d-reader-env), never with
streamv2d's. Usage: ``python v2d_reader_probe.py MODE=URL...`` with MODE frames, bytes or records; each line
carries its ``job`` (the argument), so one start of the interpreter (video2dataset imports transformers) reads all."""
import json
import os
import sys
import tempfile

FRAMES = 4          # decoder_kwargs n_frames
FPS = 5             # decoder_kwargs fps
SIZE = 32           # resize_size (shorter side) and crop_size


def video_dataset(url: str, **kwargs):
    """get_video_dataset over one shard. Its torchdata path (local paths) asks torch.distributed for the rank,
    which torch 2.13 refuses without a group (torch 2.1 raised the RuntimeError it catches): a one-process gloo
    group on a file store stands in for a single-node job."""
    import torch.distributed as dist
    from video2dataset.dataloader import get_video_dataset

    if not url.startswith("pipe:") and not dist.is_initialized():
        store = os.path.join(tempfile.mkdtemp(), "store")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    return get_video_dataset(url, **kwargs)


def frames(url: str):
    """Decoded, resized, cropped and batched, as a training job reads a video2dataset output."""
    dataset = video_dataset(url, batch_size=2, decoder_kwargs={"n_frames": FRAMES, "fps": FPS, "num_threads": 1},
                            resize_size=SIZE, crop_size=SIZE, enforce_additional_keys=["txt", "json"])
    for batch in dataset:
        for i, key in enumerate(batch["__key__"]):
            yield {"key": key, "mp4": list(batch["mp4"][i].shape), "dtype": str(batch["mp4"].dtype),
                   "txt": batch["txt"][i], "json": batch["json"][i],
                   "original_height": int(batch["original_height"][i][0]), "native_fps": int(batch["native_fps"][i])}


def raw_bytes(url: str):
    """No decoder_kwargs: its loader yields each sample's members as bytes."""
    for sample in video_dataset(url, batch_size=1):
        yield {"key": sample["__key__"], "members": sorted(k for k in sample if not k.startswith("__")),
               "mp4_head": sample["mp4"][4:8].decode("latin-1"), "json": json.loads(sample["json"])}


def records(url: str):
    """Every record, failed rows included, through the webdataset release video2dataset reads with."""
    import webdataset as wds

    for sample in wds.WebDataset(url).decode():
        yield {"key": sample["__key__"], "members": sorted(k for k in sample if not k.startswith("__")),
               "json": sample["json"], "txt": sample.get("txt")}


if __name__ == "__main__":
    for job in sys.argv[1:]:
        mode, url = job.split("=", 1)
        for line in {"frames": frames, "bytes": raw_bytes, "records": records}[mode](url):
            print("SAMPLE " + json.dumps({"job": job, **line}), flush=True)
