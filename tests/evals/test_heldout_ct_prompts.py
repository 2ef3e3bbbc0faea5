"""The held-out chest CT prompt set (experiments/prompts/heldout_ct.json, written blind) against
the synthetic_ct report generator: it covers the rendered findings and shares no sentence with
the reports training sees, so a zero-shot AUROC under it measures other people's wording."""

from __future__ import annotations

import re

import numpy as np

from radfm_jax.data.builders.synthetic_ct.render import NodulePlacement, Rendered
from radfm_jax.data.builders.synthetic_ct.reports import write_report
from radfm_jax.data.builders.synthetic_ct.studies import FINDINGS, sample_patients, sample_study
from radfm_jax.evals.prompt_sets import load_prompt_set

HELDOUT = "experiments/prompts/heldout_ct.json"


def _normalise(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", sentence.lower()).split())


def _generated_sentences(n: int, seed: int = 0) -> set[str]:
    """Every sentence of n synthetic_ct reports, the findings placed where the study drew them
    (writing a report needs only the placements, not the voxels)."""
    patients = sample_patients(n, seed)
    sentences = set()
    for i in range(n):
        st = sample_study(patients, i, 0, i, seed, np.random.default_rng([seed, i]))
        placed = tuple(NodulePlacement(nod.side, nod.lobe, (0.0, 0.0, 0.0), nod.diameter_mm, nod.solid)
                       for nod in st.nodules)
        report = write_report(st, Rendered(None, placed, st.consolidation_lobe), np.random.default_rng([seed, i, 1]))
        sentences |= {_normalise(s) for s in re.split(r"FINDINGS:|IMPRESSION:|(?<=\.)\s+", report) if s.strip()}
    return sentences


def test_heldout_ct_prompts_cover_the_findings_in_other_words():
    prompt_set = load_prompt_set(HELDOUT)
    assert set(prompt_set.pairs) == set(FINDINGS)
    assert all(len(pos) >= 3 and len(neg) >= 3 for pos, neg in prompt_set.pairs.values())
    generated = _generated_sentences(4_000)
    assert {"no pleural effusion", "no cardiomegaly", "cardiomegaly"} <= generated  # the check can fail
    heldout = {_normalise(s) for pair in prompt_set.pairs.values() for side in pair for s in side}
    assert not heldout & generated, sorted(heldout & generated)
