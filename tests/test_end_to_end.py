"""The thinnest whole path: URL table → loopback fetch → samples → DataLoader."""
import torch

import streamv2d as sv
from conftest import write_csv


def test_url_table_through_dataloader(tmp_path, url_rows, server):
    table = write_csv(str(tmp_path / "urls.csv"), url_rows)
    ds = sv.VideoDataset(table, caption_col="caption", samples_per_shard=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    samples = list(loader)
    assert len(samples) == len(url_rows)
    assert len({s["__key__"] for s in samples}) == len(url_rows)
    for s in samples:
        assert s["mp4"][4:8] == b"ftyp"
        assert s["txt"] == s["json"]["caption"]
        assert s["json"]["status"] == "success" and s["json"]["url"].startswith(server.base_url)
