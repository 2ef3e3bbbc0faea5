"""Report-quality metrics against independent references: sacrebleu (BLEU), rouge-score (ROUGE-L),
scikit-learn and hand counts (clinical efficacy), a brute-force n-gram set (memorisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sklearn.metrics import precision_recall_fscore_support

from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import (
    plan_splits,
    sample_patients,
    sample_studies,
)
from radfm_jax.data.findings import (
    CHEXPERT_FINDINGS,
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
)
from radfm_jax.errors import ConfigError
from radfm_jax.evals.report_metrics import (
    bleu,
    clinical_efficacy,
    label_reports,
    lcs_length,
    memorisation_audit,
    report_metrics,
    rouge_l,
    tokenize_13a,
    tokenize_words,
)

P, N, U, M = POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED


def _synthetic_reports(n: int, seed: int) -> list[str]:
    """n reports written by the synthetic_cxr generator, chained as its builder chains them."""
    plan = plan_splits({"train": n, "val": 0, "test": 0}, seed)["train"]
    patients = sample_patients(int(plan.patient.max()) + 1, seed)
    studies = sample_studies(plan, patients, np.random.default_rng([seed, 0, 0, 0]), seed)
    reports, _ = write_reports(studies, np.random.default_rng([seed, 0, 0, 2]))
    return list(reports)


_VOCAB = ("the", "heart", "size", "is", "normal", "no", "pleural", "effusion", "pneumothorax",
          "left", "right", "lower", "lobe", "opacity", "consolidation", "mild", "stable",
          "lungs", "are", "clear", "tube", "3.5", "cm", "T11-T12", "1,000", "(", ")", ",", ".",
          ";", "Heart", "NG-tube", "&amp;", "?", "x-ray", "5-6")


def _random_sentence(rng: np.random.Generator) -> str:
    words = rng.choice(_VOCAB, size=int(rng.integers(0, 18)))
    text = " ".join(words)
    # Glue some punctuation to the previous word, as people write it.
    return text.replace(" ,", ",").replace(" .", ".") if rng.random() < 0.5 else text


def _perturb(text: str, rng: np.random.Generator) -> str:
    """A partly matching reference: drop, swap and substitute some words."""
    words = text.split()
    out = []
    for word in words:
        u = rng.random()
        if u < 0.15:
            continue
        out.append(str(rng.choice(_VOCAB)) if u < 0.3 else word)
    if len(out) > 2 and rng.random() < 0.5:
        i = int(rng.integers(len(out) - 1))
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def _random_corpus(seed: int) -> tuple[list[str], list[str]]:
    """~200 (generated, reference) pairs: random vocabulary sentences and synthetic reports,
    each paired with a perturbed copy, another report, or itself."""
    rng = np.random.default_rng(seed)
    synthetic = _synthetic_reports(60, seed)
    texts = [_random_sentence(rng) for _ in range(140)] + synthetic
    hyps, refs = [], []
    for text in texts:
        u = rng.random()
        ref = text if u < 0.1 else texts[int(rng.integers(len(texts)))] if u < 0.3 else _perturb(text, rng)
        hyps.append(text)
        refs.append(ref)
    return hyps, refs


def _sacrebleu(hyps: list[str], refs: list[str], order: int) -> float:
    return BLEU(max_ngram_order=order).corpus_score(hyps, [refs]).score


def _rouge_score_mean(hyps: list[str], refs: list[str]) -> float:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]))


# ---------------------------------------------------------------- BLEU

BLEU_CASES = {
    "identical": (["The heart is normal in size."], ["The heart is normal in size."]),
    "brevity_penalty": (["No effusion."], ["No pleural effusion or pneumothorax is seen today."]),
    "longer_than_reference": (["Heart size is normal and the lungs are clear bilaterally today."],
                              ["Heart size is normal."]),
    "punctuation_and_numbers": (
        ['Nodule (3.5 cm) at T11-T12; "stable" & unchanged, 1,000 HU?'],
        ["Nodule, 3.5 cm, at T11 - T12: stable &amp; unchanged. 1,000 HU!"]),
    "case_sensitive": (["HEART SIZE IS NORMAL ."], ["heart size is normal ."]),
    "no_4gram_match_smoothing": (["effusion pleural right small no pneumothorax seen"],
                                 ["small right pleural effusion no pneumothorax seen"]),
    "no_3gram_or_4gram_match": (["lungs clear heart normal effusion none"],
                                ["lungs are clear , heart is normal , no effusion"]),
    "nothing_matches": (["Cardiomegaly."], ["pneumothorax"]),
    "shorter_than_4_tokens": (["no acute disease"], ["no acute cardiopulmonary disease"]),
    "empty_hypothesis": (["", "The lungs are clear."], ["No effusion.", "The lungs are clear."]),
    "markup_and_line_breaks": (["Small left pleu-\nral effusion.<skipped>  \n"],
                               ["Small left pleural\neffusion."]),
    "several_reports": (["Heart size is normal.", "Small left effusion.", "Tube in place."],
                        ["Heart size normal.", "Small left pleural effusion.", "ET tube in place."]),
}


@pytest.mark.parametrize("case", sorted(BLEU_CASES))
def test_bleu_matches_sacrebleu_on_hand_made_cases(case: str) -> None:
    hyps, refs = BLEU_CASES[case]
    scores = bleu(hyps, refs)
    assert sorted(scores) == ["bleu1", "bleu2", "bleu3", "bleu4"]
    for n in range(1, 5):
        assert scores[f"bleu{n}"] == pytest.approx(_sacrebleu(hyps, refs, n), abs=1e-6), n


def test_bleu_hand_computed_brevity_penalty_and_smoothing() -> None:
    # hyp "no acute disease" (3 tokens) vs ref "no acute cardiopulmonary disease" (4 tokens).
    # 1-grams 3/3 match; 2-grams: "no acute" matches, "acute disease" not -> 1/2;
    # 3-gram "no acute disease" does not match -> exp smoothing 100 / (2 * 1) = 50;
    # no 4-gram exists -> BLEU-4 = 0. BP = exp(1 - 4/3).
    bp = math.exp(1 - 4 / 3)
    scores = bleu(["no acute disease"], ["no acute cardiopulmonary disease"])
    assert scores["bleu1"] == pytest.approx(bp * 100)
    assert scores["bleu2"] == pytest.approx(bp * math.sqrt(100 * 50))
    assert scores["bleu3"] == pytest.approx(bp * (100 * 50 * 50) ** (1 / 3))
    assert scores["bleu4"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_bleu_matches_sacrebleu_on_random_report_corpus(seed: int) -> None:
    hyps, refs = _random_corpus(seed)
    scores = bleu(hyps, refs)
    for n in range(1, 5):
        expected = _sacrebleu(hyps, refs, n)
        assert 0.0 < expected < 100.0  # a corpus that exercises partial matching
        assert scores[f"bleu{n}"] == pytest.approx(expected, abs=1e-6), n


def test_13a_tokenizer_matches_sacrebleu() -> None:
    reference = Tokenizer13a()
    hyps, refs = _random_corpus(3)
    lines = hyps + refs + [case[0][0] for case in BLEU_CASES.values()]
    for line in lines:
        assert tokenize_13a(line) == reference(line.rstrip()).split(), line


# ---------------------------------------------------------------- ROUGE-L


def test_rouge_tokenizer_lowercases_and_drops_punctuation() -> None:
    assert tokenize_words("Pleural-EFFUSION, 3.5cm;  (stable)\n") == [
        "pleural", "effusion", "3", "5cm", "stable"]


@pytest.mark.parametrize("case", sorted(BLEU_CASES))
def test_rouge_l_matches_rouge_score_on_hand_made_cases(case: str) -> None:
    hyps, refs = BLEU_CASES[case]
    assert rouge_l(hyps, refs) == pytest.approx(_rouge_score_mean(hyps, refs), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_l_matches_rouge_score_on_random_report_corpus(seed: int) -> None:
    hyps, refs = _random_corpus(seed)
    expected = _rouge_score_mean(hyps, refs)
    assert 0.0 < expected < 1.0
    assert rouge_l(hyps, refs) == pytest.approx(expected, abs=1e-9)


def _textbook_lcs(a: list[int], b: list[int]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1]
                           else max(table[i - 1][j], table[i][j - 1]))
    return table[-1][-1]


def test_lcs_length_matches_textbook_dynamic_programme() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        a = [str(x) for x in rng.integers(0, 4, int(rng.integers(0, 25)))]
        b = [str(x) for x in rng.integers(0, 4, int(rng.integers(0, 25)))]
        assert lcs_length(a, b) == _textbook_lcs(a, b)
    assert lcs_length(["a", "b", "c", "d"], ["x", "a", "y", "c"]) == 2


# ---------------------------------------------------------------- clinical efficacy

NAMES = ["cardiomegaly", "pleural_effusion", "pneumothorax"]
GENERATED = np.array([[P, P, M],
                      [P, N, M],
                      [U, P, N],
                      [N, M, U]])
REFERENCE = np.array([[P, N, M],
                      [P, P, N],
                      [P, P, U],
                      [P, M, M]])


def test_clinical_efficacy_hand_computed() -> None:
    m = clinical_efficacy(GENERATED, REFERENCE, NAMES)
    # cardiomegaly: predicted positive rows 0, 1; truly positive rows 0-3 (row 2 generated is
    # only uncertain) -> TP 2, FP 0, FN 2: P = 1, R = 2/4, F1 = 2*2 / (2*2 + 0 + 2) = 2/3.
    assert m["clinical/precision/cardiomegaly"] == pytest.approx(1.0)
    assert m["clinical/recall/cardiomegaly"] == pytest.approx(0.5)
    assert m["clinical/f1/cardiomegaly"] == pytest.approx(2 / 3)
    # pleural_effusion: predicted rows 0, 2; true rows 1, 2 -> TP 1 (row 2), FP 1 (row 0),
    # FN 1 (row 1): P = R = F1 = 1/2.
    assert m["clinical/precision/pleural_effusion"] == pytest.approx(0.5)
    assert m["clinical/recall/pleural_effusion"] == pytest.approx(0.5)
    assert m["clinical/f1/pleural_effusion"] == pytest.approx(0.5)
    # pneumothorax: uncertain / negative / not mentioned only, on both sides -> undefined.
    for kind in ("precision", "recall", "f1"):
        assert math.isnan(m[f"clinical/{kind}/pneumothorax"])
    # micro: TP 3, FP 1, FN 3 -> P = 3/4, R = 3/6, F1 = 6 / (6 + 1 + 3) = 0.6.
    assert m["clinical/micro_precision"] == pytest.approx(0.75)
    assert m["clinical/micro_recall"] == pytest.approx(0.5)
    assert m["clinical/micro_f1"] == pytest.approx(0.6)
    # macro over the two defined findings (pneumothorax excluded).
    assert m["clinical/macro_precision"] == pytest.approx((1 + 0.5) / 2)
    assert m["clinical/macro_recall"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["clinical/macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert len(m) == 3 * len(NAMES) + 6


def test_clinical_efficacy_one_sided_positives_are_zero_not_nan() -> None:
    # cardiomegaly: reference positive, never generated -> TP 0, FP 0, FN 1: P = R = F1 = 0.
    # pleural_effusion: generated positive, never in the reference -> TP 0, FP 1, FN 0: all 0.
    generated = np.array([[N, P]])
    reference = np.array([[P, N]])
    m = clinical_efficacy(generated, reference, ["cardiomegaly", "pleural_effusion"])
    for name in ("cardiomegaly", "pleural_effusion"):
        for kind in ("precision", "recall", "f1"):
            assert m[f"clinical/{kind}/{name}"] == 0.0
    assert m["clinical/macro_f1"] == 0.0 and m["clinical/micro_f1"] == 0.0


def test_clinical_efficacy_with_no_positive_anywhere_is_nan() -> None:
    m = clinical_efficacy(np.array([[N, U]]), np.array([[M, U]]), ["cardiomegaly", "edema"])
    assert all(math.isnan(v) for v in m.values())


def test_clinical_efficacy_matches_sklearn_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    values = np.array([P, N, U, M])
    generated = rng.choice(values, size=(300, 6), p=[0.2, 0.3, 0.1, 0.4])
    reference = rng.choice(values, size=(300, 6), p=[0.25, 0.3, 0.1, 0.35])
    generated[:, 5] = reference[:, 5] = N  # one undefined finding
    names = list(CHEXPERT_FINDINGS[:6])
    m = clinical_efficacy(generated, reference, names)
    y_pred, y_true = generated == P, reference == P
    for j, name in enumerate(names[:5]):
        p, r, f, _ = precision_recall_fscore_support(y_true[:, j], y_pred[:, j], average="binary",
                                                     zero_division=0)
        assert (m[f"clinical/precision/{name}"], m[f"clinical/recall/{name}"],
                m[f"clinical/f1/{name}"]) == pytest.approx((p, r, f))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    assert (m["clinical/micro_precision"], m["clinical/micro_recall"],
            m["clinical/micro_f1"]) == pytest.approx((p, r, f))
    p, r, f, _ = precision_recall_fscore_support(y_true[:, :5], y_pred[:, :5], average="macro",
                                                 zero_division=0)
    assert (m["clinical/macro_precision"], m["clinical/macro_recall"],
            m["clinical/macro_f1"]) == pytest.approx((p, r, f))


def test_clinical_efficacy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="expected \\(N, 3\\)"):
        clinical_efficacy(GENERATED[:, :2], REFERENCE[:, :2], NAMES)
    with pytest.raises(ValueError, match="not CheXpert values"):
        clinical_efficacy(GENERATED + 5, REFERENCE, NAMES)
    with pytest.raises(ValueError, match="differ"):
        clinical_efficacy(GENERATED[:3], REFERENCE, NAMES)
    with pytest.raises(ConfigError, match="more than once"):
        clinical_efficacy(GENERATED, REFERENCE, ["edema", "edema", "fracture"])


def test_label_reports_hand_labelled() -> None:
    labels = label_reports(["Small left pleural effusion. No pneumothorax.", "Possible pneumonia."],
                           ["pneumothorax", "pleural_effusion", "pneumonia", "fracture"])
    assert labels.dtype == np.int8
    assert labels.tolist() == [[N, P, M, M], [M, M, U, M]]


def test_label_reports_names_the_nearest_finding() -> None:
    with pytest.raises(ConfigError, match="'pleural_effusion'"):
        label_reports(["No effusion."], ["pleural_efusion"])


def test_identical_reports_score_perfectly_end_to_end() -> None:
    reports = _synthetic_reports(40, seed=5)
    m = report_metrics(reports, reports, training_reports=[], label_names=CHEXPERT_FINDINGS)
    assert m["clinical/micro_f1"] == 1.0 and m["clinical/macro_f1"] == 1.0
    assert m["report/bleu4"] == pytest.approx(100.0) and m["report/rougeL"] == pytest.approx(1.0)
    assert m["memorisation/verbatim_fraction"] == 0.0
    assert {k for k in m if k.startswith("report/")} == {
        "report/bleu1", "report/bleu2", "report/bleu3", "report/bleu4", "report/rougeL"}


def test_report_metrics_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="one reference per generated report"):
        report_metrics(["a"], ["a", "b"], [], ["edema"])
    with pytest.raises(TypeError, match="not one string"):
        bleu("No effusion.", "No effusion.")


# ---------------------------------------------------------------- memorisation

TRAINING = [
    "Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Moderate right pleural effusion with adjacent atelectasis, new since the prior study.",
    "Normal chest.",
]


def test_memorisation_flags_planted_copies_only() -> None:
    generated = [
        # verbatim copy of TRAINING[0] up to case and whitespace
        "HEART size is normal.\n  The lungs are  clear. No pleural effusion or pneumothorax.",
        # shares the 8 words "moderate right pleural effusion with adjacent atelectasis new"
        "Portable view. Moderate right pleural effusion with adjacent atelectasis; new line.",
        # unrelated
        "Endotracheal tube terminates 4 cm above the carina. No acute abnormality.",
        # shares only 7 consecutive words with TRAINING[1]
        "Moderate right pleural effusion with adjacent atelectasis. Heart enlarged.",
        # a short verbatim copy (2 words): counts as copied although shorter than 8 words
        "normal   CHEST.",
    ]
    m = memorisation_audit(generated, iter(TRAINING), ngram=8)  # a one-pass stream is enough
    assert m["memorisation/verbatim_fraction"] == pytest.approx(2 / 5)
    assert m["memorisation/ngram_fraction"] == pytest.approx(3 / 5)
    m7 = memorisation_audit(generated, TRAINING, ngram=7)
    assert m7["memorisation/ngram_fraction"] == pytest.approx(4 / 5)


def test_memorisation_ngram_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    words = ["no", "effusion", "heart", "normal", "clear", "lungs"]
    training = [" ".join(rng.choice(words, int(rng.integers(0, 12)))) for _ in range(200)]
    generated = [" ".join(rng.choice(words, int(rng.integers(0, 12)))) for _ in range(100)]
    k = 5

    def grams(text: str) -> set[tuple[str, ...]]:
        w = text.split()
        return {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}

    seen = set().union(*(grams(t) for t in training))
    expected = np.mean([bool(grams(g) & seen) or g in training for g in generated])
    assert 0 < expected < 1
    m = memorisation_audit(generated, training, ngram=k)
    assert m["memorisation/ngram_fraction"] == pytest.approx(expected)


def test_memorisation_rejects_bad_ngram() -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        memorisation_audit(["No effusion."], TRAINING, ngram=0)
