"""A rule-based chest X-ray report labeler over the 14 CheXpert observations.

`label_report(text)` gives each name in `CHEXPERT_FINDINGS` a CheXpert value (POSITIVE 1,
NEGATIVE 0, UNCERTAIN -1, NOT_MENTIONED -2); `label_vector(text)` the same as int8 (14,).

What it reads. The findings and impression sections of a report (`report_sections`: headers
at a line start, in capitals inside a line, or capitalised after a sentence's end as in
"Indication: ... Findings: ... Impression: ..." written as one paragraph); a report with no
recognised header is read whole. Indication, history, comparison and technique text is ignored:
it names what the study is asked about, not what it shows. A report with no findings or
impression text (nothing but placeholders, or only an indication) is NOT_MENTIONED throughout,
no_finding included. (CheXpert labelled the impression only; pass `report_target(text,
"impression")` to do the same.)

How. The body is normalised, lower-cased and split into sentences. Lexicon patterns
(`rules.MENTIONS`, after the CheXpert labeler's phrase lists) find mentions: synonyms per
observation (effusion / pleural fluid / blunting of the costophrenic angle; pleural air
collection = pneumothorax; pneumonitis = pneumonia; noncalcified nodule, mass-like opacity,
malignancy, lung cancer = lung lesion, while a calcified nodule or a bone lesion is not; tubes,
lines, catheters, pacemakers and pacing leads, ports and port-a-caths, stimulators, and any
catheter tip in the SVC / right atrium = support devices ...) and size statements ("heart size
is normal" or "at the upper limits of normal" -> cardiomegaly negative, "the costophrenic angles
are sharp" -> effusion negative, "the lungs are clear" -> lung opacity, consolidation, pneumonia
and edema negative, "borderline heart size" or "heart size is stable" -> uncertain, as in
CheXpert). Each other mention is classified NegEx-style from the words of its own scope, in
this order:

1. a negated hedge before or after it -> uncertain ("cannot exclude", "not ruled out",
   "no new X", which CheXpert reads as uncertain because X may persist);
2. history or a question before it -> the mention is dropped ("history of pneumonia",
   "evaluate for pneumothorax", "CT to rule out malignancy");
3. a negation before it ("no", "without", "negative for", "free of", "resolved", "removal
   of", ...) or right after it ("is not seen", "has resolved", "is within normal limits") ->
   negative. Pseudo-negations ("no change in", "no significant interval increase") are not
   negations, and an "or" after one joins a list ("no change in the effusion or
   pneumothorax" states both);
4. a hedge before it ("possible", "may", "suggestive of", "questionable", "borderline",
   "versus", "or", and "likely", which CheXpert counts as uncertain), one that is its predicate
   ("pneumonia is suspected", "effusion may be present", "X?", "X or Y"), or a differential
   list it stands in -> uncertain. "Opacity may represent atelectasis" hedges the atelectasis
   only;
5. otherwise the mention's plain value: positive for a finding's name, negative for a
   normality statement, uncertain for an ambiguous one ("vascular congestion" is uncertain
   edema, as in CheXpert).

A trigger's scope is the clause around the mention, with no fixed word window: it ends at ";",
":", "but", "however", "although", "otherwise", "other than", "except", "which", "that", "and
the", "there is", "with", ... and at a comma unless the comma continues a list closed by "or" /
"nor" ("no consolidation, large effusion, or pneumothorax" negates all three; "no pneumothorax,
mild cardiomegaly" does not negate the cardiomegaly). A post-negation covers a list it closes
("effusion or pneumothorax is not seen").

Aggregation follows the CheXpert labeler: an observation mentioned several times is positive if
any mention is, else uncertain if any is, else negative; never mentioned -> NOT_MENTIONED.
"chf" / "heart failure" stated or hedged is edema and also makes cardiomegaly uncertain.
`no_finding` is POSITIVE when there is text to read (findings and impression, or a free-text
report) and no mention other than a support device is positive or uncertain, and NOT_MENTIONED
otherwise; it is never
NEGATIVE or UNCERTAIN. Abnormalities outside the 14, after CheXpert's list (emphysema,
granuloma, degenerative change, scoliosis, tortuous aorta, low lung volumes, surgical clips,
hernia ...), count as findings for that rule, so a report that only denies findings is POSITIVE.

Measured against expert MeSH terms of Open-i reports by `benchmarks/labeler_vs_mesh.py`.

What it does not handle. Temporal change ("increased", "improved", "new" are ignored: a
"stable effusion" is positive), comparisons with prior studies, hedges or negations that reach
across sentences, a comma-separated negated list not closed by "or" ("no effusion,
pneumothorax" negates only the effusion), location (left / right), severity, and negated hedges
beyond the listed phrases. It is a transparent baseline for building labels where none ship and
for scoring generated reports, not a replacement for CheXbert.
"""

from radfm_jax.data.labeler.engine import label_report, label_vector

__all__ = ["label_report", "label_vector"]
