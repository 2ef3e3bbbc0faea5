"""A published model's own tokenizer (a Hugging Face `tokenizer.json`, read by the `tokenizers`
library) behind the interface of radfm_jax.data.tokenizer.Tokenizer, for `data.tokenizer_file`.

Encoding applies the file's normaliser, pre-tokeniser and post-processor, so texts get the
start / end tokens the model was trained with (CLIP: <|startoftext|> ... <|endoftext|>; BERT:
[CLS] ... [SEP]). The last special token the post-processor appends is the end-of-text id the
text tower pools on. Rows are right-padded with PAD_ID (0) as everywhere in radfm_jax: the
towers treat id 0 as padding, which CLIP's vocabulary spends on "!" (a "!" inside a text is
then masked out of a bidirectional tower; a causal tower pooling EOS is unaffected).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as _Tokenizer

from radfm_jax.data.tokenizer import PAD_ID, normalize_whitespace
from radfm_jax.errors import ConfigError


class HFTokenizer:
    """Encodes text with a tokenizer.json. Picklable (Grain workers get a copy)."""

    def __init__(self, json_text: str, source: str = "tokenizer.json"):
        self._json = json_text
        self._source = source
        try:
            self._tok = _Tokenizer.from_str(json_text)
        except Exception as err:  # the tokenizers library raises plain Exceptions
            raise ConfigError(f"{source} is not a Hugging Face tokenizer.json ({err})") from None
        self._tok.no_padding()
        self._tok.no_truncation()
        probe = self._tok.encode("a")
        specials = [i for i, special in zip(probe.ids, probe.special_tokens_mask) if special]
        if not specials or probe.special_tokens_mask[-1] != 1:
            raise ConfigError(f"{source} appends no end-of-text token (its post_processor adds none); the "
                              "text towers pool on one: use the tokenizer.json the model was published with")
        self._eos = probe.ids[-1]

    @classmethod
    def load(cls, path: str | os.PathLike) -> HFTokenizer:
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ConfigError(f"data.tokenizer_file: no tokenizer at {path}; give the model's tokenizer.json")
        return cls(path.read_text(encoding="utf-8"), str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def unk_id(self) -> int | None:
        return None

    def encode(self, text: str) -> list[int]:
        """Ids of `text` without special tokens or padding."""
        return list(self._tok.encode(normalize_whitespace(text), add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """int32 (N, max_len): the post-processed ids (start / end tokens included), then PAD_ID.
        A text too long is cut so that its end-of-text id is still the last."""
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}.")
        out = np.full((len(texts), max_len), PAD_ID, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = self._tok.encode(normalize_whitespace(text)).ids
            if len(ids) > max_len:
                ids = [*ids[: max_len - 1], self._eos]
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` up to the first end-of-text id; special tokens and padding dropped."""
        kept = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1):
            if int(i) == self._eos:
                break
            kept.append(int(i))
        return self._tok.decode(kept, skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self._tok.id_to_token(int(i)) or ""

    def __getstate__(self):
        return {"json": self._json, "source": self._source}

    def __setstate__(self, state):
        self.__init__(state["json"], state["source"])

    def __repr__(self) -> str:
        return f"HFTokenizer({self._source}, vocab_size={self.vocab_size}, eos_id={self._eos})"
