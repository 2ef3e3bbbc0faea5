"""A SentencePiece tokenizer for radiology report text, trained in-process on a data set.

Special ids (fixed for every model this module writes):

    pad_id = 0   right padding of fixed-length token rows
    unk_id = 1   characters the model has not seen
    eos_id = 2   appended to every encoded text; a text tower pooling on "eos" reads it
    bos          none (disabled)

Normalisation: SentencePiece's ``nmt_nfkc_cf`` rule (NFKC plus Unicode case folding), so text is
lower-cased *inside* the model and encoding any text (reports, zero-shot prompts) applies the
same rule. Before that, runs of whitespace (including the newlines between report sections) are
collapsed to one space in Python. Case carries little meaning in reports ("FINDINGS:" vs
"findings:") and folding it halves the vocabulary spent on duplicates.

Training is deterministic: one thread, every sentence used (no sampling), the same corpus in the
same order gives a byte-identical model file.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

PAD_ID = 0
UNK_ID = 1
EOS_ID = 2

_NORMALIZATION_RULE = "nmt_nfkc_cf"


def normalize_whitespace(text: str) -> str:
    """Collapses every run of whitespace (spaces, tabs, newlines) to one space and strips."""
    return " ".join(text.split())


class Tokenizer:
    """Encodes text to int ids and back. Picklable (Grain worker processes receive a copy)."""

    def __init__(self, model_proto: bytes):
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        if self._sp.pad_id() != PAD_ID or self._sp.eos_id() != EOS_ID:
            raise ValueError(
                "This SentencePiece model was not written by radfm_jax.data.tokenizer: expected "
                f"pad_id={PAD_ID}, eos_id={EOS_ID}, got pad_id={self._sp.pad_id()}, "
                f"eos_id={self._sp.eos_id()}. Delete it and let it be trained again."
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No tokenizer model at {path}.")
        return cls(path.read_bytes())

    def save(self, path: str | os.PathLike) -> None:
        """Writes the model file atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(self._proto)
        os.replace(tmp, path)

    @property
    def model_proto(self) -> bytes:
        return self._proto

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included; may be below the requested size (small corpora)."""
        return int(self._sp.get_piece_size())

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without EOS or padding."""
        return list(self._sp.EncodeAsIds(normalize_whitespace(text)))

    def encode_batch(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """int32 (N, max_len): ids, then EOS, then pad_id=0 on the right.

        A text longer than max_len - 1 ids is truncated so that EOS is still the last id.
        """
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}.")
        out = np.full((len(texts), max_len), PAD_ID, dtype=np.int32)
        for row, text in enumerate(texts):
            # One text at a time: SentencePiece's list API starts a thread pool per call, which
            # costs ~10x the encoding itself for short reports.
            seq = self._sp.EncodeAsIds(normalize_whitespace(text))[: max_len - 1]
            out[row, : len(seq)] = seq
            out[row, len(seq)] = EOS_ID
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` up to the first EOS; padding is ignored."""
        kept = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1):
            i = int(i)
            if i == EOS_ID:
                break
            if i != PAD_ID:
                kept.append(i)
        return self._sp.decode(kept)

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def __getstate__(self):
        return {"proto": self._proto}

    def __setstate__(self, state):
        self.__init__(state["proto"])

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, pad_id={PAD_ID}, eos_id={EOS_ID})"


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    model_path: str | os.PathLike,
    *,
    model_type: str = "bpe",
) -> Tokenizer:
    """Trains a SentencePiece model on ``texts`` (one report per item) and writes it to model_path.

    ``vocab_size`` is an upper bound: a corpus too small to support it yields a smaller
    vocabulary (see ``Tokenizer.vocab_size``) rather than an error. A ``vocab_size`` below the
    number of distinct characters plus the special pieces is a ValueError naming the minimum.
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}.")
    sentences = [s for s in (normalize_whitespace(t) for t in texts) if s]
    if not sentences:
        raise ValueError("Cannot train a tokenizer on an empty corpus (no non-blank texts).")
    max_len_bytes = max(len(s.encode("utf-8")) for s in sentences)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            vocab_size=int(vocab_size),
            model_type=model_type,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            eos_id=EOS_ID,
            bos_id=-1,
            hard_vocab_limit=False,
            normalization_rule_name=_NORMALIZATION_RULE,
            character_coverage=1.0,
            input_sentence_size=0,  # use every sentence: no random sampling
            shuffle_input_sentence=False,
            max_sentence_length=max(4192, max_len_bytes + 1),
            num_threads=1,  # deterministic
            minloglevel=2,
        )
    except RuntimeError as e:
        if "smaller than required_chars" in str(e):
            raise ValueError(
                f"vocab_size={vocab_size} is too small for this corpus: {e}. "
                "Increase data.vocab_size."
            ) from None
        raise
    tok = Tokenizer(buf.getvalue())
    tok.save(model_path)
    return tok
