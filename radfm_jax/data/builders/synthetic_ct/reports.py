"""Report text for a rendered study, agreeing with its voxels and its 0 / 1 labels.

Every present finding is stated (its size in mm or in words, its side, lobe or node station as
rendered); a subtle one is often hedged ("possible", "cannot be excluded", "questionable"), and
its label stays 1 because it is in the voxels. An absent finding is denied (mostly) or left out;
a sentence never mixes a stated finding with a denied one, so each sentence reads one way.
Each finding has several templates for each of these, and denials of two findings sometimes
share a sentence ("No pleural or pericardial effusion."). Normal statements about structures
that are never abnormal here (trachea, aorta, bones, upper abdomen) fill the report the way
CT-RATE's reports do. All choices come from the study's text generator.
"""

from __future__ import annotations

import numpy as np

from radfm_jax.data.builders.synthetic_ct.render import Rendered
from radfm_jax.data.builders.synthetic_ct.studies import (
    BILATERAL,
    EMPHYSEMA_KINDS,
    LOBES,
    SIDES,
    STATIONS,
    Study,
)

_NEGATE = {"cardiomegaly": 0.7, "pericardial_effusion": 0.6, "lymphadenopathy": 0.75, "emphysema": 0.4,
           "lung_nodule": 0.6, "consolidation": 0.6, "pleural_effusion": 0.75}
_HEDGE_SUBTLE = 0.6
# Findings section order: mediastinum and heart, lungs, pleura (as CT-RATE's reports read).
_ORDER = ("cardiomegaly", "pericardial_effusion", "lymphadenopathy", "emphysema", "lung_nodule",
          "consolidation", "pleural_effusion")
# Denials for pairs of absent findings that read naturally as one sentence.
_PAIRED = {
    ("pericardial_effusion", "pleural_effusion"): ("No pleural or pericardial effusion.",
                                                   "Pleural and pericardial effusions are not seen."),
    ("lung_nodule", "consolidation"): ("No consolidation or suspicious nodule in either lung.",
                                       "No focal consolidation or pulmonary nodule was detected."),
}
_DENIALS = {
    "cardiomegaly": ("Heart size is normal.", "The heart is not enlarged.", "No cardiomegaly.",
                     "Heart size is within normal limits.", "Cardiac dimensions are normal."),
    "pericardial_effusion": ("No pericardial effusion.", "There is no pericardial effusion or thickening.",
                             "Pericardial effusion is not seen.", "No pericardial fluid."),
    "lymphadenopathy": ("No mediastinal or hilar lymphadenopathy.",
                        "No lymph node in pathological size was detected in the mediastinum.",
                        "There is no enlarged lymph node.",
                        "Mediastinal lymph nodes are not enlarged."),
    "emphysema": ("No emphysema.", "There is no emphysematous change.", "No emphysema is seen.",
                  "Lung parenchyma shows no low-attenuation areas of emphysema."),
    "lung_nodule": ("No pulmonary nodule.", "No suspicious lung nodule was detected.",
                    "There is no nodule or mass in either lung.", "No pulmonary nodules are seen."),
    "consolidation": ("No consolidation.", "No focal consolidation.", "There is no airspace consolidation.",
                      "No consolidative opacity is seen."),
    "pleural_effusion": ("No pleural effusion.", "There is no pleural effusion.", "Pleural effusion is absent.",
                         "No pleural fluid is seen.", "There is no pleural effusion or thickening."),
}
_FILLER = (
    ("Trachea and both main bronchi are patent.", "The trachea and main bronchi are open.",
     "Trachea and main bronchi are in midline and patent."),
    ("Thoracic aorta diameter is normal.", "The calibre of the thoracic aorta is normal.",
     "Thoracic aorta is of normal calibre."),
    ("Upper abdominal organs included in the sections are unremarkable.",
     "No pathology in the upper abdominal sections.", "Visualised upper abdomen is unremarkable."),
    ("No lytic or destructive bone lesion.", "Bony structures are intact.",
     "Osseous structures within the field of view are unremarkable."),
)
_NORMAL_IMPRESSION = ("No acute thoracic pathology.", "Normal chest CT.", "No significant abnormality.",
                      "Unremarkable chest CT examination.", "No evidence of acute intrathoracic disease.")


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class _Writer:
    """Sentences for one study; `pick` chooses among synonymous wordings."""

    def __init__(self, st: Study, rendered: Rendered, rng: np.random.Generator):
        self.st, self.rendered, self.rng = st, rendered, rng

    def pick(self, options):
        return options[self.rng.integers(len(options))]

    def cardiomegaly(self, hedged: bool) -> str:
        if hedged:
            return self.pick(("Heart size is borderline enlarged.", "Possible mild cardiomegaly.",
                              "Questionable mild cardiomegaly."))
        degree = "mild" if self.st.ctr < 0.58 else "moderate" if self.st.ctr < 0.65 else "marked"
        return self.pick((f"{_cap(degree)} cardiomegaly.", "Cardiomegaly.", f"The heart is {degree}ly enlarged.",
                          f"Cardiomegaly, cardiothoracic ratio about {self.st.ctr:.2f}.",
                          "Heart size is increased.", f"{_cap(degree)} enlargement of the heart."))

    def pericardial_effusion(self, hedged: bool) -> str:
        mm = round(self.st.pericardial_mm)
        if hedged:
            return self.pick(("Possible minimal pericardial effusion.",
                              f"Questionable thin pericardial fluid of about {mm} mm.",
                              "A small pericardial effusion cannot be excluded."))
        size = "small" if mm < 10 else "moderate" if mm < 18 else "large"
        return self.pick((f"{_cap(size)} pericardial effusion.", f"Pericardial effusion measuring {mm} mm.",
                          f"There is a {size} pericardial effusion, up to {mm} mm thick.",
                          f"Pericardial fluid, {mm} mm in thickness."))

    def lymphadenopathy(self, hedged: bool) -> str:
        nodes = sorted(self.st.nodes, key=lambda n: -n.short_axis_mm)
        largest = nodes[0]
        where = _listing([STATIONS[n.station] for n in nodes])
        mm = round(largest.short_axis_mm)
        if hedged:
            return self.pick((f"Borderline {STATIONS[largest.station]} lymph node, {mm} mm in short axis.",
                              (f"A {mm} mm {STATIONS[largest.station]} node is of uncertain significance; "
                               "early lymphadenopathy cannot be excluded.")))
        plural = len(nodes) > 1
        return self.pick((
            f"Enlarged {where} lymph node{'s' if plural else ''}, the largest {mm} mm in short axis.",
            f"Mediastinal lymphadenopathy: {where}, up to {mm} mm.",
            (f"There {'are' if plural else 'is an'} enlarged lymph node{'s' if plural else ''} in the "
             f"{where} station{'s' if plural else ''} (largest short axis {mm} mm)."),
            f"Pathologically enlarged {where} lymph node{'s' if plural else ''} measuring up to {mm} mm.",
        ))

    def emphysema(self, hedged: bool) -> str:
        kind = EMPHYSEMA_KINDS[self.st.emphysema_kind]
        where = {"centrilobular": "upper lobe predominant", "panlobular": "lower lobe predominant",
                 "paraseptal": "subpleural"}[kind]
        if hedged:
            return self.pick(("Mild emphysematous changes are questionable.",
                              f"Possible minimal {kind} emphysema.", "Subtle low-attenuation areas, possibly emphysema."))
        degree = "mild" if self.st.emphysema_fraction < 0.12 else "moderate" if self.st.emphysema_fraction < 0.25 else "severe"
        return self.pick((f"{_cap(degree)} {kind} emphysema.", f"{_cap(kind)} emphysema, {where}.",
                          f"Emphysematous changes in both lungs, {degree}.",
                          f"{_cap(degree)} {where} emphysema.",
                          f"Low-attenuation areas consistent with {kind} emphysema."))

    def lung_nodule(self, hedged: bool) -> str:
        placed = self.rendered.nodules
        if not placed:  # only when the grid has no lung voxel to put it in
            return "Pulmonary nodule."
        if len(placed) > 1:
            parts = [f"{LOBES[p.lobe]} ({round(p.diameter_mm)} mm)" for p in placed]
            return self.pick((f"Multiple pulmonary nodules: {_listing(parts)}.",
                              f"{('Two', 'Three')[len(placed) - 2]} nodules are seen in the {_listing(parts)}.",
                              f"Nodules in the {_listing(parts)}."))
        p = placed[0]
        mm = round(p.diameter_mm)
        lobe = LOBES[p.lobe]
        kind = "solid" if p.solid else "ground-glass"
        if hedged:
            return self.pick((f"Possible {mm} mm {kind} nodule in the {lobe}.",
                              f"Questionable tiny nodule in the {lobe}.",
                              f"A faint {mm} mm density in the {lobe} may represent a nodule."))
        if mm >= 30:
            return self.pick((f"A {mm / 10:.1f} cm mass in the {lobe}.", f"Mass in the {lobe} measuring {mm} mm.",
                              f"{_cap(lobe)} mass, {mm} mm, concerning for malignancy."))
        return self.pick((f"{mm} mm {kind} nodule in the {lobe}.", f"A {kind} nodule measuring {mm} mm in the {lobe}.",
                          f"There is a {mm} mm nodule in the {lobe}.", f"{_cap(lobe)} {kind} nodule, {mm} mm.",
                          f"{_cap(kind)} pulmonary nodule of {mm} mm in the {lobe}."))

    def consolidation(self, hedged: bool) -> str:
        lobe = LOBES[self.rendered.consolidation_lobe] if self.rendered.consolidation_lobe >= 0 else "lung"
        if hedged or self.st.consolidation_hu < 0:
            options = (f"Patchy ground-glass density in the {lobe}, possibly early consolidation.",
                       f"Possible developing consolidation in the {lobe}.",
                       f"Consolidation in the {lobe} cannot be excluded.")
            if hedged:
                return self.pick(options)
            return self.pick((f"Patchy consolidation in the {lobe}.", f"Ill-defined consolidation in the {lobe}."))
        extent = "lobar" if self.st.consolidation_extent > 0.6 else "segmental"
        return self.pick((f"Consolidation in the {lobe} with air bronchograms.",
                          f"{_cap(extent)} consolidation of the {lobe}.",
                          f"There is an area of consolidation in the {lobe}, consistent with pneumonia.",
                          f"Dense airspace consolidation in the {lobe}.",
                          f"{_cap(lobe)} consolidation containing air bronchograms."))

    def pleural_effusion(self, hedged: bool) -> str:
        side = self.st.effusion_side
        mm = round(self.st.effusion_depth_mm)
        where = SIDES[side]
        s = "s" if side == BILATERAL else ""
        if hedged:
            return self.pick((f"Possible trace {where} pleural effusion{s}.",
                              f"Minimal {where} pleural fluid cannot be excluded.",
                              f"Questionable thin {where} pleural effusion{s}."))
        size = "small" if mm < 20 else "moderate" if mm < 45 else "large"
        options = [f"{_cap(size)} {where} pleural effusion{s}.",
                   f"{_cap(where)} pleural effusion{s}, measuring up to {mm} mm in thickness.",
                   f"There {'are' if s else 'is a'} {size} {where} pleural effusion{s}.",
                   f"{_cap(size)} amount of {where} pleural fluid posteriorly.",
                   f"{_cap(where)} dependent pleural effusion{s} of {mm} mm."]
        if side != BILATERAL:
            options.append(f"{_cap(size)} pleural effusion on the {where}.")
        return self.pick(options)


def _denials(absent: list[str], w: _Writer) -> list[str]:
    out, rest = [], list(absent)
    for pair, options in _PAIRED.items():
        if all(name in rest for name in pair) and w.rng.random() < 0.5:
            out.append(w.pick(options))
            rest = [name for name in rest if name not in pair]
    return out + [w.pick(_DENIALS[name]) for name in rest]


def write_report(st: Study, rendered: Rendered, rng: np.random.Generator) -> str:
    """"FINDINGS: ...\\nIMPRESSION: ..." for the study as rendered."""
    w = _Writer(st, rendered, rng)
    stated, negated = [], []
    for name in _ORDER:
        if name in st.present:
            hedged = name in st.subtle and rng.random() < _HEDGE_SUBTLE
            stated.append((name, hedged, getattr(w, name)(hedged)))
        elif rng.random() < _NEGATE[name]:
            negated.append(name)
    body = [w.pick(group) for group in _FILLER[:2] if rng.random() < 0.6]
    body += [text for _, _, text in stated]
    body += _denials(negated, w)
    body += [w.pick(group) for group in _FILLER[2:] if rng.random() < 0.5]
    if stated:
        # The impression restates the leading findings in a fresh wording.
        keep = stated[: 1 + int(rng.integers(min(len(stated), 3)))]
        impression = [getattr(w, name)(hedged) for name, hedged, _ in keep]
    else:
        impression = [w.pick(_NORMAL_IMPRESSION)]
    return "FINDINGS: " + " ".join(body) + "\nIMPRESSION: " + " ".join(impression)
