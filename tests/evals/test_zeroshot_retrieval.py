import numpy as np
import pytest

from radfm_jax.data.findings import (
    FINDING_PHRASES,
    FINDINGS,
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
)
from radfm_jax.evals.retrieval import retrieval_metrics
from radfm_jax.evals.zeroshot import prompt_pairs, zeroshot_metrics, zeroshot_scores

POS, NEG = ("{finding}.", "there is {finding}."), ("no {finding}.", "there is no {finding}.")


def test_prompt_pairs():
    pairs = prompt_pairs(FINDINGS, POS, NEG)
    present, absent = pairs["pleural_effusion"]
    # Present: every stated form (size x side, bilateral) in every positive template.
    assert len(present) == len(POS) * 7
    assert "small left pleural effusion." in present and "there is large right pleural effusion." in present
    assert "bilateral pleural effusions." in present
    assert absent == ["no pleural effusion.", "there is no pleural effusion.", "no effusion.", "there is no effusion."]
    present, absent = pairs["no_finding"]
    assert present == ["no acute cardiopulmonary abnormality.", "there is no acute cardiopulmonary abnormality."]
    # Abnormal = any other finding stated.
    assert absent == [p for f in FINDINGS if f != "no_finding" for p in pairs[f][0]]


def test_unknown_labels_use_their_name_in_words():
    pairs = prompt_pairs(["Hernia", "lung_opacity", "mosaic_attenuation_pattern"], POS, NEG)
    assert pairs["Hernia"] == (["hernia.", "there is hernia."], ["no hernia.", "there is no hernia."])
    assert pairs["mosaic_attenuation_pattern"][1][0] == "no mosaic attenuation pattern."
    assert "right upper lung opacity." in pairs["lung_opacity"][0]


def _embedding_table(dim):
    """Each finding's phrases get its own axis; negated prompts point the opposite way, and the
    normal prompt ("no acute ...") gets an axis of its own."""
    table = {}
    for axis, finding in enumerate(FINDINGS):
        phrases = FINDING_PHRASES[finding]
        for template in POS:
            for phrase in phrases.present:
                vec = np.zeros(dim)
                vec[axis] = 1.0
                table[template.format(finding=phrase)] = vec
        for template in NEG:
            for phrase in phrases.absent:
                vec = np.zeros(dim)
                vec[axis] = -1.0 if finding != "no_finding" else 1.0
                table[template.format(finding=phrase)] = vec
    return table


def test_scores_follow_embeddings_and_auroc_uses_committed_labels():
    rng = np.random.default_rng(0)
    n, dim = 200, len(FINDINGS)
    table = _embedding_table(dim)
    present = rng.random((n, dim)) < 0.3
    present[:, 0] = ~present[:, 1:].any(axis=1)  # no_finding = nothing else present
    image_emb = np.where(present, 1.0, -1.0) + 0.1 * rng.normal(size=(n, dim))
    image_emb /= np.linalg.norm(image_emb, axis=1, keepdims=True)
    scores = zeroshot_scores(image_emb, lambda texts: np.stack([table[t] for t in texts]), FINDINGS, POS, NEG, 10.0)
    labels = np.where(present, POSITIVE, rng.choice([NEGATIVE, NOT_MENTIONED], size=(n, dim))).astype(np.int8)
    results = zeroshot_metrics(scores, labels, FINDINGS)
    for finding in FINDINGS:
        assert results[f"zeroshot/auroc/{finding}"] == pytest.approx(1.0), finding
    # Flip the scores of one finding: its AUROC falls to 0, and uncertain rows are ignored.
    scores["cardiomegaly"] = 1 - scores["cardiomegaly"]
    labels[:5, 1] = UNCERTAIN
    flipped = zeroshot_metrics(scores, labels, FINDINGS)
    assert flipped["zeroshot/auroc/cardiomegaly"] == pytest.approx(0.0)
    assert flipped["zeroshot/auroc_mean"] == pytest.approx((len(FINDINGS) - 1) / len(FINDINGS))


def test_retrieval_counts_identical_reports_as_matches():
    reports = ["a", "b", "a", "c"]
    text_emb = np.eye(4)
    image_emb = text_emb[[2, 1, 0, 1]]  # image 0 matches text 2 (same report), image 3 is wrong
    results = retrieval_metrics(image_emb, text_emb, reports, ks=(1, 4))
    assert results["retrieval/i2t_recall@1"] == pytest.approx(0.75)
    assert results["retrieval/i2t_recall@4"] == pytest.approx(1.0)


def test_prompt_pairs_for_another_vocabulary_uses_label_names_in_words():
    pairs = prompt_pairs(("lung_nodule", "pericardial_effusion"), ("{finding}.",), ("no {finding}.",))
    assert pairs == {"lung_nodule": (["lung nodule."], ["no lung nodule."]),
                     "pericardial_effusion": (["pericardial effusion."], ["no pericardial effusion."])}


def test_ct_data_sets_are_prompted_in_ct_wording():
    from radfm_jax.data.builders.ct_rate.tables import LABEL_NAMES as CT_LABELS
    from radfm_jax.data.findings import CT_FINDING_PHRASES
    from radfm_jax.evals.zeroshot import phrase_table

    assert set(CT_FINDING_PHRASES) == set(CT_LABELS)  # every CT-RATE abnormality has CT phrases
    assert phrase_table("synthetic_ct") is phrase_table("ct_rate") is CT_FINDING_PHRASES
    assert phrase_table("synthetic_cxr") is FINDING_PHRASES
    pairs = prompt_pairs(("cardiomegaly", "lung_nodule"), ("{finding}.",), ("no {finding}.",),
                         phrase_table("synthetic_ct"))
    assert "enlarged cardiac silhouette." not in pairs["cardiomegaly"][0]  # radiograph wording
    assert "nodule in the right upper lobe." in pairs["lung_nodule"][0]
    assert pairs["lung_nodule"][1] == ["no pulmonary nodule.", "no nodule or mass in either lung."]
