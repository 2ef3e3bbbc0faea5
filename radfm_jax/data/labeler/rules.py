"""The labeler's lexicon and triggers: what names an observation, what negates or hedges it.

All patterns run on lower-cased, normalised sentences. Mention patterns are written for this
module in the spirit of the CheXpert labeler's phrase lists (github.com/stanfordmlgroup/
chexpert-labeler), including its choices: "airspace disease" is lung opacity, a calcified nodule
or granuloma is not a lung lesion but still an abnormality, "chf" / "heart failure" is edema and
makes cardiomegaly uncertain, and "stable" / "unchanged" heart or mediastinal size is uncertain.
"""

from __future__ import annotations

import dataclasses
import re

from radfm_jax.data.findings import NEGATIVE, POSITIVE, UNCERTAIN

# Abnormalities outside the 14 observations; a positive or uncertain one rules out no_finding.
OTHER_FINDING = "other_finding"


@dataclasses.dataclass(frozen=True)
class Mention:
    """A pattern naming `observation`. `stated_as` is its value when nothing negates or hedges
    it: POSITIVE for a finding's name, NEGATIVE for a statement of normality ("heart size is
    normal"), UNCERTAIN for an ambiguous one ("heart size is stable", "vascular congestion")."""

    observation: str
    pattern: re.Pattern
    stated_as: int = POSITIVE


def _words(*alternatives: str) -> str:
    return r"\b(?:" + "|".join(alternatives) + r")\b"


# --- Size statements about the heart and mediastinum ------------------------------------------
_HEART = r"(?:heart(?! failure)(?: size)?|cardiac (?:silhouette|size|shadow|contours?)|size of the heart)"
_MEDIASTINUM = (r"(?:cardiomediastinal (?:silhouette|contours?|size|shadow)|"
                r"mediastinal (?:silhouette|contours?|width|shadow)|mediastinum)")
# Words allowed between the subject and its size word ("the heart is mildly enlarged", "heart
# size and mediastinal contours are normal"); a closed list so a size word of another finding
# ("heart failure with large effusion") is never read as the heart's.
_GAP = (r"(?:\s+(?:is|are|was|were|appears?|remains?|seems?|looks?|be|been|has|have|now|again|"
        r"still|also|otherwise|overall|the|and|lungs|hilar|mediastinal|mediastinum|contours?|"
        r"silhouettes?|mildly|moderately|markedly|severely|massively|slightly|minimally|"
        r"significantly|substantially|somewhat|not|at|of|size|in)){0,5}?")
_ENLARGED = r"(?:enlarged|enlargement|large|larger|increased|prominent|widened|widening|wide)"
_BORDERLINE = (r"(?:borderline|top[- ]normal|high[- ]normal|(?:at )?(?:the )?upper (?:limits? )?"
               r"(?:of )?normal|stable|unchanged)")
_NORMAL = (r"(?:normal|unremarkable|within normal limits|not (?:enlarged|widened|increased)|"
           r"of normal size)")


def _size_mentions(observation: str, subject: str) -> list[Mention]:
    return [
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_BORDERLINE}\b"), UNCERTAIN),
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_NORMAL}\b"), NEGATIVE),
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_ENLARGED}\b")),
        Mention(observation, re.compile(rf"\b(?:normal|unremarkable) {subject}"), NEGATIVE),
        Mention(observation, re.compile(rf"\b(?:borderline|top[- ]normal|high[- ]normal) {subject}"),
                UNCERTAIN),
        Mention(observation, re.compile(rf"\b{_ENLARGED} {subject}|\benlargement of the {subject}")),
    ]


def _plain(observation: str, *alternatives: str) -> list[Mention]:
    return [Mention(observation, re.compile(_words(*alternatives)))]


_DEVICE_TUBE = (r"(?:endotracheal|et|tracheostomy|trach|enteric|nasogastric|orogastric|ng|og|"
                r"feeding|dobhoff|chest|thoracostomy|gastrostomy|nasoenteric|pigtail) tubes?")
_DEVICE_LINE = (r"(?:central(?: venous)?|picc|ij|internal jugular|subclavian|venous|arterial|"
                r"swan[- ]ganz|dialysis|hemodialysis|midline|pulmonary artery) (?:lines?|catheters?)")

MENTIONS: tuple[Mention, ...] = (
    *_size_mentions("cardiomegaly", _HEART),
    *_plain("cardiomegaly", r"cardiomegaly", r"cardiac enlargement"),
    *_size_mentions("enlarged_cardiomediastinum", _MEDIASTINUM),
    *_plain("enlarged_cardiomediastinum", r"(?:widening|enlargement) of the (?:cardio)?mediastin\w*",
            r"mediastinal (?:widening|enlargement)"),
    *_plain("lung_opacity", r"opacit(?:y|ies)", r"opacification", r"opacified", r"infiltrat\w*",
            r"air[- ]?space (?:disease|process)", r"increased density", r"haziness",
            r"reticulation", r"reticular (?:opacities|markings|pattern)",
            r"interstitial (?:markings|pattern|opacities)"),
    *_plain("lung_lesion", r"(?<!calcified )nodul(?:e|es|ar)", r"masses", r"mass", r"lesions?",
            r"tumou?rs?", r"neoplasms?", r"carcinoma", r"malignancy"),
    *_plain("edema", r"(?<!soft tissue )edema", r"chf", r"(?:congestive )?heart failure"),
    # CheXpert reads congestion without the word edema as uncertain edema.
    Mention("edema", re.compile(_words(r"(?:pulmonary |vascular |venous )+congestion",
                                       r"vascular (?:engorgement|prominence)")), UNCERTAIN),
    *_plain("consolidation", r"consolidat\w*"),
    *_plain("pneumonia", r"(?:broncho)?pneumonias?", r"infections?", r"infectious process"),
    *_plain("atelectasis", r"atelecta\w*",
            r"(?:lobar|lobe|segmental|lung) collapse", r"collapse of the \w+ (?:lobe|lung)"),
    *_plain("pneumothorax", r"(?:hydro)?pneumothora(?:x|ces)", r"ptx"),
    *_plain("pleural_effusion", r"(?<!pericardial )effusions?", r"pleural fluid",
            r"hydro(?:pneumo)?thorax", r"blunt(?:ing|ed) of the(?: \w+){0,2} costophrenic angles?",
            r"blunted(?: \w+){0,2} costophrenic angles?", r"costophrenic angles? blunting"),
    Mention("pleural_effusion",
            re.compile(r"\bcostophrenic (?:angles|sulci) (?:are |remain )?(?:sharp|clear|preserved)\b"
                       r"|\bsharp costophrenic angles\b"), NEGATIVE),
    *_plain("pleural_other", r"pleural (?:thickening|plaques?|scar\w*|calcifications?)",
            r"fibrothorax", r"apical (?:pleural )?(?:cap|thickening)"),
    *_plain("fracture", r"fractur\w*", r"fx"),
    *_plain("support_devices", _DEVICE_TUBE, _DEVICE_LINE, r"tubes?", r"(?<!septal )(?<!kerley b )lines",
            r"catheters?", r"pacemakers?", r"pacers?", r"a?icds?", r"defibrillators?",
            r"(?:support )?devices?", r"support apparatus", r"picc", r"ett", r"port-?a-?cath",
            r"(?:chest|power) port", r"stents?", r"(?:sternotomy|sternal) wires", r"drains?",
            r"(?:surgical|orthopedic) hardware", r"prosthetic valve", r"valve replacement",
            r"intra-?aortic balloon pump", r"iabp"),
    # Clear lungs deny airspace disease; a nodule could still be reported, so not lung_lesion.
    *(Mention(name, re.compile(r"\blungs (?:are |remain )?(?:otherwise )?clear\b|\bclear lungs\b"),
              NEGATIVE) for name in ("lung_opacity", "consolidation", "pneumonia", "edema")),
    *_plain(OTHER_FINDING, r"emphysema\w*", r"hyperinflat\w*", r"hyperexpan\w*", r"copd",
            r"granulomas?", r"calcified (?:nodules?|granulomas?)", r"scoliosis", r"kyphosis",
            r"(?:hiatal )?hernia", r"pneumomediastinum", r"pneumoperitoneum", r"bronchiectasis",
            r"fibrosis", r"metastas[ie]s", r"bullae", r"atheroscleros\w*",
            r"(?:elevated|elevation of the) (?:right |left )?hemidiaphragm",
            r"degenerative (?:changes?|disease)", r"osteopenia"),
)

# --- Negation and uncertainty triggers --------------------------------------------------------
# Hedges that contain a negation word; checked before negation ("cannot exclude pneumonia").
# CheXpert also reads "no new X" as uncertain: X may persist from before.
NEGATED_HEDGE = re.compile(
    r"\bcannot (?:be )?(?:excluded?|ruled? out)|\bcan ?not (?:be )?(?:excluded?|ruled? out)|"
    r"\bcan't (?:exclude|rule out)|\bcould not be (?:excluded|ruled out)|"
    r"\bnot (?:be )?(?:entirely |completely |totally )?(?:excluded|ruled out)|"
    r"\b(?:does|do|did) not (?:exclude|rule out)|\bdifficult to (?:exclude|rule out)|"
    r"\bno evidence to rule out|\bno new\b")
# Phrases that look like negations but are not ("no change in the effusion").
PSEUDO_NEGATION = re.compile(
    r"\bno (?:significant |appreciable |interval |substantial )?(?:change|increase|decrease|"
    r"worsening|improvement|progression)\b|\bnot only\b")
PRE_NEGATION = re.compile(_words(
    r"no", r"not", r"without", r"negative for", r"free of", r"absence of", r"absent",
    r"resolution of", r"resolved", r"removal of", r"removed", r"rather than", r"neither", r"nor",
    r"clear of", r"never", r"no longer"))
POST_NEGATION = re.compile(
    r"^\W*(?:\w+\W+){0,2}?(?:(?:is|are|was|were|has|have)\s+)?(?:(?:been|now)\s+)?(?:"
    r"(?:not|no longer) (?:seen|identified|present|appreciated|visualized|visible|demonstrated|"
    r"evident|detected|noted|observed|apparent|shown)|absent|resolved|cleared|removed|"
    r"excluded|ruled out)\b")
UNCERTAINTY = re.compile(_words(
    r"possible", r"possibly", r"probable", r"probably", r"likely", r"unlikely", r"may", r"might",
    r"could", r"suggests?", r"suggestive", r"suggesting", r"suspicious", r"suspect(?:ed)?",
    r"suspicion", r"concern", r"concerning", r"worrisome", r"question", r"questionable",
    r"questionably", r"equivocal", r"indeterminate", r"uncertain", r"borderline", r"presumed",
    r"presumably", r"perhaps", r"versus", r"differential", r"consider", r"considered",
    r"vs", r"or", r"and/or", r"r/o", r"rule out") + r"|\?")
# Hedges that follow the mention they qualify ("pneumonia is suspected", "effusion may be
# present", "pneumothorax?", "atelectasis or pneumonia"). "Opacity (most likely) represents
# atelectasis" hedges atelectasis, not the opacity, so a hedge word after a mention counts only
# as the predicate of a copula.
POST_UNCERTAINTY = re.compile(
    r"^\s*(?:\?|(?:or|and/or|versus|vs)\b|(?:is|are|was|were|remains?|appears?|seems?)\s+"
    r"(?:also\s+)?(?:(?:more |most |less )?(?:possible|likely|probable|suspected|questionable|"
    r"equivocal|uncertain|indeterminate|not excluded|considered|suspicious|worrisome)\b)|"
    r"(?:may|might|could|can) (?:also )?(?:be|have been) (?:present|seen|noted|there)\b)")
# Ends a trigger's reach inside a sentence: a new clause or a new assertion.
SCOPE_BOUNDARY = re.compile(
    r"[;:]|\b(?:but|however|although|though|whereas|except|apart from|aside from|which|that|"
    r"there (?:is|are|has been|have been|was|were))\b|"
    r"(?<!consistent )(?<!compatible )(?<!associated )(?<!along )\bwith\b")
# How far (in words) a trigger reaches: long enough for a list ("no focal consolidation,
# pleural effusion, or pneumothorax"), short enough not to cross an unrelated clause.
TRIGGER_WINDOW_WORDS = 10
