"""Autoregressive decoding (greedy, nucleus sampling, beam search) over any model's step function.

The decoders know a model only through

    step_fn(tokens: int32 (B,), position: int32 scalar, cache) -> (logits float32 (B, V), cache)

which feeds `tokens` at `position` and returns the next-token logits and the updated cache. Every
cache leaf has the batch on axis 0, so beam search can tile it per beam and reorder it by parent
beam. The first call feeds the start id at position 0. Each decoder is a single
`lax.while_loop` bounded by a static `max_len`, so one compile serves every call, and the loop
stops as soon as nothing can change the result any more. Sizes, ids and decoding settings are
Python values (static under `jax.jit`); only `cache` and `key` are traced.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from radfm_jax.errors import ConfigError

Cache = Any  # a PyTree whose every leaf has the batch on axis 0
StepFn = Callable[[jax.Array, jax.Array, Cache], tuple[jax.Array, Cache]]
# (logits (B, V) float32, position int32 scalar) -> chosen tokens (B,)
ChooseFn = Callable[[jax.Array, jax.Array], jax.Array]


def greedy(
    step_fn: StepFn,
    cache: Cache,
    *,
    batch_size: int,
    max_len: int,
    start_id: int,
    eos_id: int,
    pad_id: int = 0,
) -> jax.Array:
    """The most likely next token at every step: int32 (B, max_len), without the start token.

    A row keeps its EOS and holds pad_id after it."""
    _check_positive("max_len", max_len)

    def choose(logits: jax.Array, position: jax.Array) -> jax.Array:
        return jnp.argmax(logits, axis=-1)

    return _decode_rows(step_fn, cache, choose, batch_size=batch_size, max_len=max_len,
                        start_id=start_id, eos_id=eos_id, pad_id=pad_id)


def sample(
    step_fn: StepFn,
    cache: Cache,
    key: jax.Array,
    *,
    batch_size: int,
    max_len: int,
    start_id: int,
    eos_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    pad_id: int = 0,
) -> jax.Array:
    """Ancestral sampling from softmax(logits / temperature) restricted to the top-p nucleus:
    int32 (B, max_len), laid out like `greedy`. Step `position` draws with fold_in(key, position),
    so a row's draws do not depend on how many steps the loop ran before stopping."""
    _check_positive("max_len", max_len)
    _check_sampling(temperature, top_p)

    def choose(logits: jax.Array, position: jax.Array) -> jax.Array:
        nucleus = nucleus_filter(logits.astype(jnp.float32) / temperature, top_p)
        return jax.random.categorical(jax.random.fold_in(key, position), nucleus, axis=-1)

    return _decode_rows(step_fn, cache, choose, batch_size=batch_size, max_len=max_len,
                        start_id=start_id, eos_id=eos_id, pad_id=pad_id)


def nucleus_filter(logits: jax.Array, top_p: float) -> jax.Array:
    """Sets to -inf every logit outside the nucleus: the smallest set of most likely tokens
    whose probabilities sum to >= top_p (the top token always stays). Tokens tied with the least
    likely kept token stay too."""
    if top_p >= 1.0:  # nothing to drop; skipping also avoids float32 cumsum rounding at 1.0
        return logits
    sorted_logits = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
    sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
    # A token belongs to the nucleus while the more likely tokens alone have not reached top_p.
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    kept = jnp.where(mass_before < top_p, sorted_logits, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def _decode_rows(
    step_fn: StepFn,
    cache: Cache,
    choose: ChooseFn,
    *,
    batch_size: int,
    max_len: int,
    start_id: int,
    eos_id: int,
    pad_id: int,
) -> jax.Array:
    """One token per row per step, chosen by `choose`; finished rows emit pad_id."""
    _check_batch_axis(cache, batch_size)

    def keep_going(state: tuple) -> jax.Array:
        position, _, _, finished, _ = state
        return (position < max_len) & ~jnp.all(finished)

    def step(state: tuple) -> tuple:
        position, tokens, cache, finished, out = state
        logits, cache = step_fn(tokens, position, cache)
        chosen = jnp.where(finished, pad_id, choose(logits, position).astype(jnp.int32))
        out = out.at[:, position].set(chosen)
        return position + 1, chosen, cache, finished | (chosen == eos_id), out

    init = (
        jnp.int32(0),
        jnp.full((batch_size,), start_id, jnp.int32),
        cache,
        jnp.zeros((batch_size,), bool),
        jnp.full((batch_size, max_len), pad_id, jnp.int32),
    )
    return jax.lax.while_loop(keep_going, step, init)[-1]


class _Beams(NamedTuple):
    position: jax.Array  # int32 scalar: the step about to run
    alive_tokens: jax.Array  # (B, K, max_len) unfinished hypotheses, pad from `position` on
    alive_logp: jax.Array  # (B, K) their summed log-probabilities, best first (-inf: empty)
    last_tokens: jax.Array  # (B, K) the token each alive beam feeds next
    cache: Cache  # leaves (B*K, ...): row b*K + k belongs to alive beam k of example b
    done_tokens: jax.Array  # (B, K, max_len) pool of finished hypotheses, best first
    done_scores: jax.Array  # (B, K) their length-normalised scores (-inf: empty)


def beam_search(
    step_fn: StepFn,
    cache: Cache,
    *,
    batch_size: int,
    beam_size: int,
    max_len: int,
    start_id: int,
    eos_id: int,
    length_penalty: float = 0.0,
    pad_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Beam search over summed log-probabilities: (tokens int32 (B, max_len), scores (B,)).

    A finished hypothesis scores sum(log p) / length ** length_penalty, its length counting EOS;
    one still without EOS at max_len finishes there with length max_len. Finished hypotheses go
    to a separate pool of the best `beam_size`; the best of the pool is returned, laid out like
    `greedy`. As in fairseq, an EOS continuation finishes only when it ranks within the top
    `beam_size` continuations of its step, so beam_size=1 returns exactly greedy's tokens.
    """
    _check_positive("beam_size", beam_size)
    _check_positive("max_len", max_len)
    _check_batch_axis(cache, batch_size)
    k = beam_size

    def cannot_improve(beams: _Beams) -> jax.Array:
        # Log-probabilities only fall as a hypothesis grows, so an alive beam can finish no
        # better than its current sum over the largest length normaliser still ahead of it.
        if length_penalty >= 0:
            largest_normaliser = float(max_len) ** length_penalty
        else:
            largest_normaliser = (beams.position + 1).astype(jnp.float32) ** length_penalty
        best_possible = beams.alive_logp[:, 0] / largest_normaliser
        return best_possible < beams.done_scores[:, -1]

    def keep_going(beams: _Beams) -> jax.Array:
        return (beams.position < max_len) & ~jnp.all(cannot_improve(beams))

    def step(beams: _Beams) -> _Beams:
        logits, cache = step_fn(beams.last_tokens.reshape(-1), beams.position, beams.cache)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        vocab = log_probs.shape[-1]
        extended_logp = beams.alive_logp[..., None] + log_probs.reshape(batch_size, k, vocab)
        # Each beam has one EOS continuation, so the best 2K always hold K that stay alive.
        num_candidates = min(2 * k, k * vocab)
        cand_logp, cand_index = jax.lax.top_k(
            extended_logp.reshape(batch_size, k * vocab), num_candidates)
        parent, cand_last = cand_index // vocab, (cand_index % vocab).astype(jnp.int32)
        cand_tokens = jnp.take_along_axis(beams.alive_tokens, parent[..., None], axis=1)
        cand_tokens = cand_tokens.at[:, :, beams.position].set(cand_last)
        is_eos = cand_last == eos_id

        ends_here = is_eos | (beams.position == max_len - 1)
        finishing = ends_here & (jnp.arange(num_candidates) < k)
        length = (beams.position + 1).astype(jnp.float32)
        cand_scores = jnp.where(finishing, cand_logp / length**length_penalty, -jnp.inf)
        # The pool comes first so that, on a tie, the earlier (shorter) hypothesis stays.
        done_scores, pick_done = jax.lax.top_k(
            jnp.concatenate([beams.done_scores, cand_scores], axis=1), k)
        done_tokens = jnp.take_along_axis(
            jnp.concatenate([beams.done_tokens, cand_tokens], axis=1), pick_done[..., None], axis=1)

        alive_logp, pick = jax.lax.top_k(jnp.where(is_eos, -jnp.inf, cand_logp), k)
        alive_parent = jnp.take_along_axis(parent, pick, axis=1)
        rows = (jnp.arange(batch_size)[:, None] * k + alive_parent).reshape(-1)
        return _Beams(
            position=beams.position + 1,
            alive_tokens=jnp.take_along_axis(cand_tokens, pick[..., None], axis=1),
            alive_logp=alive_logp,
            last_tokens=jnp.take_along_axis(cand_last, pick, axis=1),
            cache=jax.tree.map(lambda leaf: leaf[rows], cache),
            done_tokens=done_tokens,
            done_scores=done_scores,
        )

    empty = jnp.full((batch_size, k), -jnp.inf, jnp.float32)
    no_tokens = jnp.full((batch_size, k, max_len), pad_id, jnp.int32)
    init = _Beams(
        position=jnp.int32(0),
        alive_tokens=no_tokens,
        # Only beam 0 starts alive: the K copies of the start token would otherwise fill the
        # beam with K identical hypotheses.
        alive_logp=empty.at[:, 0].set(0.0),
        last_tokens=jnp.full((batch_size, k), start_id, jnp.int32),
        cache=jax.tree.map(lambda leaf: jnp.repeat(leaf, k, axis=0), cache),
        done_tokens=no_tokens,
        done_scores=empty,
    )
    final = jax.lax.while_loop(keep_going, step, init)
    return final.done_tokens[:, 0], final.done_scores[:, 0]


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How `decode` generates: greedy, beam search (beam_size, length_penalty) or sampling
    (temperature, top_p); at most max_len tokens per report. Validated on construction."""

    method: Literal["greedy", "beam", "sample"] = "greedy"
    beam_size: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    length_penalty: float = 0.0
    max_len: int = 128

    def __post_init__(self):
        if self.method not in _DECODERS:
            raise ConfigError(
                f"unknown decoding method {self.method!r}; use one of {sorted(_DECODERS)}")
        _check_positive("beam_size", self.beam_size)
        _check_positive("max_len", self.max_len)
        _check_sampling(self.temperature, self.top_p)


def decode(
    step_fn: StepFn,
    cache: Cache,
    cfg: DecodeConfig,
    *,
    batch_size: int,
    start_id: int,
    eos_id: int,
    key: jax.Array | None = None,
    pad_id: int = 0,
) -> jax.Array:
    """Generated tokens int32 (B, cfg.max_len) by cfg.method; `key` is required for sampling.

    Under jit keep cfg static, e.g. jax.jit(functools.partial(decode, step_fn, cfg=cfg, ...))."""
    if cfg.method == "sample" and key is None:
        raise ConfigError(
            "decoding method 'sample' needs a PRNG key: pass key=jax.random.key(seed)")
    ids = {"batch_size": batch_size, "max_len": cfg.max_len, "start_id": start_id,
           "eos_id": eos_id, "pad_id": pad_id}
    return _DECODERS[cfg.method](step_fn, cache, cfg, key, ids)


def _decode_greedy(
    step_fn: StepFn, cache: Cache, cfg: DecodeConfig, key: jax.Array | None, ids: dict
) -> jax.Array:
    return greedy(step_fn, cache, **ids)


def _decode_beam(
    step_fn: StepFn, cache: Cache, cfg: DecodeConfig, key: jax.Array | None, ids: dict
) -> jax.Array:
    tokens, _ = beam_search(step_fn, cache, beam_size=cfg.beam_size,
                            length_penalty=cfg.length_penalty, **ids)
    return tokens


def _decode_sample(
    step_fn: StepFn, cache: Cache, cfg: DecodeConfig, key: jax.Array | None, ids: dict
) -> jax.Array:
    return sample(step_fn, cache, key, temperature=cfg.temperature, top_p=cfg.top_p, **ids)


_DECODERS: dict[str, Callable[..., jax.Array]] = {
    "greedy": _decode_greedy,
    "beam": _decode_beam,
    "sample": _decode_sample,
}


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"decoding {name} must be a positive integer, got {value!r}")


def _check_sampling(temperature: float, top_p: float) -> None:
    if not temperature > 0:
        raise ConfigError(
            f"sampling temperature must be > 0, got {temperature!r}; for the most likely "
            "tokens use method 'greedy'")
    if not 0 < top_p <= 1:
        raise ConfigError(
            f"top_p must be in (0, 1], got {top_p!r}; 1 keeps every token")


def _check_batch_axis(cache: Cache, batch_size: int) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(cache):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != batch_size:
            raise ValueError(
                f"cache leaf {jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}; every "
                f"cache leaf needs the batch ({batch_size}) on axis 0")
