"""Hugging Face `ViTModel` and `Dinov2Model` checkpoints (RAD-DINO's format) as radfm_jax image
towers (models/vit.py with pool=cls).

Both are pre-norm ViTs with a class token; DINOv2 adds layer scale (`model.image.layer_scale`)
and 14-pixel patches. The image tower's output is the final-normed class token: Dinov2Model's
pooler_output, ViTModel's last_hidden_state[:, 0] (its tanh pooler head, trained for ImageNet-21k
classification, is not part of the tower and is left out). The patch embedding is folded onto
radfm_jax's grayscale normalisation as for CLIP (torch_layout.fold_patch_embedding). A config
whose input size gives another patch grid than the checkpoint's gets the position embedding
resized (bicubic), as both families do at run time for other image sizes.
"""

from __future__ import annotations

import math

import numpy as np

from radfm_jax.errors import CheckpointError
from radfm_jax.weights.torch_layout import (
    Params,
    block_in,
    block_tensor_names,
    check_names,
    fold_patch_embedding,
    image_normalisation,
    stack_layers,
)

# model_type -> (layers.Block parts -> names in `encoder.layer.<i>`, default image normalisation,
# default layer-norm epsilon, default activation).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_ATTENTION = {"query": "attention.attention.query", "key": "attention.attention.key",
              "value": "attention.attention.value", "out": "attention.output.dense"}
FAMILIES = {
    "dinov2": dict(names={**_ATTENTION, "fc1": "mlp.fc1", "fc2": "mlp.fc2", "norm1": "norm1", "norm2": "norm2",
                          "scale1": "layer_scale1.lambda1", "scale2": "layer_scale2.lambda1"},
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, eps=1e-6),
    "vit": dict(names={**_ATTENTION, "fc1": "intermediate.dense", "fc2": "output.dense",
                       "norm1": "layernorm_before", "norm2": "layernorm_after"},
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), eps=1e-12),
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}
# Present in checkpoints, not part of the tower's features.
_UNUSED = ("embeddings.mask_token", "pooler.dense.weight", "pooler.dense.bias")


def family(hf_config: dict) -> str | None:
    kind = hf_config.get("model_type")
    return kind if kind in FAMILIES else None


def _settings(hf_config: dict) -> dict:
    kind = family(hf_config)
    width = hf_config.get("hidden_size", 768)
    mlp = hf_config.get("intermediate_size") or int(width * hf_config.get("mlp_ratio", 4))
    act = hf_config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act={act!r} is not supported; radfm_jax has {sorted(_ACTIVATIONS)}")
    if hf_config.get("use_swiglu_ffn"):
        raise CheckpointError("this DINOv2 uses a SwiGLU MLP (ViT-g); radfm_jax's ViT blocks have GELU MLPs")
    if hf_config.get("qkv_bias") is False:
        raise CheckpointError("qkv_bias=false checkpoints are not supported")
    return dict(width=width, mlp=mlp, depth=hf_config.get("num_hidden_layers", 12),
                heads=hf_config.get("num_attention_heads", 12), patch=hf_config.get("patch_size", 16),
                image=hf_config.get("image_size", 224), act=_ACTIVATIONS[act],
                eps=hf_config.get("layer_norm_eps", FAMILIES[kind]["eps"]),
                layer_scale=hf_config.get("layerscale_value", 1.0) if kind == "dinov2" else 0.0)


def vit_overrides(hf_config: dict) -> list[str]:
    """radfm_jax config overrides (`key=value`) describing the checkpoint's image tower."""
    s = _settings(hf_config)
    return ["model.image.name=vit", "model.image.pool=cls", "model.image.norm_pre=false",
            f"model.image.patch_size={s['patch']}", f"model.image.width={s['width']}",
            f"model.image.depth={s['depth']}", f"model.image.heads={s['heads']}",
            f"model.image.mlp_ratio={s['mlp'] / s['width']}", f"model.image.act={s['act']}",
            f"model.image.norm_eps={s['eps']}", f"model.image.layer_scale={s['layer_scale']}",
            f"data.input_size={s['image']}"]


def expected_names(hf_config: dict) -> list[str]:
    names = FAMILIES[family(hf_config)]["names"]
    layers = [name for i in range(_settings(hf_config)["depth"])
              for name in block_tensor_names(names, f"encoder.layer.{i}")]
    return ["embeddings.cls_token", "embeddings.position_embeddings", "embeddings.patch_embeddings.projection.weight",
            "embeddings.patch_embeddings.projection.bias", "layernorm.weight", "layernorm.bias", *layers]


def _strip_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model saved inside a task head (Dinov2ForImageClassification: `dinov2.`, ViT: `vit.`)."""
    for prefix in ("dinov2.", "vit."):
        if any(name.startswith(prefix + "embeddings.") for name in tensors):
            return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}
    return tensors


def resize_positions(positions: np.ndarray, grid: int) -> np.ndarray:
    """(1 + g * g, width) class + patch position embeddings -> (1 + grid * grid, width), the
    patch part resized bicubically on its square grid."""
    import jax
    import jax.numpy as jnp

    source = int(math.isqrt(positions.shape[0] - 1))
    if source * source != positions.shape[0] - 1:
        raise CheckpointError(f"{positions.shape[0] - 1} patch positions are not a square grid")
    if source == grid:
        return positions
    patches = positions[1:].reshape(source, source, -1)
    resized = jax.image.resize(jnp.asarray(patches), (grid, grid, patches.shape[-1]), "bicubic")
    return np.concatenate([positions[:1], np.asarray(resized).reshape(grid * grid, -1)])


def import_vit(tensors: dict[str, np.ndarray], hf_config: dict, *, channels: int, scan_layers: bool,
               input_size: int, hf_preprocessor: dict | None = None, source: str = "the checkpoint") -> Params:
    """{"image": the image tower's tree} of a ViTModel / Dinov2Model checkpoint."""
    kind = family(hf_config)
    spec, s = FAMILIES[kind], _settings(hf_config)
    tensors = _strip_prefix(tensors)
    check_names(tensors, expected_names(hf_config), source, f"{kind} model", _UNUSED)

    def get(name: str) -> np.ndarray:
        return np.asarray(tensors[name], np.float32)

    if input_size % s["patch"]:
        raise CheckpointError(f"data.input_size={input_size} is not a multiple of the checkpoint's "
                              f"{s['patch']}-pixel patches")
    norm = image_normalisation(hf_preprocessor, spec["mean"], spec["std"])
    kernel, bias = fold_patch_embedding(get("embeddings.patch_embeddings.projection.weight"),
                                        get("embeddings.patch_embeddings.projection.bias"), channels, *norm)
    blocks = [block_in(get, f"encoder.layer.{i}", s["heads"], spec["names"]) for i in range(s["depth"])]
    positions = get("embeddings.position_embeddings").reshape(-1, s["width"])
    return {"image": {
        "patch_embed": {"kernel": kernel, "bias": bias},
        "cls_token": get("embeddings.cls_token").reshape(-1),
        "pos_emb": resize_positions(positions, input_size // s["patch"]),
        "encoder": {"layers": stack_layers(blocks, scan_layers)},
        "norm": {"scale": get("layernorm.weight"), "bias": get("layernorm.bias")},
    }}
