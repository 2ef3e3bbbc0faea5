"""The labeler's lexicon and triggers: what names an observation, what negates, hedges or makes
it hypothetical.

All patterns run on lower-cased, normalised sentences. Mention patterns are written for this
module in the spirit of the CheXpert labeler's phrase lists and its NegBio-style negation and
uncertainty patterns (github.com/stanfordmlgroup/chexpert-labeler), including its choices:
"airspace disease" and scarring are lung opacity, a calcified nodule or granuloma is not a lung
lesion but still an abnormality (a noncalcified one is a lesion), "chf" / "heart failure" is
edema and makes cardiomegaly uncertain, "stable" / "unchanged" heart or mediastinal size is
uncertain while heart size "at the upper limits of normal" is normal.
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
_HEART = (r"(?:heart(?! failure)(?: size)?|cardiac (?:silhouette|size|shadow|contours?)|size of the heart|"
          r"cardiothoracic ratio)")
_MEDIASTINUM = (r"(?:cardiomediastinal (?:silhouette|contours?|size|shadow)|"
                r"mediastinal (?:silhouette|contours?|width|shadow)|mediastinum)")
# Words allowed between the subject and its size word ("the heart is mildly enlarged", "heart
# size and mediastinal contours are normal"); a closed list so a size word of another finding
# ("heart failure with large effusion") is never read as the heart's.
_GAP = (r"(?:\s+(?:is|are|was|were|appears?|remains?|seems?|looks?|be|been|has|have|may|might|"
        r"could|can|now|again|"
        r"still|also|otherwise|overall|the|and|lungs|hilar|mediastinal|mediastinum|contours?|"
        r"silhouettes?|mildly|moderately|markedly|severely|massively|slightly|minimally|"
        r"significantly|substantially|somewhat|not|at|of|size|in)){0,5}?")
_ENLARGED = r"(?:enlarged|enlargement|large|larger|increased|prominent|widened|widening|wide)"
_BORDERLINE = r"(?:borderline|stable|unchanged)"
# Upper-limit wording is normal, as in CheXpert's negation patterns.
_UPPER_NORMAL = r"(?:top|high|upper)[- ]normal|(?:at )?(?:the )?upper (?:limits? )?(?:of )?normal"
_NORMAL = (rf"(?:normal|unremarkable|within normal limits|not (?:enlarged|widened|increased)|"
           rf"of normal size|{_UPPER_NORMAL})")


def _size_mentions(observation: str, subject: str) -> list[Mention]:
    return [
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_BORDERLINE}\b"), UNCERTAIN),
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_NORMAL}\b"), NEGATIVE),
        Mention(observation, re.compile(rf"\b{subject}{_GAP}\s+{_ENLARGED}\b")),
        Mention(observation, re.compile(rf"\b(?:normal|unremarkable|(?:top|high|upper)[- ]normal) "
                                        rf"(?:size of the )?{subject}"), NEGATIVE),
        Mention(observation, re.compile(rf"\bborderline {subject}"), UNCERTAIN),
        Mention(observation, re.compile(rf"\b{_ENLARGED} {subject}|\benlargement of the {subject}")),
    ]


def _plain(observation: str, *alternatives: str) -> list[Mention]:
    return [Mention(observation, re.compile(_words(*alternatives)))]


_DEVICE_TUBE = (r"(?:endotracheal|et|tracheostomy|trach|enteric|nasogastric|orogastric|ng|og|"
                r"feeding|dobhoff|chest|thoracostomy|gastrostomy|nasoenteric|pigtail) tubes?")
_DEVICE_LINE = (r"(?:central(?: venous)?|picc|ij|internal jugular|subclavian|venous|arterial|"
                r"swan[- ]ganz|dialysis|hemodialysis|midline|pulmonary artery) (?:lines?|catheters?)")
# Only a line, tube or catheter has a tip in the superior vena cava, the right atrium or near
# the carina ("left chest ___ with tip in the SVC", where de-identification ate the device).
_DEVICE_TIP = (r"tips? (?:[\w-]+ ){0,5}?(?:svc|superior vena cava|right atrium|carina|"
               r"(?:cavo|caval|cava)[- ]?atrial junction|atriocaval junction)")
# Bone and skin lesions are abnormalities, not lung lesions; so are other organs' cancers.
_BONE = r"(?:rib|ribs|humer\w*|clavicle|scapula|spine|sternum|vertebra\w*|vertebral body)"
_NOT_LUNG_LESION = ("lytic", "blastic", "sclerotic", "expansile", "lucent", "destructive", "bone",
                    "bony", "osseous", "skin")
_OTHER_CANCER = ("breast", "prostate", "colon", "colorectal", "rectal", "bladder", "renal",
                 "ovarian", "thyroid", "skin", "cervical", "laryngeal", "esophageal", "pancreatic")


def _not_after(words: tuple[str, ...]) -> str:
    """Lookbehinds: not right after any of `words`."""
    return "".join(f"(?<!{word} )" for word in words)


MENTIONS: tuple[Mention, ...] = (
    *_size_mentions("cardiomegaly", _HEART),
    *_plain("cardiomegaly", r"cardiomegaly", r"cardiac enlargement"),
    *_size_mentions("enlarged_cardiomediastinum", _MEDIASTINUM),
    *_plain("enlarged_cardiomediastinum", r"(?:widening|enlargement) of the (?:cardio)?mediastin\w*",
            r"mediastinal (?:widening|enlargement)"),
    *_plain("lung_opacity", r"opacit(?:y|ies)", r"opacification", r"opacified", r"infiltrat\w*",
            r"air[- ]?space (?:disease|process)", r"increased density", r"haziness",
            r"decreased translucency", r"reticulation", r"reticular (?:opacities|markings|pattern)",
            r"interstitial (?:markings|pattern|opacities|prominence|lung disease)",
            r"peribronchial (?:thickening|cuffing)",
            r"(?<!pleural )(?<!pleuroparenchymal )(?<!pleural-parenchymal )scar(?:s|ring|red)?"),
    *_plain("lung_lesion", r"(?<!calcified )(?<!calcific )nodul(?:e|es|ar|arity)",
            r"(?:non-?|un)calcified (?:\w+ )?nodul(?:e|es|ar)", r"masses", r"mass", r"mass-?like",
            _not_after(_NOT_LUNG_LESION) + rf"lesions?(?! of the (?:\w+ )?{_BONE})",
            r"tumou?rs?", r"neoplasms?", r"carcinoma", r"malignan\w*",
            _not_after(_OTHER_CANCER) + r"cancers?",
            r"(?:pulmonary|lung) metastas[ie]s", r"metastatic (?:pulmonary |lung )?nodules?"),
    *_plain("edema", r"(?<!soft tissue )edema", r"chf", r"(?:congestive )?heart failure"),
    # CheXpert reads congestion and vascular indistinctness without the word edema as uncertain
    # edema.
    Mention("edema", re.compile(_words(
        r"(?:pulmonary |vascular |venous )+congestion",
        r"(?:pulmonary )?(?:vascular|venous) (?:engorgement|prominence|indistinctness|hypertension)",
        r"indistinct(?:ness of the)? (?:pulmonary )?(?:vascular|vasculature|vessels)")), UNCERTAIN),
    *_plain("consolidation", r"consolidat\w*"),
    *_plain("pneumonia", r"(?:broncho)?pneumonias?", r"pneumonitis", r"infections?",
            r"infectious(?: process)?"),
    *_plain("atelectasis", r"atelecta\w*",
            r"(?:lobar|lobe|segmental|lung) collapse", r"collapse of the \w+ (?:lobe|lung)"),
    *_plain("pneumothorax", r"(?:hydro)?pneumothora(?:x|ces)", r"ptx",
            r"pleural air(?: collections?)?", r"air in the pleural space"),
    *_plain("pleural_effusion", r"(?<!pericardial )effusions?", r"pleural fluid",
            r"fluid in the (?:\w+ )?pleural spaces?",
            r"hydro(?:pneumo)?thorax",
            # "angle" may be "recess", "sulcus" or eaten by de-identification ("costophrenic ___")
            r"blunt(?:ing|ed)(?: of)?(?: the)?(?: \w+){0,2} costophrenic",
            r"costophrenic (?:\w+ )?blunting"),
    Mention("pleural_effusion",
            re.compile(r"\b(?:costophrenic (?:angles|sulci)|pleural spaces?) (?:are |is |remain )?"
                       r"(?:sharp|clear|preserved|free of fluid)\b"
                       r"|\bsharp costophrenic angles\b"), NEGATIVE),
    *_plain("pleural_other", r"pleural (?:thickening|plaques?|scar\w*|calcifications?)",
            r"pleuro-?parenchymal (?:scar\w*|thickening|irregularit\w*)", r"fibrothorax",
            r"(?:bi)?apical (?:pleural )?(?:caps?|thickening)"),
    *_plain("fracture", r"fractur\w*", r"fx"),
    *_plain("support_devices", _DEVICE_TUBE, _DEVICE_LINE, _DEVICE_TIP, r"tubes?",
            r"(?<!septal )(?<!kerley b )(?<!lung )(?<!pleural )lines", r"catheters?",
            r"pacemakers?", r"pacers?", r"a?icds?", r"defibrillators?",
            r"(?:pacing|pacer|pacemaker|icd|aicd|defibrillator|epicardial|transvenous) (?:leads?|wires?)",
            r"(?<!monitor )(?<!monitoring )(?<!ekg )(?<!ecg )leads",
            r"(?:support )?devices?", r"support apparatus", r"picc", r"ett",
            r"port-?a-?cath(?:eter)?s?", r"portacath\w*", r"mediports?", r"port catheters?",
            r"(?:chest|power|infusion|venous|subcutaneous) ports?", r"(?:neuro)?stimulators?",
            r"loop recorders?", r"stents?", r"(?:sternotomy|sternal) wires", r"drains?",
            r"(?:surgical|orthopedic) hardware", r"prosthetic (?:\w+ )?valves?",
            r"valve (?:replacement|prosthesis)", r"intra-?aortic balloon pump", r"iabp"),
    # Clear lungs deny airspace disease; a nodule could still be reported, so not lung_lesion.
    *(Mention(name, re.compile(r"\blungs (?:are |remain )?(?:otherwise )?clear\b|\bclear lungs\b"),
              NEGATIVE) for name in ("lung_opacity", "consolidation", "pneumonia", "edema")),
    # Abnormalities outside the 14, after CheXpert's list of what rules out "No Finding".
    *_plain(OTHER_FINDING, r"emphysema\w*", r"hyperinflat\w*", r"hyperexpan\w*", r"hyperaerat\w*",
            r"hyperlucen\w*", r"copd", r"granulomas?", r"granulomat\w*", r"(?<!non-)calcifi\w*",
            r"calcific", r"\w*scoliosis", r"kyphosis", r"kyphotic", r"(?:spine|spinal) curvature",
            r"hernia\w*", r"pneumomediastinum", r"pneumoperitoneum", r"free (?:\w+ )?air",
            r"bronchiectasis", r"fibrosis", r"metastas[ie]s", r"metastatic", r"bullae", r"bullous",
            r"blebs?", r"cysts?", r"atherosclero\w*", r"tortu\w*", r"ectasia", r"ectatic",
            r"unfold(?:ed|ing)", r"aneurysm\w*", r"(?:elevated|elevation of the)(?: right| left)? "
            r"(?:hemi)?diaphragms?", r"(?:hemi)?diaphragms? (?:(?:is|are|remains?) )?elevat\w*",
            r"eventration", r"flatten(?:ed|ing)", r"degenerat\w*", r"spondylos[ie]s",
            r"osteophyt\w*", r"spurring", r"arthriti\w*", r"arthropath\w*", r"osteopeni\w*",
            r"osteoporo\w*", r"deformit(?:y|ies)", r"dislocations?", r"subluxation",
            rf"(?:{'|'.join(_NOT_LUNG_LESION)}) lesions?", rf"lesions? of the (?:\w+ )?{_BONE}", r"fusion",
            r"clips", r"sutures?", r"post-?(?:operative|surgical) changes?", r"postsurgical",
            r"foreign bod(?:y|ies)", r"post-?traumatic", r"implants?", r"mastectomy", r"hypoinflat\w*",
            r"low (?:lung )?volumes?", r"(?:decreased|reduced|diminished) lung volumes?",
            r"lung volumes (?:are |remain )?(?:low|decreased|reduced|diminished)", r"crowding",
            r"volume loss", r"densit(?:y|ies)", r"prominen\w*", r"thickening", r"lucenc(?:y|ies)",
            r"(?:lymph)?adenopathy", r"(?:chronic|interstitial|obstructive) (?:lung|pulmonary) disease",
            r"bronchitis", r"bronchitic", r"bronchiolitis", r"airways? disease", r"aspiration",
            r"cephalization", r"hemorrhage", r"hematoma", r"contusion", r"radiopaque",
            r"inflamm\w*", r"hypertension", r"(?:mediastinal|cardiomediastinal) shift"),
)

# --- Negation, uncertainty and hypothetical triggers ------------------------------------------
# Hedges that contain a negation word; checked before negation ("cannot exclude pneumonia").
# CheXpert also reads "no new X" as uncertain: X may persist from before.
NEGATED_HEDGE = re.compile(
    r"\bcannot (?:be )?(?:excluded?|ruled? out)|\bcan ?not (?:be )?(?:excluded?|ruled? out)|"
    r"\bcan't (?:exclude|rule out)|\bcould not be (?:excluded|ruled out)|"
    r"\bnot (?:be )?(?:entirely |completely |totally )?(?:excluded|ruled out)|"
    r"\b(?:does|do|did) not (?:exclude|rule out)|\bdifficult to (?:exclude|rule out)|"
    r"\bno evidence to rule out|\bno new\b")
# Phrases that look like negations but are not ("no change in the effusion"); what follows
# them is stated, and an "or" after them joins a list, not alternatives.
PSEUDO_NEGATION = re.compile(
    r"\b(?:no|without) (?:(?:significant|appreciable|interval|substantial|definite|apparent)\s+)*"
    r"(?:change|increase|decrease|worsening|improvement|progression)\b|"
    r"\bnot (?:significantly |substantially )?(?:changed|increased|decreased|worsened|improved)\b|"
    r"\bnot only\b")
# A mention in the scope of these is history or a question, not what the image shows: it is
# dropped ("history of pneumonia", "evaluate for pneumothorax", "CT to rule out malignancy").
HYPOTHETICAL = re.compile(_words(
    r"history of", r"hx of", r"h/o", r"(?:evaluate|evaluation|eval|assess|assessment|screening) for",
    r"rule out", r"ruling out", r"r/o", r"to exclude"))
PRE_NEGATION = re.compile(_words(
    r"no", r"not", r"without", r"negative for", r"free of", r"absence of", r"absent",
    r"resolution of", r"resolved", r"removal of", r"removed", r"rather than", r"neither", r"nor",
    r"clear of", r"never", r"no longer"))
# After the mention: "is not seen", "has resolved", and with a copula "is within normal limits".
POST_NEGATION = re.compile(
    r"^\W*(?:\w+\W+){0,2}?(?:(?:is|are|was|were|has|have)\s+)?(?:(?:been|now)\s+)?(?:"
    r"(?:not|no longer) (?:seen|identified|present|appreciated|visualized|visible|demonstrated|"
    r"evident|detected|noted|observed|apparent|shown)|absent|resolved|cleared|removed|"
    r"excluded|ruled out)\b|"
    r"^\W*(?:\w+\W+){0,2}?(?:is|are|appears?|remains?|seems?)\s+(?:now\s+)?"
    r"(?:within (?:the )?(?:normal limits|limits of normal)|normal|unremarkable)\b")
UNCERTAINTY = re.compile(_words(
    r"possible", r"possibly", r"probable", r"probably", r"likely", r"unlikely", r"may", r"might",
    r"could", r"suggests?", r"suggestive", r"suggesting", r"suggestion", r"suspicious",
    r"suspect(?:ed)?", r"suspicion", r"concern", r"concerning", r"worrisome", r"question",
    r"questionable", r"questionably", r"equivocal", r"indeterminate", r"uncertain", r"borderline",
    r"presumed", r"presumably", r"perhaps", r"versus", r"differential", r"consider",
    r"considered", r"favor(?:ed|s)?", r"vs", r"or", r"and/or") + r"|\?")
# Hedges that open a list: they reach over its commas ("differential includes edema, atypical
# infection, inflammation").
LIST_HEDGE = re.compile(_words(r"differential", r"considerations? includes?", r"such as"))
# "or" joins alternatives except after a negation or pseudo-negation, where it joins a list.
LIST_CONJUNCTION = re.compile(_words(r"or", r"nor", r"and/or"))
# Hedges that follow the mention they qualify ("pneumonia is suspected", "effusion may be
# present", "pneumothorax?", "atelectasis or pneumonia"). "Opacity (most likely) represents
# atelectasis" hedges atelectasis, not the opacity, so a hedge word after a mention counts only
# as the predicate of a copula.
POST_UNCERTAINTY = re.compile(
    r"^\s*(?:\?|(?:or|and/or|versus|vs)\b|(?:is|are|was|were|remains?|appears?|seems?)\s+"
    r"(?:also\s+)?(?:(?:more |most |less )?(?:possible|likely|probable|suspected|questionable|"
    r"equivocal|uncertain|indeterminate|not excluded|considered|suspicious|worrisome)\b)|"
    r"(?:may|might|could|can) (?:also )?(?:be|have been) (?:present|seen|noted|there)\b)")
# Ends a trigger's reach inside a sentence: a new clause or a new assertion. A comma ends it
# too unless it continues a list (see the engine).
SCOPE_BOUNDARY = re.compile(
    r"[;:]|\b(?:but|however|although|though|whereas|while|except|apart from|aside from|"
    r"other than|besides|otherwise|which|that|there (?:is|are|has been|have been|was|were)|"
    r"and (?:the|a|an))\b|"
    r"(?<!consistent )(?<!compatible )(?<!associated )(?<!along )\bwith\b")
