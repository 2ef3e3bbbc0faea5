"""A rule-based chest X-ray report labeler over the 14 CheXpert observations.

`label_report(text)` gives each name in `CHEXPERT_FINDINGS` a CheXpert value (POSITIVE 1,
NEGATIVE 0, UNCERTAIN -1, NOT_MENTIONED -2); `label_vector(text)` the same as int8 (14,).

What it reads. The findings and impression sections of a report (`report_sections`); a report
with no recognised header is read whole. Indication, history, comparison and technique text is
ignored: it names what the study is asked about, not what it shows. (CheXpert labelled the
impression only; pass `report_target(text, "impression")` to do the same.)

How. The body is normalised, lower-cased and split into sentences. Lexicon patterns
(`rules.MENTIONS`) find mentions: synonyms per observation (effusion / pleural fluid / blunting
of the costophrenic angle; cardiomegaly / enlarged heart; tubes, lines, catheters, pacemaker ...)
and size statements ("heart size is normal" -> cardiomegaly negative, "the costophrenic angles
are sharp" -> effusion negative, "the lungs are clear" -> lung opacity, consolidation, pneumonia
and edema negative, "heart size is top normal / stable" -> uncertain as in CheXpert). Each other
mention is classified NegEx-style from the words of its own clause (a clause ends at ";", ":",
"but", "however", "which", "there is", "with", ...), in this order:

1. a negated hedge before or after it -> uncertain ("cannot exclude", "not ruled out",
   "no new X", which CheXpert reads as uncertain because X may persist);
2. a negation within 10 words before it ("no", "without", "negative for", "free of",
   "resolved", "removal of", ...) or right after it ("is not seen", "not identified",
   "has resolved", "has been removed") -> negative; a negation covers a list it opens or
   closes ("no effusion, pneumothorax or consolidation", "effusion or pneumothorax is not
   seen"), while a comma otherwise ends a post-negation's reach. Pseudo-negations ("no change
   in") are skipped;
3. a hedge within 10 words before it ("possible", "may", "suggestive of", "questionable",
   "borderline", "versus", "or", and "likely", which CheXpert counts as uncertain), or one
   that is its predicate ("pneumonia is suspected", "effusion may be present", "X?", "X or Y")
   -> uncertain. "Opacity may represent atelectasis" hedges the atelectasis only;
4. otherwise the mention's plain value: positive for a finding's name, negative for a
   normality statement, uncertain for an ambiguous one ("vascular congestion" is uncertain
   edema, as in CheXpert).

Aggregation follows the CheXpert labeler: an observation mentioned several times is positive if
any mention is, else uncertain if any is, else negative; never mentioned -> NOT_MENTIONED.
"chf" / "heart failure" stated or hedged is edema and also makes cardiomegaly uncertain.
`no_finding` is POSITIVE when no mention other than a support device is positive or uncertain
(abnormalities outside the 14 such as emphysema, granuloma, scoliosis or hernia count), and
NOT_MENTIONED otherwise; it is never NEGATIVE or UNCERTAIN. So an empty report, or one that only
denies findings, is POSITIVE for no_finding, exactly as CheXpert's rule gives.

What it does not handle. Temporal change ("increased", "improved", "new" are ignored: a
"stable effusion" is positive), comparisons with prior studies, hedges or negations that reach
across sentences, a positive finding listed after a negated one in the same clause ("no
effusion, large consolidation" negates both), location (left / right), severity, and negated
hedges beyond the listed phrases. It is a transparent baseline for building labels where none
ship and for scoring generated reports, not a replacement for CheXbert.
"""

from radfm_jax.data.labeler.engine import label_report, label_vector

__all__ = ["label_report", "label_vector"]
