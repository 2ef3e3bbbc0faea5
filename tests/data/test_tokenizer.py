"""SentencePiece tokenizer: round trip, fixed-length rows, determinism, small corpora."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from radfm_jax.data.tokenizer import EOS_ID, PAD_ID, Tokenizer, train_tokenizer

_SENTENCES = [
    "The heart size is normal.",
    "There is a small left pleural effusion.",
    "No pneumothorax.",
    "Mild cardiomegaly with right lower lobe consolidation.",
    "Support devices in place; endotracheal tube 4 cm above the carina.",
    "Lungs are clear. No acute cardiopulmonary abnormality.",
    "Stable 8 mm nodule in the right upper lobe.",
]


def _corpus(n=300, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = " ".join(rng.choice(_SENTENCES, size=3))
        i = rng.choice(_SENTENCES)
        out.append(f"FINDINGS: {f}\nIMPRESSION: {i}")
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(_corpus(), 256, tmp_path_factory.mktemp("tok") / "tok.model")


def test_special_ids(tok):
    assert (tok.pad_id, tok.unk_id, tok.eos_id) == (0, 1, 2)
    assert tok.id_to_piece(PAD_ID) == "<pad>" and tok.id_to_piece(EOS_ID) == "</s>"
    assert 8 < tok.vocab_size <= 256


def test_round_trip_report_text(tok):
    text = "FINDINGS: There is a small left pleural effusion.\n  No pneumothorax.\nIMPRESSION: Mild cardiomegaly."
    ids = tok.encode(text)
    assert EOS_ID not in ids and PAD_ID not in ids
    # Lower-cased (case folding) and whitespace collapsed, otherwise identical.
    assert tok.decode(ids) == " ".join(text.split()).lower()
    assert tok.encode(text.lower()) == ids


def test_encode_batch_padding_eos_truncation(tok):
    short, long = "No pneumothorax.", " ".join(_SENTENCES * 3)
    n_short, n_long = len(tok.encode(short)), len(tok.encode(long))
    max_len = 24
    assert n_short + 1 < max_len < n_long
    rows = tok.encode_batch([short, long, ""], max_len)
    assert rows.dtype == np.int32 and rows.shape == (3, max_len)
    # Short: ids, EOS, then padding.
    np.testing.assert_array_equal(rows[0, :n_short], tok.encode(short))
    assert rows[0, n_short] == EOS_ID
    assert (rows[0, n_short + 1 :] == PAD_ID).all()
    # Long: the first max_len - 1 ids, EOS last.
    np.testing.assert_array_equal(rows[1, :-1], tok.encode(long)[: max_len - 1])
    assert rows[1, -1] == EOS_ID and (rows[1] == EOS_ID).sum() == 1
    # Empty text: only EOS.
    assert rows[2, 0] == EOS_ID and (rows[2, 1:] == PAD_ID).all()
    # Decoding ignores EOS and padding.
    assert tok.decode(rows[0]) == short.lower()
    assert tok.decode(list(rows[0]) + [5, 6]) == short.lower()  # stops at EOS
    assert tok.encode_batch([], 8).shape == (0, 8)


def test_training_is_deterministic(tmp_path):
    a = train_tokenizer(_corpus(seed=1), 200, tmp_path / "a.model")
    b = train_tokenizer(iter(_corpus(seed=1)), 200, tmp_path / "b.model")
    assert a.model_proto == b.model_proto
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_load_and_pickle(tok, tmp_path):
    tok.save(tmp_path / "x.model")
    loaded = Tokenizer.load(tmp_path / "x.model")
    text = _corpus(1, seed=5)[0]
    assert loaded.encode(text) == tok.encode(text)
    clone = pickle.loads(pickle.dumps(tok))
    np.testing.assert_array_equal(clone.encode_batch([text], 40), tok.encode_batch([text], 40))
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.model")


def test_vocab_larger_than_corpus_supports(tmp_path):
    tok = train_tokenizer(["no pneumothorax", "no effusion"] * 10, 50_000, tmp_path / "t.model")
    assert tok.vocab_size < 50_000
    assert tok.decode(tok.encode("no effusion")) == "no effusion"


def test_vocab_too_small_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(_corpus(), 10, tmp_path / "t.model")
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(["", "  "], 100, tmp_path / "t.model")
