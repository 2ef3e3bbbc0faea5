"""Sentence-level mention finding, NegEx-style classification and CheXpert aggregation."""

from __future__ import annotations

import re

import numpy as np

from radfm_jax.data.findings import (
    CHEXPERT_FINDINGS,
    NEGATIVE,
    NO_FINDING,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
)
from radfm_jax.data.labeler import rules
from radfm_jax.data.report_sections import SECTION_NAMES, has_words, normalize_report, parse_sections

# Sections that describe the current image; indication, history, comparison and technique
# mention findings the study is asked about or had before, not what it shows.
_LABELLED_SECTIONS = ("findings", "impression")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")
# A full stop with no space after it ("apex.There are"), found before lower-casing.
_RUN_ON_SENTENCE = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")
# What may separate two items of one list: a comma, a conjunction, up to two modifiers.
_LIST_JOINT = re.compile(r"\s*,?\s*(?:(?:and|or|nor|and/or)\s+)?(?:(?!(?:the|a|an)\b)[a-z/-]+\s+){0,2}")
_HEART_FAILURE = re.compile(r"\b(?:chf|(?:congestive )?heart failure)\b")


def _body(text: str) -> str:
    """Findings and impression of a report; the whole text when it has no section headers."""
    sections = parse_sections(text)
    if any(name in sections for name in SECTION_NAMES):
        return "\n".join(sections[name] for name in _LABELLED_SECTIONS if name in sections)
    return text


def _sentences(text: str) -> list[str]:
    text = _RUN_ON_SENTENCE.sub(" ", normalize_report(text))
    text = re.sub(r"\bvs\.", "versus", text.lower())
    return [s for s in _SENTENCE_BREAK.split(text) if s.strip()]


def _find_mentions(sentence: str) -> list[tuple[str, int, int, int]]:
    """(observation, start, end, stated_as) per mention; for one observation a mention inside
    a longer one ("tube" in "endotracheal tube") is dropped."""
    hits = [(m.observation, hit.start(), hit.end(), m.stated_as)
            for m in rules.MENTIONS for hit in m.pattern.finditer(sentence)]
    hits.sort(key=lambda h: (h[1] - h[2], h[1]))  # longest first
    kept: list[tuple[str, int, int, int]] = []
    for obs, start, end, stated_as in hits:
        if not any(o == obs and s <= start and end <= e for o, s, e, _ in kept):
            kept.append((obs, start, end, stated_as))
    return sorted(kept, key=lambda h: h[1])


def _clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The span of the clause around [start, end): from the last scope boundary before it to
    the first one after it."""
    left, right = 0, len(sentence)
    for b in rules.SCOPE_BOUNDARY.finditer(sentence):
        if b.end() <= start:
            left = b.end()
        elif b.start() >= end:
            right = b.start()
            break
    return left, right


def _scope_start(sentence: str, left: int, start: int, right: int) -> int:
    """Where a trigger before the mention at `start` may stand: from the clause start, unless a
    comma between ends the scope. A comma continues a list when an "or" / "nor" closes it later
    in the clause ("no consolidation, large effusion, or pneumothorax"); otherwise it starts a
    new statement ("no pneumothorax, mild cardiomegaly")."""
    comma = sentence.rfind(",", left, start)
    if comma < 0 or rules.LIST_CONJUNCTION.search(sentence, comma, right):
        return left
    return comma + 1


def _post_negation_text(sentence: str, end: int, right: int, later: list[tuple[int, int]]) -> str:
    """The words after a mention that a post-negation is read from. It reaches back over the
    items of a list it closes ("consolidation, effusion, or pneumothorax is not seen"), not over
    other words ("left tube in place, right tube removed")."""
    list_end = end
    for item_start, item_end in later:
        if item_start < list_end:
            continue
        if item_start > right or not _LIST_JOINT.fullmatch(sentence[list_end:item_start]):
            break
        list_end = item_end
    return sentence[list_end:right].split(",")[0]


def _classify(sentence: str, start: int, end: int, later: list[tuple[int, int]]) -> int | None:
    """NegEx-style value of one mention from the words of its clause, or None when the mention
    is history or hypothetical; `later` are the (start, end) spans of the mentions after it."""
    left, right = _clause_bounds(sentence, start, end)
    # The interior counts as preceding context: "the heart is not enlarged".
    pre = sentence[_scope_start(sentence, left, start, right):start] + " " + sentence[start:end]
    listed = rules.PSEUDO_NEGATION.search(pre) is not None
    pre = rules.PSEUDO_NEGATION.sub(" ", pre)
    post_negation = _post_negation_text(sentence, end, right, later)
    next_mention = later[0][0] if later else len(sentence)
    post_uncertainty = sentence[end:min(right, next_mention)].split(",")[0]
    if rules.NEGATED_HEDGE.search(pre) or rules.NEGATED_HEDGE.search(post_negation):
        return UNCERTAIN
    if rules.HYPOTHETICAL.search(pre):
        return None
    if rules.PRE_NEGATION.search(pre) or rules.POST_NEGATION.search(post_negation):
        return NEGATIVE
    if listed:  # "no change in X or Y": the "or" joins a list
        pre = rules.LIST_CONJUNCTION.sub(" ", pre)
        post_uncertainty = rules.LIST_CONJUNCTION.sub(" ", post_uncertainty)
    if (rules.UNCERTAINTY.search(pre) or rules.POST_UNCERTAINTY.search(post_uncertainty)
            or rules.LIST_HEDGE.search(sentence, left, start)):
        return UNCERTAIN
    return POSITIVE


def _mention_values(body: str) -> list[tuple[str, int, str]]:
    """(observation, value, mention text) for every mention in the report body that is not
    history or hypothetical."""
    values = []
    for sentence in _sentences(body):
        mentions = _find_mentions(sentence)
        for i, (obs, start, end, stated_as) in enumerate(mentions):
            later = [(s, e) for _, s, e, _ in mentions[i + 1:] if s >= end]
            value = _classify(sentence, start, end, later)
            if value is not None:
                values.append((obs, stated_as if value == POSITIVE else value, sentence[start:end]))
    return values


def _aggregate(values: list[int]) -> int:
    """CheXpert: positive over uncertain over negative."""
    for value in (POSITIVE, UNCERTAIN, NEGATIVE):
        if value in values:
            return value
    return NOT_MENTIONED


def label_report(text: str) -> dict[str, int]:
    """CheXpert value (POSITIVE / NEGATIVE / UNCERTAIN / NOT_MENTIONED) per CHEXPERT_FINDINGS."""
    body = _body(text)
    if not has_words(body):  # nothing was reported, so nothing is normal either
        return {name: NOT_MENTIONED for name in CHEXPERT_FINDINGS}
    found: dict[str, list[int]] = {}
    any_finding = False
    for obs, value, mention in _mention_values(body):
        hedged_or_stated = value in (POSITIVE, UNCERTAIN)
        any_finding |= hedged_or_stated and obs != "support_devices"
        found.setdefault(obs, []).append(value)
        if hedged_or_stated and _HEART_FAILURE.fullmatch(mention):
            found.setdefault("cardiomegaly", []).append(UNCERTAIN)
    labels = {name: _aggregate(found.get(name, [])) for name in CHEXPERT_FINDINGS}
    labels[NO_FINDING] = NOT_MENTIONED if any_finding else POSITIVE
    return labels


def label_vector(text: str) -> np.ndarray:
    """label_report as an int8 vector (14,) in CHEXPERT_FINDINGS order."""
    labels = label_report(text)
    return np.array([labels[name] for name in CHEXPERT_FINDINGS], np.int8)
