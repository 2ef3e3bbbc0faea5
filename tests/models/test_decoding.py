"""Decoding against NumPy references on a toy model: greedy == a plain loop, beam search ==
brute-force enumeration, sampling == softmax / nucleus frequencies; rows, jit, bad settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from radfm_jax.models.decoding import (
    DecodeConfig,
    beam_search,
    decode,
    greedy,
    nucleus_filter,
    sample,
)

PAD, EOS, START = 0, 1, 2


def make_step(table: np.ndarray, on_trace=lambda: None):
    """A position-dependent trigram model: logits = table[position, prev, token] + context.

    The cache holds the previous token (an int leaf the step updates) and a per-example
    context bias (a float (B, V) leaf standing in for encoder output), so a decoder that tiles,
    reorders or threads the cache wrongly gets different logits than the NumPy reference."""
    table = jnp.asarray(table, jnp.float32)

    def step(tokens, position, cache):
        on_trace()
        logits = table[position, cache["prev"], tokens] + cache["context"]
        return logits, {"prev": tokens, "context": cache["context"]}

    return step


def counting_step(table: np.ndarray, positions: list):
    """make_step's model that also records, on the host, each position the loop executes."""
    inner = make_step(table)

    def step(tokens, position, cache):
        jax.debug.callback(lambda p: positions.append(int(p)), position)
        return inner(tokens, position, cache)

    return step


def make_cache(prev: np.ndarray, context: np.ndarray) -> dict:
    return {"prev": jnp.asarray(prev, jnp.int32), "context": jnp.asarray(context, jnp.float32)}


def random_model(seed: int, batch: int, vocab: int, max_len: int, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    table = rng.normal(0, scale, (max_len, vocab, vocab, vocab))
    prev = rng.integers(0, vocab, batch)
    context = rng.normal(0, 1.0, (batch, vocab))
    return table, prev, context


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def np_logits(table, context, row, position, prev, token) -> np.ndarray:
    return np.float64(table[position, prev, token]) + context[row]


def np_greedy(table, prev, context, max_len) -> np.ndarray:
    out = np.full((len(prev), max_len), PAD)
    for row in range(len(prev)):
        before, token = prev[row], START
        for position in range(max_len):
            logits = np_logits(table, context, row, position, before, token)
            before, token = token, int(np.argmax(logits))
            out[row, position] = token
            if token == EOS:
                break
    return out


def np_best_hypothesis(table, prev, context, row, max_len, length_penalty):
    """Every complete hypothesis of one row (ends in EOS, or reaches max_len), scored."""
    vocab = table.shape[-1]
    best_score, best_tokens = -np.inf, None

    def extend(tokens, logp, before, token):
        nonlocal best_score, best_tokens
        position = len(tokens)
        log_probs = np_log_softmax(np_logits(table, context, row, position, before, token))
        for nxt in range(vocab):
            seq, total = tokens + [nxt], logp + log_probs[nxt]
            if nxt == EOS or position + 1 == max_len:
                score = total / len(seq) ** length_penalty
                if score > best_score:
                    best_score, best_tokens = score, seq
            else:
                extend(seq, total, token, nxt)

    extend([], 0.0, prev[row], START)
    return best_tokens + [PAD] * (max_len - len(best_tokens)), best_score


def np_beam_search(table, prev, context, row, beam_size, max_len, length_penalty):
    """Plain-list beam search run to max_len: the best `2 * beam_size` continuations per step;
    an EOS among the top `beam_size` (any of them at the last step) finishes, the best
    `beam_size` others stay alive. Returns the best finished hypothesis and its score."""
    vocab = table.shape[-1]
    alive = [([], 0.0, prev[row], START)]  # (tokens, summed log p, previous token, last token)
    finished = []
    for position in range(max_len):
        candidates = []
        for tokens, logp, before, token in alive:
            log_probs = np_log_softmax(np_logits(table, context, row, position, before, token))
            candidates += [(logp + log_probs[nxt], tokens + [nxt], token, nxt)
                           for nxt in range(vocab)]
        candidates = sorted(candidates, key=lambda c: -c[0])[: 2 * beam_size]
        for rank, (logp, tokens, _, nxt) in enumerate(candidates):
            if rank < beam_size and (nxt == EOS or position == max_len - 1):
                finished.append((logp / len(tokens) ** length_penalty, tokens))
        alive = [(t, lp, before, nxt) for lp, t, before, nxt in candidates if nxt != EOS]
        alive = alive[:beam_size]
    score, tokens = max(finished, key=lambda f: f[0])
    return tokens + [PAD] * (max_len - len(tokens)), score


def np_nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Indices of the smallest most-likely set whose mass reaches top_p."""
    order = np.argsort(-probs)
    size = int(np.searchsorted(np.cumsum(probs[order]), top_p) + 1)
    return np.sort(order[:size])


# (1) greedy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matches_numpy_loop(seed):
    table, prev, context = random_model(seed, batch=4, vocab=6, max_len=5)
    out = greedy(make_step(table), make_cache(prev, context), batch_size=4, max_len=5,
                 start_id=START, eos_id=EOS, pad_id=PAD)
    assert out.dtype == jnp.int32 and out.shape == (4, 5)
    np.testing.assert_array_equal(out, np_greedy(table, prev, context, 5))


# (2) + (3) beam search ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_size_one_is_greedy(seed):
    table, prev, context = random_model(seed, batch=4, vocab=6, max_len=5)
    step, cache = make_step(table), make_cache(prev, context)
    tokens, scores = beam_search(step, cache, batch_size=4, beam_size=1, max_len=5,
                                 start_id=START, eos_id=EOS, pad_id=PAD)
    expected = greedy(step, cache, batch_size=4, max_len=5, start_id=START, eos_id=EOS)
    np.testing.assert_array_equal(tokens, expected)
    assert scores.shape == (4,)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_wide_beam_finds_brute_force_best(seed, length_penalty):
    vocab, max_len, batch = 4, 4, 3
    # With beam_size = vocab ** max_len every candidate of every step ranks within the beam,
    # so every EOS continuation finishes, every other stays alive and the pool holds them all:
    # the search is exhaustive and must agree with enumeration.
    beam = vocab**max_len
    table, prev, context = random_model(seed, batch, vocab, max_len, scale=1.5)
    tokens, scores = beam_search(make_step(table), make_cache(prev, context), batch_size=batch,
                                 beam_size=beam, max_len=max_len, start_id=START, eos_id=EOS,
                                 length_penalty=length_penalty, pad_id=PAD)
    for row in range(batch):
        best, best_score = np_best_hypothesis(table, prev, context, row, max_len, length_penalty)
        np.testing.assert_array_equal(tokens[row], best)
        np.testing.assert_allclose(scores[row], best_score, rtol=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("beam_size", [2, 3])
def test_narrow_beam_matches_numpy_beam_search(beam_size, length_penalty):
    """Here beams are pruned and the pool fills, so the early stop and the reordering of the
    cache by parent beam both decide the answer; the reference never stops early."""
    batch, vocab, max_len = 2, 6, 8
    stopped_early = 0
    for seed in range(4):
        table, prev, context = random_model(seed, batch, vocab, max_len)
        table[..., EOS] += 3.0  # EOS often enough that pools fill before max_len
        positions = []
        step, cache = counting_step(table, positions), make_cache(prev, context)
        tokens, scores = beam_search(step, cache, batch_size=batch, beam_size=beam_size,
                                     max_len=max_len, start_id=START, eos_id=EOS,
                                     length_penalty=length_penalty, pad_id=PAD)
        jax.effects_barrier()
        stopped_early += len(positions) < max_len
        for row in range(batch):
            best, best_score = np_beam_search(table, prev, context, row, beam_size, max_len,
                                              length_penalty)
            np.testing.assert_array_equal(tokens[row], best)
            np.testing.assert_allclose(scores[row], best_score, rtol=1e-5)
    assert stopped_early, "test set-up: no run stopped early, so the stop rule went untested"


def test_length_penalty_changes_the_brute_force_answer():
    """Guards the test above: on its models the penalty must matter, or lp=1 tests nothing."""
    differs = []
    for seed in (0, 1):
        table, prev, context = random_model(seed, 3, 4, 4, scale=1.5)
        for row in range(3):
            raw = np_best_hypothesis(table, prev, context, row, 4, 0.0)[0]
            normalised = np_best_hypothesis(table, prev, context, row, 4, 1.0)[0]
            differs.append(raw != normalised)
    assert any(differs)


# (4) sampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_tiny_top_p_is_greedy(temperature):
    table, prev, context = random_model(5, batch=4, vocab=6, max_len=5)
    out = sample(make_step(table), make_cache(prev, context), jax.random.key(0), batch_size=4,
                 max_len=5, start_id=START, eos_id=EOS, temperature=temperature, top_p=1e-6)
    np.testing.assert_array_equal(out, np_greedy(table, prev, context, 5))


def first_step_draws(temperature: float, top_p: float, draws: int = 4000):
    """`draws` independent first tokens (one per row) and their NumPy softmax distribution."""
    table, prev, context = random_model(7, batch=1, vocab=6, max_len=1, scale=1.0)
    cache = make_cache(np.repeat(prev, draws), np.repeat(context, draws, axis=0))
    out = sample(make_step(table), cache, jax.random.key(42), batch_size=draws, max_len=1,
                 start_id=START, eos_id=EOS, temperature=temperature, top_p=top_p)
    logits = np_logits(table, context, 0, 0, prev[0], START) / temperature
    return np.asarray(out[:, 0]), np.exp(np_log_softmax(logits))


def assert_frequencies_match(samples: np.ndarray, probs: np.ndarray) -> None:
    """Pearson chi-square at the 0.1% level (a correct sampler fails 1 seed in 1000; the key is
    fixed, so the outcome is deterministic). Needs expected counts >= 5 to be valid."""
    support = np.flatnonzero(probs)
    expected = probs[support] * len(samples)
    assert expected.min() >= 5, "test set-up: a token is too rare for a chi-square test"
    observed = np.bincount(samples, minlength=len(probs))[support]
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert statistic < stats.chi2.ppf(0.999, df=len(support) - 1), (observed, expected)


def test_sampling_matches_softmax_frequencies():
    samples, probs = first_step_draws(temperature=1.0, top_p=1.0)
    assert set(np.unique(samples)) == set(range(6))
    assert_frequencies_match(samples, probs)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 0.6), (0.7, 0.8), (2.0, 0.5)])
def test_top_p_samples_exactly_the_nucleus(temperature, top_p):
    samples, probs = first_step_draws(temperature, top_p)
    nucleus = np_nucleus(probs, top_p)
    assert 1 < len(nucleus) < len(probs), "test set-up: the nucleus must drop and keep tokens"
    np.testing.assert_array_equal(np.unique(samples), nucleus)
    renormalised = np.zeros_like(probs)
    renormalised[nucleus] = probs[nucleus] / probs[nucleus].sum()
    assert_frequencies_match(samples, renormalised)


def test_steps_draw_with_their_own_keys():
    """Same distribution at both steps: with one key reused, every row would repeat its first
    token; independent draws agree at rate sum(p^2)."""
    vocab, draws = 6, 4000
    logits = np.random.default_rng(3).normal(0, 1.0, vocab)
    table = np.broadcast_to(logits, (2, vocab, vocab, vocab))
    cache = make_cache(np.zeros(draws, int), np.zeros((draws, vocab)))
    out = np.asarray(sample(make_step(table), cache, jax.random.key(9), batch_size=draws,
                            max_len=2, start_id=START, eos_id=vocab + 1))  # never emitted
    probs = np.exp(np_log_softmax(logits))
    agreement, expected = np.mean(out[:, 0] == out[:, 1]), np.sum(probs**2)
    # Binomial standard error over 4000 rows is < 0.008; 4 of them is the tolerance.
    assert abs(agreement - expected) < 4 * np.sqrt(expected * (1 - expected) / draws)


@pytest.mark.parametrize("top_p,kept", [(1e-9, [1]), (0.4, [1]), (0.75, [1, 3]),
                                        (0.85, [0, 1, 3]), (0.99, [0, 1, 2, 3])])
def test_nucleus_filter_hand_example(top_p, kept):
    probs = np.array([0.15, 0.5, 0.05, 0.3])
    filtered = np.asarray(nucleus_filter(jnp.log(jnp.asarray(probs, jnp.float32)), top_p))
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(filtered)), kept)


# (5) rows finish independently, and the loop stops once all have ---------------------------


def scripted_model(max_len: int = 5, vocab: int = 5):
    """Token 3 is always likely and EOS wins at position 2, except where a row's context
    forces EOS at once (row 0) or forbids it (row 1)."""
    table = np.zeros((max_len, vocab, vocab, vocab))
    table[..., 3] = 5.0
    table[2, ..., EOS] = 10.0
    context = np.zeros((3, vocab))
    context[0, EOS] = 50.0
    context[1, EOS] = -50.0
    return table, np.zeros(3, int), context


SCRIPTED = [[EOS, PAD, PAD, PAD, PAD], [3, 3, 3, 3, 3], [3, 3, EOS, PAD, PAD]]

DECODERS = {
    "greedy": lambda step, cache, **kw: greedy(step, cache, **kw),
    "beam": lambda step, cache, **kw: beam_search(step, cache, beam_size=2, **kw)[0],
    "sample": lambda step, cache, **kw: sample(step, cache, jax.random.key(3),
                                               temperature=0.2, **kw),
}


@pytest.mark.parametrize("method", sorted(DECODERS))
def test_rows_finish_independently(method):
    table, prev, context = scripted_model()
    out = DECODERS[method](make_step(table), make_cache(prev, context), batch_size=3, max_len=5,
                           start_id=START, eos_id=EOS, pad_id=PAD)
    np.testing.assert_array_equal(out, SCRIPTED)


@pytest.mark.parametrize("method", sorted(DECODERS))
def test_loop_stops_once_every_row_has_finished(method):
    table, prev, context = scripted_model()
    context[1, EOS] = 0.0  # now every row has emitted EOS after position 2
    # So sure an EOS at position 2 that beam search's pool (beam_size=2) fills there with
    # hypotheses no alive beam can beat any more, the condition it stops on.
    table[2, ..., EOS] = 50.0
    positions = []
    out = DECODERS[method](counting_step(table, positions), make_cache(prev, context),
                           batch_size=3, max_len=5, start_id=START, eos_id=EOS, pad_id=PAD)
    jax.effects_barrier()
    np.testing.assert_array_equal(out[1], SCRIPTED[2])
    assert positions == [0, 1, 2]


# (6) jit: one trace serves calls with new cache values --------------------------------------


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_decode_jits_once_for_new_cache_values(method):
    table, prev, context = random_model(11, batch=4, vocab=6, max_len=5)
    _, other_prev, other_context = random_model(12, batch=4, vocab=6, max_len=5)
    traces = []
    step = make_step(table, on_trace=lambda: traces.append(method))
    cfg = DecodeConfig(method=method, beam_size=3, temperature=0.8, top_p=0.9, max_len=5)

    @jax.jit
    def run(cache, key):
        return decode(step, cache, cfg, batch_size=4, start_id=START, eos_id=EOS, key=key)

    first = run(make_cache(prev, context), jax.random.key(0))
    traced = len(traces)
    second = run(make_cache(other_prev, other_context), jax.random.key(0))
    assert traced >= 1 and len(traces) == traced
    assert first.shape == second.shape == (4, 5)
    eager = decode(step, make_cache(other_prev, other_context), cfg, batch_size=4,
                   start_id=START, eos_id=EOS, key=jax.random.key(0))
    np.testing.assert_array_equal(second, eager)
    if method == "greedy":
        np.testing.assert_array_equal(second, np_greedy(table, other_prev, other_context, 5))


# (7) bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings,message", [
    ({"beam_size": 0}, "beam_size"),
    ({"beam_size": 2.5}, "beam_size"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"max_len": 0}, "max_len"),
    ({"method": "nucleus"}, "unknown decoding method 'nucleus'"),
])
def test_bad_config_is_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        DecodeConfig(**settings)


def test_sampling_without_key_is_rejected():
    table, prev, context = random_model(0, batch=2, vocab=6, max_len=5)
    with pytest.raises(ValueError, match="PRNG key"):
        decode(make_step(table), make_cache(prev, context), DecodeConfig(method="sample"),
               batch_size=2, start_id=START, eos_id=EOS)


def test_direct_calls_validate_too():
    table, prev, context = random_model(0, batch=2, vocab=6, max_len=5)
    step, cache = make_step(table), make_cache(prev, context)
    ids = {"batch_size": 2, "max_len": 5, "start_id": START, "eos_id": EOS}
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, cache, beam_size=0, **ids)
    with pytest.raises(ValueError, match="top_p"):
        sample(step, cache, jax.random.key(0), top_p=0.0, **ids)
    with pytest.raises(ValueError, match=r"cache leaf \['context'\].*batch \(3\)"):
        greedy(step, cache, **{**ids, "batch_size": 3})
