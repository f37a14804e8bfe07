"""Models made from a config with random weights and saved like hub checkpoints, so the real loading, batching
and generation code runs where no weights can be downloaded (tests, ``benchmarks/models.py``). ``scale``
``tiny`` is a few thousand parameters; ``base`` has the real architecture's sizes (CLIP ViT-B/32, a
ViT-base + GPT-2 captioner, Whisper base)."""
from __future__ import annotations

import os
from typing import Dict, List

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def _tokenizer(path: str, vocab_size: int) -> None:
    """A word-level tokenizer of ``vocab_size`` entries (the special ones first), saved in ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(SPECIAL + [f"w{i}" for i in range(vocab_size - len(SPECIAL))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)


#: how much the output head is scaled: random logits then differ by far more than the rounding of another batch
#: size or kernel, so greedy decoding gives the same words one sample at a time and batched
LOGIT_SCALE = 30.0


def _generation(model, tokens: int) -> None:
    """Greedy generation that starts at <s>, stops at </s>, never emits a special token before the end, and
    does not flip between near-equal words (:data:`LOGIT_SCALE`)."""
    import torch

    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(LOGIT_SCALE)
    model.generation_config.update(decoder_start_token_id=1, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                   suppress_tokens=[0, 1, 3], begin_suppress_tokens=[2], max_length=tokens + 4)


def clip(path: str, scale: str = "tiny") -> str:
    """A CLIP model and its image processor (32 px images when tiny, 224 px at base)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tiny = scale == "tiny"
    vision = dict(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2) if tiny else {}
    text = dict(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=1, eos_token_id=2) if tiny else {}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=8 if tiny else 512)
    CLIPModel(config).save_pretrained(path)
    side = 32 if tiny else 224
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(path)
    return path


def captioner(path: str, scale: str = "tiny") -> str:
    """A ViT encoder + GPT-2 decoder image captioner, its image processor and tokenizer."""
    from transformers import (GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig,
                              ViTImageProcessor)

    tiny = scale == "tiny"
    vocab = 32 if tiny else 1024
    encoder = ViTConfig(**(dict(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2) if tiny else {}))
    decoder = GPT2Config(vocab_size=vocab, n_positions=64, add_cross_attention=True, is_decoder=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         **(dict(n_embd=16, n_layer=1, n_head=2) if tiny else dict(n_layer=6)))
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    model = VisionEncoderDecoderModel(config)
    _generation(model, 20)
    model.save_pretrained(path)
    side = 32 if tiny else 224
    ViTImageProcessor(size={"height": side, "width": side}).save_pretrained(path)
    _tokenizer(path, vocab)
    return path


def whisper(path: str, scale: str = "tiny") -> str:
    """A Whisper model, its feature extractor (8 mel bins when tiny, 80 at base) and a tokenizer."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    tiny = scale == "tiny"
    vocab = 40 if tiny else 1024
    sizes: Dict[str, int] = (dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8)
                             if tiny else dict(d_model=512, encoder_layers=6, decoder_layers=6,
                                               encoder_attention_heads=8, decoder_attention_heads=8,
                                               encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80))
    config = WhisperConfig(vocab_size=vocab, max_target_positions=64, decoder_start_token_id=1, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, begin_suppress_tokens=None, suppress_tokens=None, **sizes)
    model = WhisperForConditionalGeneration(config)
    _generation(model, 20)
    model.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=sizes["num_mel_bins"]).save_pretrained(path)
    _tokenizer(path, vocab)
    return path


def all_models(root: str, scale: str = "tiny") -> Dict[str, str]:
    """Every kind above under ``root``: ``{"clip": path, "captioner": path, "whisper": path}``."""
    made: Dict[str, str] = {}
    for name, build in (("clip", clip), ("captioner", captioner), ("whisper", whisper)):
        made[name] = build(os.path.join(root, name), scale)
    return made


__all__: List[str] = ["all_models", "captioner", "clip", "whisper"]
