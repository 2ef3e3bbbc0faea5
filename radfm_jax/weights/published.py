"""A published checkpoint the user holds (config.init.weights): which family it is, the config
fields that describe it, and its parameters in radfm_jax's layout."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from radfm_jax.errors import CheckpointError
from radfm_jax.weights import hf_bert, hf_clip, hf_vit
from radfm_jax.weights.tensor_files import checkpoint_folder, read_tensors

SUPPORTED = ("Hugging Face CLIPModel (both towers), ViTModel and Dinov2Model (RAD-DINO; image towers), BertModel "
             "and CXR-BERT (text towers): a folder with config.json and model.safetensors or pytorch_model.bin")


def _read_json(folder: Path, name: str) -> dict | None:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None


def checkpoint_config(path: str | os.PathLike) -> tuple[Path, dict]:
    """(the checkpoint's folder, its config.json), refusing families radfm_jax cannot read."""
    folder = checkpoint_folder(path)
    hf_config = _read_json(folder, "config.json")
    if hf_config is None:
        raise CheckpointError(f"{folder} has no config.json to say what model it holds; supported: {SUPPORTED}")
    if not (hf_clip.is_clip(hf_config) or hf_vit.family(hf_config) or hf_bert.family(hf_config)):
        family = hf_config.get("model_type") or hf_config.get("architectures") or "unknown"
        raise CheckpointError(f"{folder} holds a {family!r} model; radfm_jax imports: {SUPPORTED}")
    return folder, hf_config


def config_overrides(path: str | os.PathLike) -> list[str]:
    """Config overrides (`key=value`) that describe the checkpoint's model and its tokenizer."""
    folder, hf_config = checkpoint_config(path)
    if hf_vit.family(hf_config):
        return hf_vit.vit_overrides(hf_config)
    overrides = hf_clip.clip_overrides(hf_config) if hf_clip.is_clip(hf_config) else hf_bert.bert_overrides(hf_config)
    if (folder / "tokenizer.json").is_file():
        overrides.append(f"data.tokenizer_file={folder / 'tokenizer.json'}")
    return overrides


def start_overrides(path: str | os.PathLike, *, text: bool = False) -> list[str]:
    """What `radfm weights import` and `radfm train --weights` (`--text-weights`: `text`) put
    before the user's overrides: the checkpoint's architecture and tokenizer, and init.weights
    (init.text_weights)."""
    key = "init.text_weights" if text else "init.weights"
    return [*config_overrides(path), f"{key}={Path(path).expanduser().resolve()}"]


def load_published(path: str | os.PathLike, *, channels: int, scan_layers: bool, max_text_len: int,
                   input_size: int) -> dict[str, Any]:
    """The checkpoint's parameters as trees of NumPy arrays: a two-tower model's (CLIP),
    {"image": an image tower's} (ViT, DINOv2) or {"text": a text tower's} (BERT family)."""
    folder, hf_config = checkpoint_config(path)
    tensors = read_tensors(path)
    preprocessor = _read_json(folder, "preprocessor_config.json")
    if hf_clip.is_clip(hf_config):
        return hf_clip.import_clip(tensors, hf_config, channels=channels, scan_layers=scan_layers,
                                   max_text_len=max_text_len, hf_preprocessor=preprocessor, source=str(path))
    if hf_bert.family(hf_config):
        return hf_bert.import_bert(tensors, hf_config, scan_layers=scan_layers, max_text_len=max_text_len,
                                   source=str(path))
    return hf_vit.import_vit(tensors, hf_config, channels=channels, scan_layers=scan_layers, input_size=input_size,
                             hf_preprocessor=preprocessor, source=str(path))
