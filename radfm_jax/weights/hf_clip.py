"""Hugging Face `CLIPModel` checkpoints <-> radfm_jax's two-tower model (models/two_tower.py).

Import maps the checkpoint's config.json to radfm_jax config fields (`clip_overrides`) and its
tensors to the model's parameter tree (`import_clip`); export does the reverse
(`export_clip`). Everything is NumPy: no PyTorch.

What differs, and why the function is still the same:

- The key bias of attention is dropped: it adds one constant to each query's logits, which the
  softmax ignores (radfm_jax's attention has none).
- Images. CLIP reads RGB normalised per channel (the checkpoint's preprocessor_config.json
  image_mean / image_std); radfm_jax's pipeline gives grayscale (or one channel per CT window)
  normalised as (x - IMAGE_MEAN) / IMAGE_STD. The patch embedding folds both in: the kernel
  is rescaled per channel (and summed over RGB for grayscale, the image CLIP would see when
  the gray image is copied to all three channels, as CheXzero does), and the constant the
  normalisations differ by becomes the patch embedding's bias. Export unfolds it: the kernel
  is spread over RGB and the bias (CLIP's patch embedding has none) moves into the position
  embedding of the patch tokens, so import(export(params)) computes the same function and
  returns every parameter except those two, which trade a constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from radfm_jax.errors import CheckpointError, ConfigError
from radfm_jax.weights.torch_layout import (
    Params,
    block_in,
    block_out,
    block_tensor_names,
    check_names,
    fold_patch_embedding,
    image_normalisation,
    stack_layers,
    unfold_patch_embedding,
    unstack_layers,
)

# OpenAI CLIP's image normalisation, Hugging Face's default when a checkpoint has no
# preprocessor_config.json.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Hugging Face activation names -> radfm_jax's (models/layers.py ACTIVATIONS).
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
_EXPORTED_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# transformers' CLIPTextConfig / CLIPVisionConfig defaults, for config.json files that omit them.
_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                      layer_norm_eps=1e-5, eos_token_id=49407)
_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)
# layers.Block's parts in a CLIP encoder layer.
BLOCK_NAMES = {"query": "self_attn.q_proj", "key": "self_attn.k_proj", "value": "self_attn.v_proj",
               "out": "self_attn.out_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2", "norm1": "layer_norm1",
               "norm2": "layer_norm2"}
# Buffers some checkpoints carry that are not weights.
_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")



def is_clip(hf_config: dict) -> bool:
    return hf_config.get("model_type") == "clip" or "CLIPModel" in hf_config.get("architectures", [])


def _towers(hf_config: dict) -> tuple[dict, dict]:
    text = {**_TEXT_DEFAULTS, **hf_config.get("text_config", {})}
    vision = {**_VISION_DEFAULTS, **hf_config.get("vision_config", {})}
    return text, vision


def _activation(name: str, where: str) -> str:
    if name not in _ACTIVATIONS:
        raise CheckpointError(f"{where}.hidden_act={name!r} is not supported; radfm_jax has {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def clip_overrides(hf_config: dict) -> list[str]:
    """radfm_jax config overrides (`key=value`) describing the checkpoint's architecture."""
    text, vision = _towers(hf_config)
    projection = hf_config.get("projection_dim", 512)
    return [
        "model.image.name=vit", "model.image.pool=cls", "model.image.norm_pre=true",
        f"model.image.patch_size={vision['patch_size']}", f"model.image.width={vision['hidden_size']}",
        f"model.image.depth={vision['num_hidden_layers']}", f"model.image.heads={vision['num_attention_heads']}",
        f"model.image.mlp_ratio={vision['intermediate_size'] / vision['hidden_size']}",
        f"model.image.act={_activation(vision['hidden_act'], 'vision_config')}",
        f"model.image.norm_eps={vision['layer_norm_eps']}",
        "model.text.name=transformer", "model.text.pool=eos", "model.text.causal=true",
        f"model.text.width={text['hidden_size']}", f"model.text.depth={text['num_hidden_layers']}",
        f"model.text.heads={text['num_attention_heads']}",
        f"model.text.mlp_ratio={text['intermediate_size'] / text['hidden_size']}",
        f"model.text.act={_activation(text['hidden_act'], 'text_config')}",
        f"model.text.norm_eps={text['layer_norm_eps']}",
        f"model.embed_dim={projection}",
        f"data.input_size={vision['image_size']}",
        f"data.max_text_len={text['max_position_embeddings']}",
    ]


# --- tensors <-> parameters -----------------------------------------------------------------


def expected_names(hf_config: dict) -> list[str]:
    """Every tensor a CLIPModel of `hf_config` holds."""
    text, vision = _towers(hf_config)
    norm = ("weight", "bias")
    names = ["vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.class_embedding",
             "vision_model.embeddings.position_embedding.weight",
             *(f"vision_model.{n}.{k}" for n in ("pre_layrnorm", "post_layernorm") for k in norm),
             "text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
             *(f"text_model.final_layer_norm.{k}" for k in norm),
             "visual_projection.weight", "text_projection.weight", "logit_scale"]
    for tower, cfg in (("vision_model", vision), ("text_model", text)):
        names += [name for i in range(cfg["num_hidden_layers"])
                  for name in block_tensor_names(BLOCK_NAMES, f"{tower}.encoder.layers.{i}")]
    return names


def import_clip(tensors: dict[str, np.ndarray], hf_config: dict, *, channels: int, scan_layers: bool,
                max_text_len: int, hf_preprocessor: dict | None = None, source: str = "the checkpoint") -> Params:
    """The two-tower model's parameters (TwoTower's tree) from a CLIPModel's tensors."""
    text, vision = _towers(hf_config)
    check_names(tensors, expected_names(hf_config), source, "CLIPModel", _BUFFERS)

    def get(name: str) -> np.ndarray:
        return np.asarray(tensors[name], np.float32)

    vis = "vision_model"
    conv = get(f"{vis}.embeddings.patch_embedding.weight")
    blocks = [block_in(get, f"{vis}.encoder.layers.{i}", vision["num_attention_heads"], BLOCK_NAMES)
              for i in range(vision["num_hidden_layers"])]
    image = {
        "cls_token": get(f"{vis}.embeddings.class_embedding"),
        "pos_emb": get(f"{vis}.embeddings.position_embedding.weight"),
        "norm_pre": {"scale": get(f"{vis}.pre_layrnorm.weight"), "bias": get(f"{vis}.pre_layrnorm.bias")},
        "norm": {"scale": get(f"{vis}.post_layernorm.weight"), "bias": get(f"{vis}.post_layernorm.bias")},
    }
    txt = "text_model"
    text_blocks = [block_in(get, f"{txt}.encoder.layers.{i}", text["num_attention_heads"], BLOCK_NAMES)
                   for i in range(text["num_hidden_layers"])]
    positions = get(f"{txt}.embeddings.position_embedding.weight")
    text_tree = {
        "token_emb": {"embedding": get(f"{txt}.embeddings.token_embedding.weight")},
        "norm": {"scale": get(f"{txt}.final_layer_norm.weight"), "bias": get(f"{txt}.final_layer_norm.bias")},
    }
    visual_projection, text_projection = get("visual_projection.weight"), get("text_projection.weight")
    logit_scale = get("logit_scale")
    if max_text_len > positions.shape[0]:
        raise ConfigError(f"data.max_text_len={max_text_len} exceeds the checkpoint's "
                          f"{positions.shape[0]} text positions; set data.max_text_len <= {positions.shape[0]}")
    norm = image_normalisation(hf_preprocessor, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    kernel, bias = fold_patch_embedding(conv, None, channels, *norm)
    image["patch_embed"] = {"kernel": kernel, "bias": bias}
    image["encoder"] = {"layers": stack_layers(blocks, scan_layers)}
    text_tree["pos_emb"] = positions[:max_text_len]
    text_tree["encoder"] = {"layers": stack_layers(text_blocks, scan_layers)}
    return {
        "image": image, "text": text_tree,
        "image_proj": {"kernel": visual_projection.T}, "text_proj": {"kernel": text_projection.T},
        "log_logit_scale": np.asarray(logit_scale, np.float32).reshape(()),
        "logit_bias": np.zeros((), np.float32),
    }


def exportable(model_cfg: Any) -> list[str]:
    """What keeps a radfm_jax model from being a Hugging Face CLIPModel (empty: exportable)."""
    image, text = model_cfg.image, model_cfg.text
    problems = []
    if image.name != "vit" or image.pool != "cls" or not image.norm_pre or image.layer_scale:
        problems.append("the image tower must be model.image.name=vit with pool=cls, norm_pre=true and "
                        "layer_scale=0 (CLIP's vision tower)")
    if text.name != "transformer" or not text.causal or text.pool != "eos":
        problems.append("the text tower must be model.text.name=transformer with causal=true and pool=eos "
                        "(CLIP's text tower)")
    return problems


def export_clip(params: Params, model_cfg: Any, *, image_size: int, channels: int, eos_id: int,
                vocab_size: int, image_only: bool = False) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(tensors, config.json, preprocessor_config.json) of a Hugging Face CLIPModel computing
    what the radfm_jax two-tower model `params` (of `model_cfg`) computes; with `image_only`,
    of a CLIPVisionModelWithProjection (the image tower and its projection)."""
    problems = exportable(model_cfg)[:1] if image_only else exportable(model_cfg)
    if eos_id == 2 and not image_only:
        problems.append("the tokenizer ends texts with id 2, which Hugging Face CLIP reads as its legacy rule "
                        "(pool at argmax(input_ids)); export the image tower alone, or train with a data.tokenizer_file "
                        "whose end-of-text id is not 2")
    if problems:
        raise ConfigError("cannot export as a Hugging Face CLIPModel: " + "; ".join(problems))
    image_cfg, text_cfg = model_cfg.image, model_cfg.text
    image, text = params["image"], params["text"]
    tensors: dict[str, np.ndarray] = {}
    vis, txt = "vision_model", "text_model"
    p = image_cfg.patch_size
    width = image_cfg.width
    conv, constant = unfold_patch_embedding(image["patch_embed"]["kernel"], image["patch_embed"]["bias"], p,
                                            channels, np.asarray(OPENAI_CLIP_MEAN), np.asarray(OPENAI_CLIP_STD))
    hf_channels = conv.shape[1]
    positions = np.asarray(image["pos_emb"], np.float64).copy()
    positions[1:] += constant  # CLIP's patch conv has no bias
    tensors[f"{vis}.embeddings.patch_embedding.weight"] = conv
    tensors[f"{vis}.embeddings.class_embedding"] = np.asarray(image["cls_token"])
    tensors[f"{vis}.embeddings.position_embedding.weight"] = positions
    for ours, theirs in (("norm_pre", "pre_layrnorm"), ("norm", "post_layernorm")):
        tensors[f"{vis}.{theirs}.weight"] = np.asarray(image[ours]["scale"])
        tensors[f"{vis}.{theirs}.bias"] = np.asarray(image[ours]["bias"])
    for i, block in enumerate(unstack_layers(image["encoder"]["layers"], image_cfg.depth)):
        tensors.update(block_out(block, f"{vis}.encoder.layers.{i}", BLOCK_NAMES))
    tensors["visual_projection.weight"] = np.asarray(params["image_proj"]["kernel"]).T
    vision_config = {
        "hidden_size": width, "intermediate_size": int(width * image_cfg.mlp_ratio),
        "num_hidden_layers": image_cfg.depth, "num_attention_heads": image_cfg.heads, "num_channels": hf_channels,
        "image_size": image_size, "patch_size": p, "hidden_act": _EXPORTED_ACTIVATIONS[image_cfg.act],
        "layer_norm_eps": image_cfg.norm_eps, "projection_dim": model_cfg.embed_dim,
    }
    preprocessor = {"image_processor_type": "CLIPImageProcessor", "image_mean": list(OPENAI_CLIP_MEAN),
                    "image_std": list(OPENAI_CLIP_STD), "size": {"shortest_edge": image_size},
                    "crop_size": {"height": image_size, "width": image_size}, "do_convert_rgb": True}
    if image_only:
        config = {"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
                  **vision_config}
        return _float32(tensors), config, preprocessor
    tensors[f"{txt}.embeddings.token_embedding.weight"] = np.asarray(text["token_emb"]["embedding"])
    tensors[f"{txt}.embeddings.position_embedding.weight"] = np.asarray(text["pos_emb"])
    tensors[f"{txt}.final_layer_norm.weight"] = np.asarray(text["norm"]["scale"])
    tensors[f"{txt}.final_layer_norm.bias"] = np.asarray(text["norm"]["bias"])
    for i, block in enumerate(unstack_layers(text["encoder"]["layers"], text_cfg.depth)):
        tensors.update(block_out(block, f"{txt}.encoder.layers.{i}", BLOCK_NAMES))
    tensors["text_projection.weight"] = np.asarray(params["text_proj"]["kernel"]).T
    tensors["logit_scale"] = np.asarray(params["log_logit_scale"]).reshape(())
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": model_cfg.embed_dim,
        "logit_scale_init_value": math.log(model_cfg.init_temperature),
        "text_config": {
            "vocab_size": vocab_size, "hidden_size": text_cfg.width,
            "intermediate_size": int(text_cfg.width * text_cfg.mlp_ratio),
            "num_hidden_layers": text_cfg.depth, "num_attention_heads": text_cfg.heads,
            "max_position_embeddings": int(np.shape(text["pos_emb"])[0]),
            "hidden_act": _EXPORTED_ACTIVATIONS[text_cfg.act], "layer_norm_eps": text_cfg.norm_eps,
            "eos_token_id": eos_id, "pad_token_id": 0, "projection_dim": model_cfg.embed_dim,
        },
        "vision_config": vision_config,
    }
    return _float32(tensors), config, preprocessor


def _float32(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}
