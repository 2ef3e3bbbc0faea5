"""Report text and the CheXpert label vector, both derived from one decision per finding.

Each finding gets a status: stated (POSITIVE), negated (NEGATIVE), hedged (UNCERTAIN) or left out
(NOT_MENTIONED). A present finding is always mentioned, hedged mostly when subtle, so the label
agrees with the pixels; an absent one is negated or left out, rarely hedged. The report is then
written from the statuses and the label vector is the statuses themselves.
"""

from __future__ import annotations

import numpy as np

from radfm_jax.data.builders.synthetic_cxr.studies import (
    AP,
    BILATERAL,
    DEVICES,
    LATERAL,
    LEFT,
    PA,
    SIDES,
    SUBTLE_MAX,
    ZONES,
    F,
    Studies,
)
from radfm_jax.data.findings import FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

_HEDGE_SUBTLE = {"support_devices": 0.35}  # default 0.7: most subtle findings are hedged
_HEDGE_ABSENT = 0.03
_NEGATE_ABSENT = {"cardiomegaly": 0.65, "pleural_effusion": 0.7, "pneumothorax": 0.7,
                  "consolidation": 0.6, "lung_lesion": 0.45, "support_devices": 0.45}

_VIEW_SENTENCES = {
    PA: ("PA view of the chest.", "Frontal view of the chest.", "PA chest radiograph."),
    AP: ("Portable AP view of the chest.", "AP chest radiograph.", "Portable frontal view."),
    LATERAL: ("Lateral view of the chest.", "Lateral chest radiograph."),
}
_NORMAL = ("No acute cardiopulmonary abnormality.",) * 4 + (
    "No acute cardiopulmonary process.", "Normal chest radiograph.",
    "No acute intrathoracic abnormality.",
)
_NEGATIONS = {
    "cardiomegaly": ("No cardiomegaly.", "Heart size is normal.", "Normal heart size.",
                     "The cardiac silhouette is normal in size."),
    "pleural_effusion": ("No pleural effusion.", "No pleural effusion.", "No effusion.",
                         "The costophrenic angles are sharp."),
    "pneumothorax": ("No pneumothorax.", "No pneumothorax.", "There is no pneumothorax."),
    "consolidation": ("No consolidation.", "No focal consolidation.", "No consolidation."),
    "lung_lesion": ("No lung nodule.", "No lung nodule or mass.", "No suspicious pulmonary nodule."),
    "support_devices": ("No support devices.", "No lines or tubes."),
}
_DEVICE_SENTENCES = {
    "endotracheal_tube": ("Endotracheal tube in place.", "Endotracheal tube tip above the carina."),
    "central_line": ("{Side} central line with tip in the SVC.", "{Side} central venous catheter in place."),
    "enteric_tube": ("Enteric tube extends below the diaphragm.", "Nasogastric tube in the stomach."),
    "pacemaker": ("Left chest wall pacemaker with lead in the right ventricle.",
                  "Pacemaker with a single lead in place."),
}


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _size_word(sev: float, kind: str) -> str:
    """Severity word: subtle cases are small/mild, then moderate, then large/severe."""
    words = {"size": ("small", "small", "moderate", "large"),
             "degree": ("mild", "mild", "moderate", "severe")}[kind]
    return words[0 if sev < SUBTLE_MAX else 1 if sev < 0.55 else 2 if sev < 0.8 else 3]


def _adverb(degree: str) -> str:
    return {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[degree]


def _zone_phrase(side: int, zone: int) -> str:
    return f"{SIDES[side]} {ZONES[zone]} lung"


class _Writer:
    """Sentences for one study; `rng.choice` picks among synonymous wordings."""

    def __init__(self, st: Studies, i: int, rng: np.random.Generator):
        self.st, self.i, self.rng = st, i, rng

    def pick(self, options) -> str:
        return options[self.rng.integers(len(options))]

    def sev(self, name: str) -> float:
        return float(self.st.severity[self.i, F[name]])

    def cardiomegaly(self, hedged: bool) -> str:
        deg = _size_word(self.sev("cardiomegaly"), "degree")
        if hedged:
            return self.pick(("Possible mild cardiomegaly.", "Borderline cardiomegaly.",
                              "Cannot exclude mild cardiomegaly."))
        return self.pick((f"{_cap(deg)} cardiomegaly.", f"The heart is {_adverb(deg)} enlarged.",
                          f"{_cap(_adverb(deg))} enlarged cardiac silhouette.", "Cardiomegaly."))

    def pleural_effusion(self, hedged: bool) -> str:
        side = int(self.st.effusion_side[self.i])
        both = side == BILATERAL
        noun = "pleural effusions" if both else "pleural effusion"
        where, angle = SIDES[side], "costophrenic angles" if both else "costophrenic angle"
        size = _size_word(self.sev("pleural_effusion"), "size")
        if hedged:
            return self.pick((f"Possible small {where} {noun}.",
                              f"Questionable blunting of the {where} {angle}.",
                              f"Cannot exclude small {where} {noun}."))
        options = [f"{_cap(size)} {where} {noun}.", f"{_cap(size)} {where} {noun}.",
                   f"{_cap(size)} {where} effusion{'s' if both else ''}."]
        if size == "small":
            options.append(f"Blunting of the {where} {angle} from small {noun}.")
        return self.pick(options)

    def pneumothorax(self, hedged: bool) -> str:
        where = SIDES[int(self.st.pneumothorax_side[self.i])]
        size = _size_word(self.sev("pneumothorax"), "size")
        if hedged:
            return self.pick((f"Possible tiny {where} apical pneumothorax.",
                              f"Cannot exclude small {where} pneumothorax."))
        options = [f"{_cap(size)} {where} pneumothorax.", f"There is a {size} {where} pneumothorax."]
        if size == "small":
            options.append(f"Small {where} apical pneumothorax.")
        return self.pick(options)

    def consolidation(self, hedged: bool) -> str:
        where = _zone_phrase(int(self.st.consolidation_side[self.i]), int(self.st.consolidation_zone[self.i]))
        if hedged:
            return self.pick((f"Possible consolidation in the {where}.",
                              f"Subtle {where} opacity, possibly consolidation."))
        kind = "patchy" if self.sev("consolidation") < 0.6 else "dense"
        return self.pick((f"{_cap(where)} consolidation.", f"{_cap(kind)} consolidation in the {where}.",
                          f"{_cap(kind)} airspace opacity in the {where}, consistent with consolidation."))

    def lung_lesion(self, hedged: bool) -> str:
        side, zone = int(self.st.lesion_side[self.i]), int(self.st.lesion_zone[self.i])
        where = _zone_phrase(side, zone)
        sev = self.sev("lung_lesion")
        if hedged:
            return self.pick((f"Possible small nodule in the {where}.",
                              f"Questionable {SIDES[side]} lung nodule."))
        if sev >= 0.8:
            return self.pick((f"Large {where} mass.", f"{_cap(where)} mass."))
        size = _size_word(sev, "size")
        size = "" if size == "moderate" else size + " "
        return self.pick((f"{_cap(size + where)} nodule.", f"There is a {size}nodule in the {where}.",
                          f"{_cap(size + 'rounded')} opacity in the {where}, consistent with a lung nodule."))

    def support_devices(self, hedged: bool) -> str:
        if hedged:
            return self.pick(("Possible overlying catheter.", "Possible support devices."))
        side = "right" if self.st.line_side[self.i] != LEFT else "left"
        kinds = [d for d, on in zip(DEVICES, self.st.devices[self.i]) if on]
        sentences = [self.pick(_DEVICE_SENTENCES[d]).replace("{Side}", _cap(side)) for d in kinds]
        if self.rng.random() < 0.4:
            return "Support devices in place."
        return " ".join(sentences)


# Findings section order: devices, lungs, pleura, heart (as a radiologist reads the film).
_ORDER = ("support_devices", "consolidation", "lung_lesion", "pleural_effusion", "pneumothorax",
          "cardiomegaly")


def decide_labels(st: Studies, rng: np.random.Generator) -> np.ndarray:
    """CheXpert values (B, 7) int8: how each finding will be reported."""
    b = len(st.view)
    labels = np.full((b, len(FINDINGS)), NOT_MENTIONED, np.int8)
    for name in _ORDER:
        j = F[name]
        present, subtle = st.present[:, j], st.subtle[:, j]
        hedge = subtle & (rng.random(b) < _HEDGE_SUBTLE.get(name, 0.7))
        u = rng.random(b)
        absent = np.where(u < _HEDGE_ABSENT, UNCERTAIN,
                          np.where(u < _HEDGE_ABSENT + _NEGATE_ABSENT[name], NEGATIVE, NOT_MENTIONED))
        labels[:, j] = np.where(present, np.where(hedge, UNCERTAIN, POSITIVE), absent)
    findings = labels[:, 1:]
    # no_finding: positive only when nothing is stated or hedged; hedging alone leaves it uncertain.
    labels[:, 0] = np.where((findings == POSITIVE).any(1), NEGATIVE,
                            np.where((findings == UNCERTAIN).any(1), UNCERTAIN, POSITIVE))
    return labels


def write_report(st: Studies, i: int, labels: np.ndarray, rng: np.random.Generator) -> str:
    """The report of study i, consistent with its label row."""
    w = _Writer(st, i, rng)
    stated, negated = [], []
    for name in _ORDER:
        value = labels[F[name]]
        if value in (POSITIVE, UNCERTAIN):
            stated.append((name, getattr(w, name)(value == UNCERTAIN)))
        elif value == NEGATIVE:
            negated.append(name)
    body = [w.pick(_VIEW_SENTENCES[int(st.view[i])])] if rng.random() < 0.5 else []
    body += [s for _, s in stated]
    negs = set(negated)
    if {"pleural_effusion", "pneumothorax"} <= negs and rng.random() < 0.5:
        negs -= {"pleural_effusion", "pneumothorax"}
        body.append("No pleural effusion or pneumothorax.")
    lung_stated = any(n in ("consolidation", "lung_lesion") for n, _ in stated)
    for name in _ORDER:
        if name in negs:
            clear = name == "consolidation" and not lung_stated and labels[F["lung_lesion"]] != UNCERTAIN
            body.append("The lungs are clear." if clear and rng.random() < 0.3 else w.pick(_NEGATIONS[name]))
    if stated:
        # The impression repeats the leading findings in a fresh wording.
        keep = stated[: 1 + int(rng.integers(min(len(stated), 3)))]
        impression = [getattr(w, n)(labels[F[n]] == UNCERTAIN) for n, _ in keep]
    else:
        impression = [w.pick(_NORMAL)]
    return "FINDINGS: " + " ".join(body) + "\nIMPRESSION: " + " ".join(impression)


def write_reports(st: Studies, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Reports and (B, 7) int8 CheXpert label vectors for a chunk of studies."""
    labels = decide_labels(st, rng)
    return [write_report(st, i, labels[i], rng) for i in range(len(st.view))], labels
