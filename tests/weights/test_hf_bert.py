"""BERT-family text encoders (BertModel, and `bert.`-prefixed checkpoints as CXR-BERT's) as the
`bert` text tower, against transformers' own random-init models and its tokenizer class; and a
BiomedCLIP-like start: a DINOv2 image tower and a BERT text tower in one CLIP run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from hf_clip_reference import prompt_sentences

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig, MeshConfig
from radfm_jax.data.hf_tokenizer import HFTokenizer
from radfm_jax.models.bert import BertTextTower
from radfm_jax.weights.published import load_published, start_overrides


def write_wordpiece(folder) -> HFTokenizer:
    """A BERT WordPiece tokenizer.json ([CLS] ... [SEP], lower case) trained by the tokenizers
    library on the held-out CXR prompts."""
    from tokenizers import BertWordPieceTokenizer, processors

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(prompt_sentences("heldout_cxr"), vocab_size=200, show_progress=False)
    tok.post_processor = processors.TemplateProcessing(  # as published BERT tokenizer.json files have
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.save(str(folder / "tokenizer.json"))
    return HFTokenizer.load(folder / "tokenizer.json")


def make_bert(folder, *, masked_lm: bool = False):
    """A random-init BertModel (or BertForMaskedLM: `bert.`-prefixed, with a head) saved in
    `folder` with its tokenizer.json; returns the encoder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = write_wordpiece(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)
    model = (transformers.BertForMaskedLM if masked_lm else transformers.BertModel)(config).eval()
    with torch.no_grad():
        for _, value in model.named_parameters():
            if value.ndim == 1:
                value.add_(torch.randn_like(value) * 0.2)
    model.save_pretrained(folder)
    return model.bert if masked_lm else model


@pytest.mark.parametrize("scan_layers, masked_lm", [(True, False), (False, True)])
def test_bert_tower_equals_transformers(tmp_path, scan_layers, masked_lm):
    reference = make_bert(tmp_path, masked_lm=masked_lm)
    config = apply_overrides(ExperimentConfig(), [*(o for o in start_overrides(tmp_path, text=True)
                                                    if not o.startswith("init.")),
                                                  "data.max_text_len=40", f"model.scan_layers={scan_layers}"])
    tokenizer = HFTokenizer.load(config.data.tokenizer_file)
    params = load_published(tmp_path, channels=1, scan_layers=scan_layers, max_text_len=40, input_size=64)
    tower = BertTextTower(config.model.text, tokenizer.vocab_size, 40, scan_layers=scan_layers, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(tower, nnx.Param)
    nnx.replace_by_pure_dict(state, params["text"])
    tower = nnx.merge(graphdef, state)

    sentences = prompt_sentences("independent_cxr")[:6]
    ids = tokenizer.encode_batch(sentences, 40)
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text, row in zip(sentences, ids):  # the wrapper gives transformers' ids ([CLS] ... [SEP], [PAD] = 0)
        expected_ids = theirs(text)["input_ids"][:40]
        if len(expected_ids) == 40:
            expected_ids[-1] = theirs.convert_tokens_to_ids("[SEP]")
        assert row[: len(expected_ids)].tolist() == expected_ids
    with torch.no_grad():
        out = reference(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(ids != 0))
    expected = out.last_hidden_state[:, 0].numpy()
    ours = np.asarray(tower(jnp.asarray(ids)))
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


def test_a_clip_run_starts_from_a_dinov2_image_tower_and_a_bert_text_tower(tmp_path, toy_experiment):
    """BiomedCLIP's shape: init.weights (an image checkpoint) and init.text_weights (a BERT)."""
    from test_hf_vit import make as make_vit

    make_vit(tmp_path / "image", "dinov2")
    make_bert(tmp_path / "text")
    overrides = [*start_overrides(tmp_path / "image"), *start_overrides(tmp_path / "text", text=True),
                 "data.max_text_len=16", "data.input_size=28"]
    resolved = apply_overrides(ExperimentConfig(), overrides)
    tokenizer = HFTokenizer.load(resolved.data.tokenizer_file)
    changes = {"init": resolved.init, "model.image": resolved.model.image, "model.text": resolved.model.text,
               "data.input_size": 28, "data.max_text_len": 16, "data.vocab_size": tokenizer.vocab_size}
    exp = toy_experiment(MeshConfig(data=2, fsdp=4), batch_size=8, changes=changes)
    state = exp.init_state()
    image = load_published(tmp_path / "image", channels=1, scan_layers=False, max_text_len=16, input_size=28)
    text = load_published(tmp_path / "text", channels=1, scan_layers=False, max_text_len=16, input_size=28)
    np.testing.assert_array_equal(np.asarray(state.params["image"]["cls_token"]), image["image"]["cls_token"])
    np.testing.assert_array_equal(np.asarray(state.params["text"]["type_emb"]), text["text"]["type_emb"])
    np.testing.assert_array_equal(np.asarray(state.params["text"]["encoder"]["layers"][1]["attn"]["out"]["bias"]),
                                  text["text"]["encoder"]["layers"][1]["attn"]["out"]["bias"])
    # and it trains: one sharded step of the CLIP loss through the post-norm BERT tower
    new_state, metrics = exp.train_step().jit()(jax.tree.map(lambda x: x.copy(), state), exp.random_batch())
    assert np.isfinite(float(metrics["loss"]))
    assert not np.allclose(np.asarray(new_state.params["text"]["type_emb"]), text["text"]["type_emb"])
