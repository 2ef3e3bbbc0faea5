"""Report text and the CheXpert label vector, both derived from one decision per finding.

Each finding gets a status: stated (POSITIVE), negated (NEGATIVE), hedged (UNCERTAIN) or left out
(NOT_MENTIONED). A present finding is always mentioned, hedged mostly when subtle, so the label
agrees with the pixels; an absent one is negated or left out, rarely hedged. The report is then
written from the statuses and the label vector is the statuses themselves.

The wording varies the way real reports do, so a text tower cannot get by on one template per
finding: each sign is described several ways (naming the finding, describing what is seen,
synonyms, size in words or millimetres, lobe or zone), absent findings are denied by a leading
"no", post-posed or passive negation ("... is not seen", "... is absent"), "without", "free of",
"negative for", "resolved" or a normality statement ("the costophrenic angles are sharp"), and
several denials share one list sentence. Every choice is drawn from the chunk's generator, so a
seed still fixes every report.
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
    F,
    Studies,
)
from radfm_jax.data.findings import FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

_HEDGE_SUBTLE = {"support_devices": 0.35}  # default 0.7: most subtle findings are hedged
_HEDGE_ABSENT = 0.03
_NEGATE_ABSENT = {"cardiomegaly": 0.65, "pleural_effusion": 0.7, "pneumothorax": 0.7,
                  "consolidation": 0.6, "lung_lesion": 0.45, "support_devices": 0.45}

_VIEW_SENTENCES = {
    PA: ("PA view of the chest.", "Frontal view of the chest.", "PA chest radiograph.",
         "PA and lateral views of the chest were obtained.", "Upright PA radiograph of the chest."),
    AP: ("Portable AP view of the chest.", "AP chest radiograph.", "Portable frontal view.",
         "Single portable AP view of the chest.", "Semi-upright AP radiograph of the chest."),
    LATERAL: ("Lateral view of the chest.", "Lateral chest radiograph.", "Single lateral view of the chest."),
}
_NORMAL = ("No acute cardiopulmonary abnormality.",) * 3 + (
    "No acute cardiopulmonary process.", "Normal chest radiograph.", "No acute intrathoracic abnormality.",
    "No acute cardiopulmonary disease.", "No active disease in the chest.", "Unremarkable chest radiograph.",
    "No radiographic evidence of acute cardiopulmonary disease.", "The chest is normal.",
    "No acute findings in the chest.",
)

# Noun phrases each absent finding is denied with: (text, plural).
_ABSENT_NOUNS = {
    "cardiomegaly": (("cardiomegaly", False), ("cardiomegaly", False), ("cardiac enlargement", False),
                     ("enlargement of the heart", False), ("enlargement of the cardiac silhouette", False)),
    "pleural_effusion": (("pleural effusion", False), ("pleural effusion", False), ("effusion", False),
                         ("pleural effusions", True), ("pleural fluid", False),
                         ("fluid in the pleural spaces", False)),
    "pneumothorax": (("pneumothorax", False), ("pneumothorax", False), ("pneumothorax", False),
                     ("pneumothoraces", True), ("air in the pleural space", False)),
    "consolidation": (("consolidation", False), ("focal consolidation", False), ("airspace consolidation", False),
                      ("consolidative opacity", False), ("lobar consolidation", False),
                      ("confluent consolidation", False)),
    "lung_lesion": (("lung nodule", False), ("pulmonary nodule", False), ("nodules or masses", True),
                    ("suspicious pulmonary nodule", False), ("lung mass", False),
                    ("focal lung lesion", False), ("pulmonary nodules", True)),
    "support_devices": (("support devices", True), ("lines or tubes", True), ("tubes or catheters", True),
                        ("indwelling lines or tubes", True), ("medical devices", True)),
}
# Sentences that say a finding is absent without naming it.
_NORMALITY = {
    "cardiomegaly": ("Heart size is normal.", "Normal heart size.", "The cardiac silhouette is normal in size.",
                     "The heart is not enlarged.", "Heart size is within normal limits.",
                     "The heart is normal in size.", "The cardiothoracic ratio is normal.",
                     "Normal size of the cardiac silhouette."),
    "pleural_effusion": ("The costophrenic angles are sharp.", "Sharp costophrenic angles.",
                         "The costophrenic angles are clear.", "The pleural spaces are clear."),
    "pneumothorax": (),
    "consolidation": (),  # "the lungs are clear", only when no lung finding is stated or hedged
    "lung_lesion": (),
    "support_devices": (),
}
_CLEAR_LUNGS = ("The lungs are clear.", "Lungs are clear.", "The lungs are clear bilaterally.",
                "Clear lungs.", "Both lungs are clear.")
# Where a denial "free of X" lives, and what it is free of.
_FREE_OF = {"pleural_effusion": (("The pleural spaces", "fluid"), ("The costophrenic angles", "fluid")),
            "consolidation": (("The lungs", "consolidation"), ("Both lungs", "consolidation")),
            "lung_lesion": (("The lungs", "nodules"), ("The lungs", "focal nodules or masses"))}

_DEVICE_SENTENCES = {
    "endotracheal_tube": ("Endotracheal tube in place.", "Endotracheal tube tip above the carina.",
                          "The endotracheal tube terminates {cm} cm above the carina.",
                          "ET tube in standard position.", "Endotracheal tube in satisfactory position."),
    "central_line": ("{Side} central line with tip in the SVC.", "{Side} central venous catheter in place.",
                     "{Side} internal jugular catheter terminates in the superior vena cava.",
                     "{Side} PICC line with tip at the cavoatrial junction.",
                     "{Side} subclavian central venous catheter, tip in the SVC."),
    "enteric_tube": ("Enteric tube extends below the diaphragm.", "Nasogastric tube in the stomach.",
                     "Feeding tube with tip in the stomach.", "The orogastric tube courses below the diaphragm.",
                     "NG tube tip projects over the stomach."),
    "pacemaker": ("Left chest wall pacemaker with lead in the right ventricle.",
                  "Pacemaker with a single lead in place.", "Dual-chamber pacemaker with leads in the right atrium "
                  "and ventricle.", "Left-sided pacing device with intact leads.", "Cardiac pacemaker in place."),
}


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _adjective(region: str) -> str:
    """A lung region before a noun: "lingula" -> "lingular consolidation"."""
    return region.replace("lingula", "lingular")


def _size_word(sev: float, kind: str) -> str:
    """Severity word: subtle cases are small/mild, then moderate, then large/severe."""
    words = {"size": ("small", "small", "moderate", "large"),
             "degree": ("mild", "mild", "moderate", "severe")}[kind]
    return words[0 if sev < SUBTLE_MAX else 1 if sev < 0.55 else 2 if sev < 0.8 else 3]


def _adverb(degree: str) -> str:
    return {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[degree]


class _Writer:
    """Sentences for one study; `pick` chooses among synonymous wordings."""

    def __init__(self, st: Studies, i: int, rng: np.random.Generator):
        self.st, self.i, self.rng = st, i, rng
        # "The lungs are clear" only where no lung finding is stated or hedged, and only once.
        self.lungs_clear_allowed = False

    def pick(self, options):
        return options[self.rng.integers(len(options))]

    def sev(self, name: str) -> float:
        return float(self.st.severity[self.i, F[name]])

    def lung_region(self, side: int, zone: int) -> str:
        """A lung zone in one of the ways reports name it: zone, lobe or base / apex."""
        where = SIDES[side]
        options = [f"{where} {('upper', 'mid', 'lower')[zone]} lung", f"{where} {('upper', 'mid', 'lower')[zone]} zone"]
        options += [(f"{where} upper lobe", f"{where} lung apex"),
                    ("right middle lobe",) if side != LEFT else ("lingula", "left mid lung"),
                    (f"{where} lower lobe", f"{where} lung base", f"{where} base")][zone]
        return self.pick(options)

    def cardiomegaly(self, hedged: bool) -> str:
        deg = _size_word(self.sev("cardiomegaly"), "degree")
        if hedged:
            return self.pick(("Possible mild cardiomegaly.", "Borderline cardiomegaly.",
                              "Cannot exclude mild cardiomegaly.", "The heart may be mildly enlarged.",
                              "Borderline enlargement of the cardiac silhouette."))
        return self.pick((f"{_cap(deg)} cardiomegaly.", f"The heart is {_adverb(deg)} enlarged.",
                          f"{_cap(_adverb(deg))} enlarged cardiac silhouette.", "Cardiomegaly.",
                          "The cardiac silhouette is enlarged.", f"{_cap(deg)} enlargement of the cardiac silhouette.",
                          "Enlarged heart.", f"{_cap(deg)} cardiac enlargement.",
                          "The cardiothoracic ratio is increased, consistent with cardiomegaly.",
                          f"Heart size is {_adverb(deg)} increased.", "Cardiomegaly is again noted."))

    def pleural_effusion(self, hedged: bool) -> str:
        side = int(self.st.effusion_side[self.i])
        both = side == BILATERAL
        s = "s" if both else ""
        where, angle = SIDES[side], "costophrenic angles" if both else "costophrenic angle"
        size = _size_word(self.sev("pleural_effusion"), "size")
        if hedged:
            return self.pick((f"Possible small {where} pleural effusion{s}.",
                              f"Questionable blunting of the {where} {angle}.",
                              f"Cannot exclude small {where} pleural effusion{s}.",
                              f"Trace {where} pleural fluid is not excluded."))
        options = [f"{_cap(size)} {where} pleural effusion{s}.", f"{_cap(size)} {where} effusion{s}.",
                   f"There {'are' if both else 'is a'} {size} {where} pleural effusion{s}.",
                   f"{_cap(size)} amount of {where} pleural fluid.",
                   f"Layering {where} pleural fluid, {size} in amount.",
                   f"{_cap(where)} pleural effusion{s}, {size}.",
                   f"Opacity at the {where} lung base{'s' if both else ''} with a meniscus, "
                   f"compatible with {size} pleural effusion{s}."]
        if size == "small":
            options += [f"Blunting of the {where} {angle} from small pleural effusion{s}.",
                        f"Blunting of the {where} {angle}, consistent with a small effusion."]
        return self.pick(options)

    def pneumothorax(self, hedged: bool) -> str:
        where = SIDES[int(self.st.pneumothorax_side[self.i])]
        size = _size_word(self.sev("pneumothorax"), "size")
        if hedged:
            return self.pick((f"Possible tiny {where} apical pneumothorax.",
                              f"Cannot exclude small {where} pneumothorax.",
                              f"Questionable {where} apical pneumothorax.",
                              f"Subtle lucency at the {where} apex may represent a small pneumothorax."))
        options = [f"{_cap(size)} {where} pneumothorax.", f"There is a {size} {where} pneumothorax.",
                   f"{_cap(where)} pneumothorax, {size} in size.",
                   f"A {where} apical pleural line is visible, consistent with pneumothorax.",
                   f"{_cap(size)} {where} pneumothorax with a visible visceral pleural line.",
                   f"Peripheral lucency beyond a visible pleural line at the {where} apex, "
                   f"consistent with a {size} pneumothorax."]
        if size == "small":
            options.append(f"Small {where} apical pneumothorax.")
        return self.pick(options)

    def consolidation(self, hedged: bool) -> str:
        where = self.lung_region(int(self.st.consolidation_side[self.i]), int(self.st.consolidation_zone[self.i]))
        adj = _adjective(where)
        if hedged:
            return self.pick((f"Possible consolidation in the {where}.",
                              f"Subtle {where} opacity, possibly consolidation.",
                              f"Hazy opacity in the {where} may represent early consolidation.",
                              f"Ill-defined opacity in the {where}, which could reflect consolidation."))
        kind = "patchy" if self.sev("consolidation") < 0.6 else "dense"
        return self.pick((f"{_cap(adj)} consolidation.", f"{_cap(kind)} consolidation in the {where}.",
                          f"{_cap(kind)} airspace opacity in the {where}, consistent with consolidation.",
                          f"Focal consolidation in the {where}.", f"{_cap(adj)} consolidative opacity.",
                          f"{_cap(kind)} opacity in the {where} with air bronchograms, compatible with consolidation.",
                          f"Airspace consolidation in the {where}.",
                          f"There is {kind} opacification of the {where}, consistent with consolidation.",
                          f"Confluent opacity in the {where}, compatible with consolidation."))

    def lung_lesion(self, hedged: bool) -> str:
        side, zone = int(self.st.lesion_side[self.i]), int(self.st.lesion_zone[self.i])
        where = self.lung_region(side, zone)
        adj = _adjective(where)
        sev = self.sev("lung_lesion")
        if hedged:
            return self.pick((f"Possible small nodule in the {where}.", f"Questionable {SIDES[side]} lung nodule.",
                              f"Faint density in the {where}, possibly a nodule.",
                              f"A possible {adj} nodule could be further assessed with CT."))
        millimetres = int(round(4 + 26 * sev))
        if sev >= 0.8:
            return self.pick((f"Large {adj} mass.", f"{_cap(adj)} mass.",
                              f"A {millimetres / 10:.1f} cm mass in the {where}.",
                              f"Lobulated mass in the {where}, concerning for malignancy."))
        size = _size_word(sev, "size")
        size = "" if size == "moderate" else size + " "
        return self.pick((f"{_cap(size + adj)} nodule.", f"There is a {size}nodule in the {where}.",
                          f"{_cap(size + 'rounded')} opacity in the {where}, consistent with a lung nodule.",
                          f"{_cap(size + 'pulmonary')} nodule in the {where}.",
                          f"Well-circumscribed {size}nodule in the {where}.",
                          f"A {millimetres} mm nodule projects over the {where}.",
                          f"Nodular opacity in the {where} measuring {millimetres} mm."))

    def support_devices(self, hedged: bool) -> str:
        if hedged:
            return self.pick(("Possible overlying catheter.", "Possible support devices.",
                              "A tubular density may represent a catheter."))
        side = "right" if self.st.line_side[self.i] != LEFT else "left"
        kinds = [d for d, on in zip(DEVICES, self.st.devices[self.i]) if on]
        sentences = [self.pick(_DEVICE_SENTENCES[d]).replace("{Side}", _cap(side))
                     .replace("{cm}", str(int(self.rng.integers(2, 7)))) for d in kinds]
        if self.rng.random() < 0.3:
            return self.pick(("Support devices in place.", "Lines and tubes are in place.",
                              "Support devices are unchanged in position."))
        return " ".join(sentences)

    def denial(self, names: list[str]) -> str:
        """One sentence denying every finding in `names` (1 to 3 of them)."""
        if len(names) == 1:
            name = names[0]
            if name == "consolidation" and self.lungs_clear_allowed and self.rng.random() < 0.3:
                self.lungs_clear_allowed = False  # said once
                return self.pick(_CLEAR_LUNGS)
            if _NORMALITY[name] and self.rng.random() < 0.3:
                return self.pick(_NORMALITY[name])
            if name in _FREE_OF and self.rng.random() < 0.1:
                place, what = self.pick(_FREE_OF[name])
                return f"{place} are free of {what}."
        nouns = [self.pick(_ABSENT_NOUNS[name]) for name in names]
        plural = len(nouns) > 1 or nouns[0][1]
        either = _listing([text for text, _ in nouns], "or")
        both = _listing([text for text, _ in nouns], "and")
        verb = "are" if plural else "is"
        frames = [f"No {either}.", f"No {either}.", f"There {verb} no {either}.", f"No evidence of {either}.",
                  f"{_cap(both)} {verb} not seen.", f"{_cap(both)} {verb} not identified.",
                  f"{_cap(both)} {verb} absent.", f"Negative for {either}.",
                  f"No radiographic evidence of {either}."]
        if len(names) == 1 and names[0] in ("pleural_effusion", "pneumothorax", "consolidation"):
            frames.append(f"The previously seen {either} {'have' if plural else 'has'} resolved.")
        if self.lungs_clear_allowed and "cardiomegaly" not in names and "support_devices" not in names:
            frames.append(f"The lungs are clear, without {either}.")
        sentence = self.pick(frames)
        self.lungs_clear_allowed &= not sentence.startswith("The lungs are clear")
        return sentence


def _listing(items: list[str], conjunction: str) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


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


def _group(names: list[str], rng: np.random.Generator) -> list[list[str]]:
    """Denied findings split into runs of one to three that share a sentence; devices are
    denied on their own."""
    groups = [[name] for name in names if name == "support_devices"]
    rest = [name for name in names if name != "support_devices"]
    while rest:
        size = min(len(rest), int(rng.choice(3, p=(0.55, 0.3, 0.15))) + 1)
        groups.append(rest[:size])
        rest = rest[size:]
    return groups


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
    # "The lungs are clear" also denies consolidation, so only where consolidation is denied.
    w.lungs_clear_allowed = "consolidation" in negated and not any(n == "lung_lesion" for n, _ in stated)
    body += [w.denial(group) for group in _group(negated, rng)]
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
