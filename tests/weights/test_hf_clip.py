"""Hugging Face CLIPModel import / export against transformers' own models (random weights made
by transformers, no downloads) and its own tokenizer class."""

from __future__ import annotations

import json
import pickle
import re
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.hf_tokenizer import HFTokenizer
from radfm_jax.data.transforms import IMAGE_MEAN, IMAGE_STD
from radfm_jax.errors import CheckpointError, ConfigError
from radfm_jax.weights import hf_clip
from radfm_jax.weights.published import load_published, start_overrides
from radfm_jax.weights.tensor_files import read_tensors, write_safetensors
from hf_clip_reference import hf_embeddings, make_clip, prompt_sentences, radfm_model, write_tokenizer

import transformers  # noqa: E402  (the test extra)



def close(ours: np.ndarray, reference: np.ndarray, rtol: float = 1e-5) -> None:
    """Equal to `rtol` relative to the reference's largest magnitude (fp32)."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape
    err = np.abs(ours - reference).max() / np.abs(reference).max()
    assert err <= rtol, err


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return prompt_sentences("independent_cxr")  # not what the tokenizer was trained on


def config_of(folder, *changes: str) -> ExperimentConfig:
    overrides = [item for item in start_overrides(folder) if not item.startswith("init.")]
    return apply_overrides(ExperimentConfig(), [*overrides, *changes])


def test_tokenizer_gives_transformers_ids_on_blind_prompts(tmp_path, sentences):
    path = write_tokenizer(tmp_path / "tokenizer.json")
    ours = HFTokenizer.load(tmp_path)  # a folder finds its tokenizer.json
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    rows = ours.encode_batch(sentences, 128)
    for text, row in zip(sentences, rows):
        expected = theirs(text)["input_ids"]
        assert len(expected) <= 128
        assert row[: len(expected)].tolist() == expected
        assert not row[len(expected):].any()  # right padding with 0
        assert ours.decode(row) == text.lower()
    assert ours.eos_id == theirs.convert_tokens_to_ids("<|endoftext|>")
    cut = ours.encode_batch([sentences[0] * 5], 8)[0]
    assert cut[-1] == ours.eos_id and cut[0] == theirs.convert_tokens_to_ids("<|startoftext|>")
    assert pickle.loads(pickle.dumps(ours)).encode(sentences[1]) == ours.encode(sentences[1])


def test_tokenizer_without_an_end_token_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="no end-of-text token"):
        HFTokenizer.load(tmp_path / "tokenizer.json")


# (exact GELU is checked by the DINOv2 and BERT imports)
@pytest.mark.parametrize("hidden_act, scan_layers, channels", [("quick_gelu", True, 1), ("gelu_new", False, 3)])
def test_import_gives_transformers_embeddings_and_logits(tmp_path, sentences, hidden_act, scan_layers, channels):
    reference = make_clip(tmp_path, hidden_act=hidden_act, safetensors=channels != 3)
    config = config_of(tmp_path, f"model.scan_layers={scan_layers}")
    params = load_published(tmp_path, channels=channels, scan_layers=scan_layers, max_text_len=config.data.max_text_len,
                            input_size=config.data.input_size)
    tokenizer = HFTokenizer.load(tmp_path / "tokenizer.json")
    model = radfm_model(params, config.model, tokenizer.vocab_size, config.data.max_text_len, (32, 32), channels)
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 1, (4, 32, 32, channels)).astype(np.float32)
    ids = tokenizer.encode_batch(sentences[:4], config.data.max_text_len)
    rgb = np.repeat(pixels, 3, axis=-1) if channels == 1 else pixels
    image_ref, text_ref, logits_ref = hf_embeddings(reference, rgb.transpose(0, 3, 1, 2), ids)
    image = np.asarray(model.encode_image(jnp.asarray((pixels - IMAGE_MEAN) / IMAGE_STD)))
    text = np.asarray(model.encode_text(jnp.asarray(ids)))
    close(image, image_ref)
    close(text, text_ref)
    close(np.exp(params["log_logit_scale"]) * image @ text.T, logits_ref)


def _random_radfm_clip(tmp_path):
    """A radfm_jax CLIP-shaped two-tower model with random parameters (patch bias included)."""
    import jax
    from flax import nnx

    from radfm_jax.models.two_tower import TwoTower

    make_clip(tmp_path / "shape")  # only for its tokenizer and sizes
    config = config_of(tmp_path / "shape", "model.scan_layers=false")
    tokenizer = HFTokenizer.load(tmp_path / "shape" / "tokenizer.json")
    model = TwoTower(config.model, tokenizer.vocab_size, config.data.max_text_len, (32, 32), nnx.Rngs(7))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    keys = iter(jax.random.split(jax.random.key(3), 400))
    params = jax.tree.map(lambda x: np.asarray(x + 0.2 * jax.random.normal(next(keys), x.shape)), params)
    return config, tokenizer, params


def test_export_is_the_same_model_in_transformers_and_import_gives_it_back(tmp_path, sentences):
    config, tokenizer, params = _random_radfm_clip(tmp_path)
    tensors, hf_config, preprocessor = hf_clip.export_clip(
        params, config.model, image_size=32, channels=1, eos_id=tokenizer.eos_id, vocab_size=tokenizer.vocab_size)
    out = tmp_path / "exported"
    write_safetensors(out / "model.safetensors", tensors, metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config))
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    reference = transformers.CLIPModel.from_pretrained(out).eval()  # strict: every tensor used, none missing
    ours = radfm_model(params, config.model, tokenizer.vocab_size, config.data.max_text_len, (32, 32))
    gray = np.random.default_rng(2).uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    ids = tokenizer.encode_batch(sentences[:3], config.data.max_text_len)
    image_ref, text_ref, _ = hf_embeddings(reference, np.repeat(gray, 3, -1).transpose(0, 3, 1, 2), ids)
    image = np.asarray(ours.encode_image(jnp.asarray((gray - IMAGE_MEAN) / IMAGE_STD)))
    close(image, image_ref)
    close(np.asarray(ours.encode_text(jnp.asarray(ids))), text_ref)

    back = load_published(out, channels=1, scan_layers=False, max_text_len=config.data.max_text_len,
                            input_size=config.data.input_size)
    flat = lambda tree: {k: v for k, v in _flatten(tree)}  # noqa: E731
    original, returned = flat(params), flat(back)
    assert set(original) == set(returned)
    # The patch bias and position embedding trade a constant (hf_clip's doc); CLIP has no
    # logit bias (SigLIP's), so it comes back as 0.
    traded = {"image/patch_embed/bias", "image/pos_emb", "logit_bias"}
    assert float(returned["logit_bias"]) == 0.0
    for name in set(original) - traded:
        close(returned[name], original[name], rtol=1e-6)
    again = radfm_model(back, config.model, tokenizer.vocab_size, config.data.max_text_len, (32, 32))
    close(np.asarray(again.encode_image(jnp.asarray((gray - IMAGE_MEAN) / IMAGE_STD))), image)


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + "/")
        else:
            yield name, np.asarray(value)


def test_export_refuses_what_clip_cannot_hold(tmp_path):
    config, tokenizer, params = _random_radfm_clip(tmp_path)
    bidirectional = apply_overrides(config, ["model.text.causal=false"]).model
    with pytest.raises(ConfigError, match="causal=true"):
        hf_clip.export_clip(params, bidirectional, image_size=32, channels=1, eos_id=3, vocab_size=tokenizer.vocab_size)
    with pytest.raises(ConfigError, match="export the image tower alone"):
        hf_clip.export_clip(params, config.model, image_size=32, channels=1, eos_id=2, vocab_size=tokenizer.vocab_size)
    tensors, hf_config, _ = hf_clip.export_clip(params, config.model, image_size=32, channels=1, eos_id=2,
                                                vocab_size=tokenizer.vocab_size, image_only=True)
    assert hf_config["architectures"] == ["CLIPVisionModelWithProjection"]
    assert not any(name.startswith("text_") for name in tensors)


# --- bad input ------------------------------------------------------------------------------


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    make_clip(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_tensors(tmp_path)


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    make_clip(tmp_path)
    tensors = read_tensors(tmp_path)
    del tensors["vision_model.encoder.layers.1.mlp.fc1.weight"]
    tensors["vision_model.encoder.layers.2.mlp.fc1.weight"] = np.zeros((2, 2), np.float32)
    (tmp_path / "model.safetensors").unlink()
    write_safetensors(tmp_path / "model.safetensors", tensors)
    with pytest.raises(CheckpointError) as err:
        load_published(tmp_path, channels=1, scan_layers=True, max_text_len=24, input_size=32)
    assert "missing: vision_model.encoder.layers.1.mlp.fc1.weight" in str(err.value)
    assert "unexpected: vision_model.encoder.layers.2.mlp.fc1.weight" in str(err.value)
    assert "num_hidden_layers" in str(err.value)


def test_unsupported_family_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    with pytest.raises(CheckpointError, match="'t5'.*radfm_jax imports: Hugging Face CLIPModel"):
        start_overrides(tmp_path)


def test_pickles_need_torch_and_never_run_code(tmp_path, monkeypatch):
    make_clip(tmp_path, safetensors=False)
    assert (tmp_path / "pytorch_model.bin").is_file()
    assert "text_projection.weight" in read_tensors(tmp_path)
    evil = tmp_path / "evil.bin"
    marker = tmp_path / "ran"
    with open(evil, "wb") as f:
        pickle.dump(_RunsCode(str(marker)), f)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_tensors(evil)
    assert not marker.exists()
    monkeypatch.setitem(sys.modules, "torch", None)  # as if the torch extra were not installed
    with pytest.raises(CheckpointError, match="needs PyTorch"):
        read_tensors(tmp_path)


class _RunsCode:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_config_that_does_not_describe_the_checkpoint_names_the_fields(tmp_path):
    """The whole model grafted onto a config with another text width: every mismatch named,
    with the fields to set."""
    from radfm_jax.train.pretrained import graft_tower

    make_clip(tmp_path)
    config = config_of(tmp_path, "model.text.width=64")
    params = load_published(tmp_path, channels=1, scan_layers=True, max_text_len=24, input_size=32)
    tokenizer = HFTokenizer.load(tmp_path / "tokenizer.json")
    from flax import nnx

    from radfm_jax.models.two_tower import TwoTower

    fresh = nnx.to_pure_dict(nnx.state(TwoTower(config.model, tokenizer.vocab_size, 24, (32, 32), nnx.Rngs(0)),
                                       nnx.Param))
    with pytest.raises(ConfigError) as err:
        graft_tower(fresh, (), params, str(tmp_path))
    message = str(err.value)
    assert re.search(r"\n  text/\S+: pretrained \(\d+, 32\), this config needs \(\d+, 64\)", message), message
    assert "model.text" in message and "data.tokenizer_file" in message
