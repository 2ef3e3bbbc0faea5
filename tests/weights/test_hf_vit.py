"""Hugging Face ViTModel / Dinov2Model (RAD-DINO's format) image towers against transformers'
own models (random weights made by transformers, no downloads)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.transforms import IMAGE_MEAN, IMAGE_STD
from radfm_jax.models.vit import ViT
from radfm_jax.weights.hf_vit import IMAGENET_MEAN, IMAGENET_STD, resize_positions
from radfm_jax.weights.published import load_published, start_overrides

# RAD-DINO's preprocessor normalises with its own chest X-ray statistics.
RAD_DINO_LIKE = {"image_mean": [0.5307, 0.5307, 0.5307], "image_std": [0.2583, 0.2583, 0.2583]}


def make(folder, kind: str, preprocessor: dict | None = None):
    """A random-init transformers Dinov2Model / ViTModel saved in `folder` (28 x 28 images of
    14-pixel patches); 1-D parameters (biases, norms, layer scales) randomised too."""
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=28, patch_size=14)
    if kind == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(**common, layerscale_value=0.5))
    else:
        model = transformers.ViTModel(transformers.ViTConfig(**common, intermediate_size=64))
    with torch.no_grad():
        for _, value in model.named_parameters():
            if value.ndim == 1:
                value.add_(torch.randn_like(value) * 0.2)
    model.eval().save_pretrained(folder)
    if preprocessor:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model


def hf_features(model, gray: np.ndarray, mean, std) -> np.ndarray:
    """The final-normed class token for the gray images (B, H, W) copied to RGB."""
    rgb = np.repeat(gray[:, None], 3, axis=1)
    pixels = (rgb - np.asarray(mean, np.float32)[None, :, None, None]) / np.asarray(std, np.float32)[None, :, None, None]
    with torch.no_grad():
        out = model(pixel_values=torch.tensor(pixels), interpolate_pos_encoding=True) if isinstance(
            model, transformers.ViTModel) else model(pixel_values=torch.tensor(pixels))
    return out.last_hidden_state[:, 0].numpy()


def our_tower(folder, input_size: int, scan_layers: bool):
    config = apply_overrides(ExperimentConfig(), [*(o for o in start_overrides(folder) if not o.startswith("init.")),
                                                  f"data.input_size={input_size}", f"model.scan_layers={scan_layers}"])
    params = load_published(folder, channels=1, scan_layers=scan_layers, max_text_len=64, input_size=input_size)
    tower = ViT(config.model.image, (input_size, input_size), scan_layers=scan_layers, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(tower, nnx.Param)
    nnx.replace_by_pure_dict(state, params["image"])
    return nnx.merge(graphdef, state), params["image"]


@pytest.mark.parametrize("kind, preprocessor, scan_layers", [
    ("dinov2", None, True), ("dinov2", RAD_DINO_LIKE, False), ("vit", None, True)])
def test_image_tower_equals_transformers(tmp_path, kind, preprocessor, scan_layers):
    reference = make(tmp_path, kind, preprocessor)
    mean, std = {"dinov2": (IMAGENET_MEAN, IMAGENET_STD), "vit": ((0.5,) * 3, (0.5,) * 3)}[kind]
    if preprocessor:
        mean, std = preprocessor["image_mean"], preprocessor["image_std"]
    tower, _ = our_tower(tmp_path, 28, scan_layers)
    gray = np.random.default_rng(0).uniform(0, 1, (3, 28, 28)).astype(np.float32)
    expected = hf_features(reference, gray, mean, std)
    ours = np.asarray(tower(jnp.asarray((gray[..., None] - IMAGE_MEAN) / IMAGE_STD)))
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


def test_another_input_size_resizes_the_position_grid(tmp_path):
    """At 42 x 42 (a 3 x 3 grid from the checkpoint's 2 x 2) the position embedding is resized
    bicubically: the class row is kept, and the features stay close to transformers' own run-time
    interpolation (torch's bicubic kernel differs from JAX's, so close, not equal)."""
    reference = make(tmp_path, "dinov2")
    tower, params = our_tower(tmp_path, 42, True)
    stored = reference.embeddings.position_embeddings.detach().numpy()[0]
    assert params["pos_emb"].shape == (10, 32)
    np.testing.assert_array_equal(params["pos_emb"][0], stored[0])
    np.testing.assert_array_equal(resize_positions(stored, 2), stored)
    gray = np.random.default_rng(1).uniform(0, 1, (4, 42, 42)).astype(np.float32)
    expected = hf_features(reference, gray, IMAGENET_MEAN, IMAGENET_STD)
    ours = np.asarray(tower(jnp.asarray((gray[..., None] - IMAGE_MEAN) / IMAGE_STD)))
    cosine = (ours * expected).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert cosine.min() > 0.99, cosine


def test_a_clip_run_starts_its_image_tower_from_dinov2(tmp_path, toy_experiment):
    """init.weights of an image-only checkpoint on a two-tower objective: the image tower is the
    checkpoint's, the rest as freshly initialised."""
    from radfm_jax.config.schema import MeshConfig

    make(tmp_path, "dinov2")
    changes = {"init.weights": str(tmp_path), "model.image": apply_overrides(
        ExperimentConfig(), [o for o in start_overrides(tmp_path) if o.startswith("model.image")]).model.image,
        "data.input_size": 28}
    exp = toy_experiment(MeshConfig(data=2, fsdp=4), batch_size=8, changes=changes)
    state = exp.init_state()
    expected = load_published(tmp_path, channels=1, scan_layers=False, max_text_len=8, input_size=28)["image"]
    np.testing.assert_array_equal(np.asarray(state.params["image"]["encoder"]["layers"][1]["scale2"]),
                                  expected["encoder"]["layers"][1]["scale2"])
    np.testing.assert_allclose(np.asarray(state.params["image"]["patch_embed"]["kernel"]),
                               expected["patch_embed"]["kernel"])
    fresh = toy_experiment(MeshConfig(data=2, fsdp=4), batch_size=8,
                           changes={**changes, "init.weights": ""}).init_state()
    np.testing.assert_array_equal(np.asarray(state.params["text_proj"]["kernel"]),
                                  np.asarray(fresh.params["text_proj"]["kernel"]))
