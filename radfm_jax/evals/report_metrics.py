"""Quality of generated radiology reports: word overlap, clinical correctness, memorisation.

Pure host code (Python / NumPy), run on decoded report strings after generation.

* :func:`bleu`: corpus BLEU-1..4, our own implementation of sacrebleu's defaults (13a tokens,
  "exp" smoothing), so scores are comparable with published sacrebleu numbers.
* :func:`rouge_l`: mean ROUGE-L F-measure, as Google's ``rouge-score`` computes it.
* :func:`clinical_efficacy`: precision / recall / F1 of positive findings, comparing labels of
  the generated report with labels of the reference (CheXpert-style clinical efficacy).
* :func:`label_reports`: labels report texts with the rule-based labeler for that comparison.
* :func:`memorisation_audit`: how many generated reports copy a training report verbatim or
  share a long word n-gram with one.
* :func:`report_metrics`: all of the above under flat ``"<group>/<metric>"`` keys.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from radfm_jax.data.findings import CHEXPERT_FINDINGS, LABEL_VALUE_NAMES, POSITIVE
from radfm_jax.data.labeler import label_report
from radfm_jax.errors import ConfigError

BLEU_MAX_ORDER = 4

# ------------------------------------------------------------------------------ tokenisers

# mteval-v13a's language-dependent rules, copied from sacrebleu.tokenizers.tokenizer_re.
_13A_RULES = (
    # Split off symbols and punctuation: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # Period and comma, unless preceded by a digit ...
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    # ... or unless followed by a digit ("3.5", "1,000" stay one token).
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # A dash after a digit ("T11-T12" -> "T11 - T12").
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def tokenize_13a(text: str) -> list[str]:
    """Tokens of ``text`` under mteval-v13a, the tokenizer sacrebleu's BLEU uses by default.

    Case is kept (sacrebleu's BLEU is case-sensitive by default). Trailing whitespace is
    stripped, ``<skipped>`` markers and hyphenated line breaks removed, the four common HTML
    entities unescaped, then the regex rules above applied and the result split on whitespace.
    """
    line = text.rstrip()
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_VALID_WORD = re.compile(r"^[a-z0-9]+$")


def tokenize_words(text: str) -> list[str]:
    """Lower-case alphanumeric words, exactly as ``rouge_score``'s default tokenizer (no stemmer).

    ``text.lower()``, every run of characters outside ``[a-z0-9]`` replaced by a space, split on
    whitespace, empty tokens dropped. So "Pleural-effusion, 3.5cm" -> pleural effusion 3 5cm.
    """
    words = _NON_ALPHANUMERIC.sub(" ", text.lower()).split()
    return [w for w in words if _VALID_WORD.match(w)]


def _normalise_whitespace_and_case(text: str) -> str:
    return " ".join(text.lower().split())


# ------------------------------------------------------------------------------ input checks


def _check_reports(name: str, reports: Sequence[str]) -> list[str]:
    if isinstance(reports, str):
        raise TypeError(f"{name} must be a sequence of report strings, not one string; "
                         f"wrap a single report in a list")
    reports = list(reports)
    for i, report in enumerate(reports):
        if not isinstance(report, str):
            raise TypeError(f"{name}[{i}] is {type(report).__name__}, not str; decode token ids "
                             f"to text before scoring")
    return reports


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    hyps = _check_reports("hypotheses", hypotheses)
    refs = _check_reports("references", references)
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} generated reports but {len(refs)} references; "
                         f"pass exactly one reference per generated report")
    if not hyps:
        raise ValueError("no reports to score; pass at least one (generated, reference) pair")
    return hyps, refs


# ------------------------------------------------------------------------------ BLEU


def _ngram_counts(tokens: list[str], max_order: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1)
                   for i in range(len(tokens) - n + 1))


def _bleu_from_statistics(correct: Sequence[int], total: Sequence[int], hyp_len: int,
                          ref_len: int, order: int) -> float:
    """BLEU-``order`` (0..100) from corpus n-gram statistics, with sacrebleu's "exp" smoothing."""
    if not any(correct[:order]):
        return 0.0
    brevity_penalty = 1.0
    if hyp_len < ref_len:
        brevity_penalty = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    log_precisions = []
    smoothing = 1.0
    for n in range(order):
        if total[n] == 0:
            # No hypothesis is long enough for n-grams of this order: BLEU is 0 (sacrebleu floors
            # log(0) to -9999999999, which exp() turns into exactly 0.0).
            return 0.0
        if correct[n] == 0:
            # mteval's NIST smoothing: the k-th order without a match counts 1 / 2^k matches.
            smoothing *= 2
            precision = 100.0 / (smoothing * total[n])
        else:
            precision = 100.0 * correct[n] / total[n]
        log_precisions.append(math.log(precision))
    return brevity_penalty * math.exp(sum(log_precisions) / order)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus-level BLEU-1..4 of generated reports against one reference each, on a 0..100 scale.

    BLEU-n = BP * exp(mean over k = 1..n of log p_k), where

    * p_k is the modified k-gram precision pooled over the corpus: the sum over reports of
      matched k-grams (each hypothesis k-gram counted at most as often as it occurs in its
      reference) divided by the sum of hypothesis k-grams, times 100;
    * BP = exp(1 - R / H) if the total hypothesis length H is below the total reference length
      R, else 1 (0 when H = 0);
    * tokens come from :func:`tokenize_13a` (case-sensitive);
    * smoothing "exp" (mteval-v13a's): the i-th order with no match at all gets
      p_k = 100 / (2^i * total k-grams); BLEU is 0 when no n-gram of any order matches, or when
      no hypothesis has n tokens.

    This equals ``sacrebleu.metrics.BLEU(max_ngram_order=n).corpus_score(hyps, [refs]).score``
    (sacrebleu 2.x defaults). Returns ``{"bleu1": ..., "bleu4": ...}``.
    """
    hyps, refs = _check_pairs(hypotheses, references)
    correct = [0] * BLEU_MAX_ORDER
    total = [0] * BLEU_MAX_ORDER
    hyp_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        hyp_tokens, ref_tokens = tokenize_13a(hyp), tokenize_13a(ref)
        hyp_len += len(hyp_tokens)
        ref_len += len(ref_tokens)
        ref_counts = _ngram_counts(ref_tokens, BLEU_MAX_ORDER)
        for gram, count in _ngram_counts(hyp_tokens, BLEU_MAX_ORDER).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, ref_counts[gram])
    return {f"bleu{n}": _bleu_from_statistics(correct, total, hyp_len, ref_len, n)
            for n in range(1, BLEU_MAX_ORDER + 1)}


# ------------------------------------------------------------------------------ ROUGE-L


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Row-by-row dynamic programme in NumPy: with ``prev`` the previous row of the LCS table,
    the new row is the running maximum of ``max(prev[j], prev[j-1] + [a_i == b_j])``, which
    equals the textbook recurrence because LCS rows never decrease along j.
    """
    if len(a) > len(b):
        a, b = b, a  # loop in Python over the shorter one, vectorise over the longer
    if not a:
        return 0
    ids: dict[str, int] = {}
    a_ids = np.array([ids.setdefault(t, len(ids)) for t in a])
    b_ids = np.array([ids.setdefault(t, len(ids)) for t in b])
    prev = np.zeros(len(b) + 1, np.int64)
    for token in a_ids:
        row = prev.copy()
        np.maximum(prev[1:], prev[:-1] + (b_ids == token), out=row[1:])
        prev = np.maximum.accumulate(row)
    return int(prev[-1])


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean over (generated, reference) pairs of the ROUGE-L F-measure, on a 0..1 scale.

    Per pair, with tokens from :func:`tokenize_words` and L the LCS length:
    P = L / len(generated), R = L / len(reference), F = 2PR / (P + R), and F = 0 when either
    text has no tokens or L = 0. This is
    ``rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference, generated)["rougeL"]
    .fmeasure`` (no stemmer), averaged.
    """
    hyps, refs = _check_pairs(hypotheses, references)
    scores = []
    for hyp, ref in zip(hyps, refs):
        hyp_tokens, ref_tokens = tokenize_words(hyp), tokenize_words(ref)
        if not hyp_tokens or not ref_tokens:
            scores.append(0.0)
            continue
        common = lcs_length(hyp_tokens, ref_tokens)
        precision, recall = common / len(hyp_tokens), common / len(ref_tokens)
        scores.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return float(np.mean(scores))


# ------------------------------------------------------------------------------ clinical efficacy


def _check_label_names(label_names: Sequence[str]) -> list[str]:
    names = [label_names] if isinstance(label_names, str) else list(label_names)
    if not names:
        raise ConfigError("label_names is empty; pass the findings to score, e.g. "
                          "radfm_jax.data.findings.CHEXPERT_FINDINGS")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"label_names lists {duplicates} more than once; list each finding once")
    return names


def label_reports(texts: Sequence[str], label_names: Sequence[str]) -> np.ndarray:
    """CheXpert values (N, F) int8 of each report in ``texts`` for each finding in ``label_names``.

    Uses the rule-based labeler :func:`radfm_jax.data.labeler.label_report`, which knows the 14
    names of ``CHEXPERT_FINDINGS``; any other name is an error.
    """
    texts = _check_reports("texts", texts)
    names = _check_label_names(label_names)
    for name in names:
        if name not in CHEXPERT_FINDINGS:
            nearest = difflib.get_close_matches(name, CHEXPERT_FINDINGS, n=1, cutoff=0.0)
            raise ConfigError(f"the report labeler has no finding {name!r} (did you mean "
                              f"{nearest[0]!r}?); it labels only {', '.join(CHEXPERT_FINDINGS)}")
    labels = np.empty((len(texts), len(names)), np.int8)
    for i, text in enumerate(texts):
        values = label_report(text)
        labels[i] = [values[name] for name in names]
    return labels


def _ratio(numerator: float, denominator: float, undefined: float) -> float:
    return numerator / denominator if denominator > 0 else undefined


def _precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    if tp + fp + fn == 0:  # no positive anywhere: nothing to be right or wrong about
        return math.nan, math.nan, math.nan
    return _ratio(tp, tp + fp, 0.0), _ratio(tp, tp + fn, 0.0), 2 * tp / (2 * tp + fp + fn)


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def clinical_efficacy(generated_labels: np.ndarray, reference_labels: np.ndarray,
                      label_names: Sequence[str]) -> dict[str, float]:
    """Precision, recall and F1 of the findings stated in generated reports.

    Inputs are (N, F) CheXpert values (POSITIVE 1, NEGATIVE 0, UNCERTAIN -1, NOT_MENTIONED -2)
    of the generated and the reference report of each of N studies, columns in ``label_names``
    order (e.g. from :func:`label_reports`).

    Rule: a finding is *predicted positive* iff the generated report's value is POSITIVE and
    *truly positive* iff the reference's value is POSITIVE; uncertain, negative and not
    mentioned all count as negative on both sides. Per finding, with TP / FP / FN counted over
    the N studies:

    * precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN)
      (the harmonic mean of precision and recall, 0 when TP = 0);
    * a ratio whose denominator is 0 is 0 (no predicted positives while the reference has some:
      precision 0; predicted positives the reference never has: recall 0);
    * a finding positive in neither the references nor the generations is undefined: its
      precision, recall and F1 are NaN.

    Averages: ``micro_*`` pool TP / FP / FN over all findings, then apply the same formulas.
    ``macro_*`` are the unweighted means of the per-finding values over the *defined* findings
    only (NaN ones excluded); NaN if no finding is defined.

    Returns keys ``clinical/{precision,recall,f1}/<finding>``,
    ``clinical/micro_{precision,recall,f1}`` and ``clinical/macro_{precision,recall,f1}``.
    """
    names = _check_label_names(label_names)
    generated, reference = np.asarray(generated_labels), np.asarray(reference_labels)
    for what, labels in (("generated_labels", generated), ("reference_labels", reference)):
        if labels.ndim != 2 or labels.shape[1] != len(names):
            raise ValueError(f"{what} has shape {labels.shape}; expected (N, {len(names)}), one "
                             f"column per label name")
        unknown = sorted(set(np.unique(labels).tolist()) - set(LABEL_VALUE_NAMES))
        if unknown:
            raise ValueError(f"{what} holds {unknown}, which are not CheXpert values "
                             f"{sorted(LABEL_VALUE_NAMES)}; pass the labeler's raw output")
    if generated.shape != reference.shape:
        raise ValueError(f"generated_labels {generated.shape} and reference_labels "
                         f"{reference.shape} differ; pass one row per (generated, reference) pair")
    predicted, true = generated == POSITIVE, reference == POSITIVE
    tp = (predicted & true).sum(axis=0)
    fp = (predicted & ~true).sum(axis=0)
    fn = (~predicted & true).sum(axis=0)

    metrics: dict[str, float] = {}
    per_finding = {"precision": [], "recall": [], "f1": []}
    for j, name in enumerate(names):
        values = _precision_recall_f1(int(tp[j]), int(fp[j]), int(fn[j]))
        for kind, value in zip(per_finding, values):
            metrics[f"clinical/{kind}/{name}"] = value
            per_finding[kind].append(value)
    micro = _precision_recall_f1(int(tp.sum()), int(fp.sum()), int(fn.sum()))
    for kind, value in zip(per_finding, micro):
        metrics[f"clinical/micro_{kind}"] = value
    for kind, values in per_finding.items():
        metrics[f"clinical/macro_{kind}"] = _nanmean(values)
    return metrics


# ------------------------------------------------------------------------------ memorisation


def memorisation_audit(generated: Sequence[str], training_reports: Iterable[str],
                       ngram: int = 8) -> dict[str, float]:
    """How much generated text is copied from the training reports.

    * ``memorisation/verbatim_fraction``: fraction of generated reports equal to some training
      report after lower-casing and collapsing all whitespace to single spaces.
    * ``memorisation/ngram_fraction``: fraction of generated reports that share a run of at
      least ``ngram`` consecutive words with some training report (or are verbatim copies).
      Words are :func:`tokenize_words` (lower-case alphanumeric). Sharing a run of length
      >= k implies sharing one of length exactly k, so only k-grams are compared; a generated
      report of fewer than k words shares none.

    ``training_reports`` is read once, as a stream, so it may be a generator over a data set too
    large for memory: only the generated reports' k-grams are held (exact tuples, no hashing),
    and each training k-gram is looked up among them.
    """
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
        raise ConfigError(f"ngram must be a positive integer word count, got {ngram!r}; "
                          f"8 is the usual choice")
    reports = _check_reports("generated", generated)
    if not reports:
        raise ValueError("no generated reports to audit; pass at least one")
    if isinstance(training_reports, str):
        raise TypeError("training_reports must be an iterable of report strings, not one string")

    by_text: dict[str, list[int]] = {}
    by_gram: dict[tuple[str, ...], list[int]] = {}
    for i, report in enumerate(reports):
        by_text.setdefault(_normalise_whitespace_and_case(report), []).append(i)
        words = tokenize_words(report)
        for start in range(len(words) - ngram + 1):
            by_gram.setdefault(tuple(words[start:start + ngram]), []).append(i)

    verbatim = np.zeros(len(reports), bool)
    shares_gram = np.zeros(len(reports), bool)
    for training in training_reports:
        verbatim[by_text.get(_normalise_whitespace_and_case(training), [])] = True
        words = tokenize_words(training)
        for start in range(len(words) - ngram + 1):
            hits = by_gram.get(tuple(words[start:start + ngram]))
            if hits:
                shares_gram[hits] = True
    return {"memorisation/verbatim_fraction": float(verbatim.mean()),
            "memorisation/ngram_fraction": float((verbatim | shares_gram).mean())}


# ------------------------------------------------------------------------------ everything


def report_metrics(generated: Sequence[str], references: Sequence[str],
                   training_reports: Iterable[str], label_names: Sequence[str],
                   ngram: int = 8) -> dict[str, float]:
    """BLEU-1..4 (``report/bleu1``..``report/bleu4``, 0..100), ``report/rougeL`` (0..1), the
    ``clinical/...`` keys of :func:`clinical_efficacy` on labels from :func:`label_reports`, and
    the ``memorisation/...`` keys of :func:`memorisation_audit`."""
    hyps, refs = _check_pairs(generated, references)
    metrics = {f"report/{key}": value for key, value in bleu(hyps, refs).items()}
    metrics["report/rougeL"] = rouge_l(hyps, refs)
    metrics.update(clinical_efficacy(label_reports(hyps, label_names),
                                     label_reports(refs, label_names), label_names))
    metrics.update(memorisation_audit(hyps, training_reports, ngram))
    return metrics
