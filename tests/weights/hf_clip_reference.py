"""Small Hugging Face CLIP models made by transformers itself (random weights, no downloads),
written as the folders users hold, and radfm_jax models loaded from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPECIALS = ["<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"]


def prompt_sentences(name: str) -> list[str]:
    """Every sentence of experiments/prompts/<name>.json (written blind, by people who never saw
    the code under test)."""
    table = json.loads((REPO / "experiments" / "prompts" / f"{name}.json").read_text())
    return [text for finding, sides in table.items() if finding != "_comment"
            for side in sides.values() for text in side]


def write_tokenizer(path: Path) -> Path:
    """A CLIP-style byte-level BPE tokenizer.json (lower-casing, <|startoftext|> ... <|endoftext|>)
    trained by the tokenizers library on the held-out CXR prompts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(prompt_sentences("heldout_cxr"), trainer)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    tok.save(str(path))
    return path


def make_clip(folder: Path, *, hidden_act: str = "quick_gelu", seed: int = 0, image_size: int = 32,
              max_positions: int = 24, safetensors: bool = True):
    """A random-init transformers.CLIPModel saved (config.json, weights, tokenizer.json) in
    `folder`; biases and norms randomised too, so every mapped tensor matters. Returns it."""
    import torch
    import transformers
    from tokenizers import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(write_tokenizer(folder / "tokenizer.json")))
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=max_positions, hidden_act=hidden_act,
                         bos_token_id=tok.token_to_id("<|startoftext|>"),
                         eos_token_id=tok.token_to_id("<|endoftext|>"), pad_token_id=0),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8, hidden_act=hidden_act),
        projection_dim=16)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for _, value in model.named_parameters():
            if value.ndim == 1:
                value.add_(torch.randn_like(value) * 0.2)
    model.save_pretrained(folder, safe_serialization=safetensors)
    return model


def hf_embeddings(model, rgb: np.ndarray, ids: np.ndarray):
    """(image, text) embeddings and logits of a transformers CLIPModel; `rgb` (B, 3, H, W) in
    [0, 1], normalised with CLIP's constants (a radiograph: its gray copied to the 3 channels,
    as CheXzero feeds them)."""
    import torch

    from radfm_jax.weights.hf_clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    mean = np.asarray(OPENAI_CLIP_MEAN, np.float32)[None, :, None, None]
    std = np.asarray(OPENAI_CLIP_STD, np.float32)[None, :, None, None]
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), pixel_values=torch.tensor((rgb - mean) / std),
                    attention_mask=torch.tensor(ids != 0))
    return out.image_embeds.numpy(), out.text_embeds.numpy(), out.logits_per_image.numpy()


def radfm_model(params: dict, model_cfg, vocab_size: int, max_len: int, image_shape, channels: int = 1):
    """A TwoTower of `model_cfg` holding `params`."""
    from flax import nnx

    from radfm_jax.models.two_tower import TwoTower

    model = TwoTower(model_cfg, vocab_size, max_len, image_shape, nnx.Rngs(0), channels=channels)
    graphdef, state = nnx.split(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)
