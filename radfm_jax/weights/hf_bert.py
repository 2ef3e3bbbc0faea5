"""Hugging Face BERT-family encoders (`BertModel`: PubMedBERT, BiomedCLIP's text encoder;
CXR-BERT's `bert.`-prefixed checkpoints) as radfm_jax's `bert` text tower (models/bert.py).

The tower's output is the last hidden state of the first token ([CLS]); BERT's pooler (a tanh
layer trained for next-sentence prediction) and task heads (masked-LM, CXR-BERT's projection)
are present in many checkpoints and left out.
"""

from __future__ import annotations

import numpy as np

from radfm_jax.errors import CheckpointError, ConfigError
from radfm_jax.weights.torch_layout import Params, block_in, block_tensor_names, check_names, stack_layers

FAMILIES = ("bert", "cxr-bert")
BLOCK_NAMES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
               "out": "attention.output.dense", "norm1": "attention.output.LayerNorm", "fc1": "intermediate.dense",
               "fc2": "output.dense", "norm2": "output.LayerNorm"}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
# Heads that are not part of the text features.
_UNUSED_PREFIXES = ("pooler.", "cls.", "cls_projection_head.", "embeddings.position_ids")


def family(hf_config: dict) -> str | None:
    kind = hf_config.get("model_type")
    return kind if kind in FAMILIES else None


def _settings(hf_config: dict) -> dict:
    act = hf_config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act={act!r} is not supported; radfm_jax has {sorted(_ACTIVATIONS)}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("only absolute position embeddings are supported "
                              f"(this checkpoint has {hf_config['position_embedding_type']!r})")
    width = hf_config.get("hidden_size", 768)
    return dict(width=width, depth=hf_config.get("num_hidden_layers", 12),
                heads=hf_config.get("num_attention_heads", 12), mlp=hf_config.get("intermediate_size", 3072),
                act=_ACTIVATIONS[act], eps=hf_config.get("layer_norm_eps", 1e-12),
                types=hf_config.get("type_vocab_size", 2), positions=hf_config.get("max_position_embeddings", 512))


def bert_overrides(hf_config: dict) -> list[str]:
    """radfm_jax config overrides (`key=value`) describing the checkpoint's text tower."""
    s = _settings(hf_config)
    return ["model.text.name=bert", "model.text.pool=cls", f"model.text.width={s['width']}",
            f"model.text.depth={s['depth']}", f"model.text.heads={s['heads']}",
            f"model.text.mlp_ratio={s['mlp'] / s['width']}", f"model.text.act={s['act']}",
            f"model.text.norm_eps={s['eps']}", f"model.text.type_vocab_size={s['types']}"]


def _strip_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CXR-BERT and BertFor* checkpoints hold the encoder under `bert.`."""
    if any(name.startswith("bert.embeddings.") for name in tensors):
        return {name[len("bert."):]: value for name, value in tensors.items() if name.startswith("bert.")}
    return tensors


def import_bert(tensors: dict[str, np.ndarray], hf_config: dict, *, scan_layers: bool, max_text_len: int,
                source: str = "the checkpoint") -> Params:
    """{"text": the bert text tower's tree} of a BERT-family checkpoint."""
    s = _settings(hf_config)
    tensors = _strip_prefix(tensors)
    expected = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    expected += [name for i in range(s["depth"]) for name in block_tensor_names(BLOCK_NAMES, f"encoder.layer.{i}")]
    check_names(tensors, expected, source, "BERT encoder", _UNUSED_PREFIXES)
    if max_text_len > s["positions"]:
        raise ConfigError(f"data.max_text_len={max_text_len} exceeds the checkpoint's {s['positions']} positions")

    def get(name: str) -> np.ndarray:
        return np.asarray(tensors[name], np.float32)

    blocks = [block_in(get, f"encoder.layer.{i}", s["heads"], BLOCK_NAMES) for i in range(s["depth"])]
    return {"text": {
        "token_emb": {"embedding": get("embeddings.word_embeddings.weight")},
        "pos_emb": get("embeddings.position_embeddings.weight")[:max_text_len],
        "type_emb": get("embeddings.token_type_embeddings.weight"),
        "embed_norm": {"scale": get("embeddings.LayerNorm.weight"), "bias": get("embeddings.LayerNorm.bias")},
        "encoder": {"layers": stack_layers(blocks, scan_layers)},
    }}
