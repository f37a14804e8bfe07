"""FrameEmbedding: CLIP-style image embeddings of a few frames per video (extra ``embedding``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ...sample import Sample
from .base import ModelStage, pretrained_kwargs
from .media import video_frames


class FrameEmbedding(ModelStage):
    """Adds ``json["frame_embedding"]``: the L2-normalised mean of the image embeddings of ``num_frames``
    frames (``embedding``), the frames' ``timestamps``, the ``model``, and with ``per_frame`` every frame's
    normalised embedding. ``model``: a folder or hub name of a transformers model with ``get_image_features``
    (CLIP, SigLIP) or image embeddings in its output (``CLIPVisionModelWithProjection``), and its image
    processor. All frames of a batch of rows go through the model in one call."""

    extra = "embedding"
    metadata_fields = {"frame_embedding": "json"}

    def __init__(self, model: str, num_frames: int = 4, size: Optional[int] = 224, per_frame: bool = False,
                 batch_size: int = 8, device: str = "auto", max_wait: float = 0.05,
                 cache_dir: Optional[str] = None) -> None:
        super().__init__(model, batch_size, device, max_wait, cache_dir)
        if num_frames < 1:
            raise ValueError(f"FrameEmbedding: num_frames must be at least 1, got {num_frames!r}")
        self.num_frames, self.size, self.per_frame = num_frames, size, per_frame

    def load(self, device: str) -> Dict[str, Any]:
        from transformers import AutoImageProcessor, AutoModel

        options = pretrained_kwargs(self.model, self.cache_dir)
        model = AutoModel.from_pretrained(self.model, **options).to(device).eval()
        return {"model": model, "processor": AutoImageProcessor.from_pretrained(self.model, **options),
                "device": device}

    def prepare(self, sample: Sample) -> Dict[str, Any]:
        frames, info = video_frames(sample, self.num_frames, self.size)
        return {"frames": frames, "timestamps": info["timestamps"]}

    def forward(self, bundle: Dict[str, Any], inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        import torch

        images = [frame for item in inputs for frame in item["frames"]]
        pixels = bundle["processor"](images=images, return_tensors="pt")["pixel_values"].to(bundle["device"])
        with torch.inference_mode():
            features = _image_features(bundle["model"], pixels).float().cpu().numpy()
        outputs, start = [], 0
        for item in inputs:
            count = len(item["frames"])
            outputs.append({"features": features[start:start + count], "timestamps": item["timestamps"]})
            start += count
        return outputs

    def finish(self, sample: Sample, output: Dict[str, Any]) -> Sample:
        per_frame = _normalised(output["features"])
        record = {"model": self.model, "timestamps": output["timestamps"],
                  "embedding": _normalised(per_frame.mean(axis=0, keepdims=True))[0].tolist()}
        if self.per_frame:
            record["per_frame"] = per_frame.tolist()
        sample.setdefault("json", {})["frame_embedding"] = record
        return sample


def _image_features(model, pixels):
    """Image embeddings from the model types that make them: ``get_image_features`` (a tensor, or an output
    holding ``pooler_output``), else ``image_embeds`` or the pooled output of a forward pass."""
    if hasattr(model, "get_image_features"):
        out = model.get_image_features(pixel_values=pixels)
    else:
        out = model(pixel_values=pixels)
    if hasattr(out, "image_embeds") and out.image_embeds is not None:
        return out.image_embeds
    return out if not hasattr(out, "pooler_output") else out.pooler_output


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
