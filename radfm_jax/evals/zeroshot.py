"""CheXzero-style zero-shot classification: for each finding, a softmax over the image's
similarity to a positive and a negative prompt (each an ensemble of templates)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from radfm_jax.data.findings import (
    CT_FINDING_PHRASES,
    FINDING_PHRASES,
    NO_FINDING,
    FindingPhrases,
    binary_targets,
    finding_phrases,
)
from radfm_jax.data.model_inputs import is_volume_dataset
from radfm_jax.evals.metrics import auroc

EncodeTexts = Callable[[Sequence[str]], np.ndarray]


def phrase_table(dataset: str) -> dict[str, FindingPhrases]:
    """The prompt phrases of data set `dataset`'s reports: chest CT wording for volumetric sets
    (ct_rate, synthetic_ct), radiograph wording otherwise."""
    return CT_FINDING_PHRASES if is_volume_dataset(dataset) else FINDING_PHRASES


def prompt_pairs(
    label_names: Sequence[str], positive_templates: Sequence[str], negative_templates: Sequence[str],
    phrases: Mapping[str, FindingPhrases] = FINDING_PHRASES,
) -> dict[str, tuple[list[str], list[str]]]:
    """finding -> (prompts meaning present, prompts meaning absent), for a data set's labels,
    from the phrases of `phrases` (phrase_table).

    no_finding is present when the report denies any acute abnormality ("no acute
    cardiopulmonary abnormality.") and absent when any finding is stated, so its absent side is
    the ensemble of every other finding's present prompts: reports never affirm the phrase
    "acute cardiopulmonary abnormality" itself, which would make a poor opposite.
    """
    pairs = {}
    for finding in label_names:
        words = finding_phrases(finding, phrases)
        present = [t.format(finding=phrase) for phrase in words.present for t in positive_templates]
        absent = [t.format(finding=phrase) for phrase in words.absent for t in negative_templates]
        pairs[finding] = (present, absent)
    if NO_FINDING in pairs:
        abnormal = [prompt for finding in label_names if finding != NO_FINDING for prompt in pairs[finding][0]]
        pairs[NO_FINDING] = (pairs[NO_FINDING][1], abnormal)
    return pairs


def _ensemble(embeddings: np.ndarray) -> np.ndarray:
    mean = embeddings.mean(axis=0)
    return mean / np.linalg.norm(mean)


def pair_scores(
    image_emb: np.ndarray,
    encode_texts: EncodeTexts,
    pairs: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    logit_scale: float,
) -> dict[str, np.ndarray]:
    """finding -> P(present) per image from the two-way softmax over its similarities to the
    finding's (present, absent) prompt ensembles."""
    scores = {}
    for finding, (present, absent) in pairs.items():
        prompts = np.stack([_ensemble(encode_texts(present)), _ensemble(encode_texts(absent))])
        logits = logit_scale * image_emb @ prompts.T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        scores[finding] = probs[:, 0] / probs.sum(axis=1)
    return scores


def zeroshot_scores(
    image_emb: np.ndarray,
    encode_texts: EncodeTexts,
    label_names: Sequence[str],
    positive_templates: Sequence[str],
    negative_templates: Sequence[str],
    logit_scale: float,
    phrases: Mapping[str, FindingPhrases] = FINDING_PHRASES,
) -> dict[str, np.ndarray]:
    """finding -> P(present) per image, with the templated prompts of prompt_pairs."""
    pairs = prompt_pairs(label_names, positive_templates, negative_templates, phrases)
    return pair_scores(image_emb, encode_texts, pairs, logit_scale)


def zeroshot_metrics(
    scores: dict[str, np.ndarray], labels: np.ndarray, label_names: Sequence[str], prefix: str = "zeroshot"
) -> dict[str, float]:
    """Per-finding AUROC on reader-committed labels (uncertain excluded) and their mean, under
    `<prefix>/auroc/<finding>` and `<prefix>/auroc_mean`; labels[:, i] belongs to label_names[i]."""
    results = {}
    for index, finding in enumerate(label_names):
        targets, valid = binary_targets(labels[:, index])
        results[f"{prefix}/auroc/{finding}"] = auroc(scores[finding][valid], targets[valid])
    values = [v for v in results.values() if not np.isnan(v)]
    results[f"{prefix}/auroc_mean"] = float(np.mean(values)) if values else float("nan")
    return results
