"""Radiology report sections and normalised report text (MIMIC-CXR, Open-i, CheXpert Plus).

`parse_sections` splits a free-text report at its section headers. A header is one of the
aliases in `_ALIASES` and is recognised

* at the start of a line, in any case, followed by `:`, `-` (or an en/em dash), or alone on its
  line: `FINDINGS:`, `Findings :`, `FINDINGS -`, `Impression` on a line of its own;
* inside a line when followed by a colon and either written in capitals, as in Open-i's one-line
  exports (`... COMPARISON: None. FINDINGS: The heart ...`), or capitalised (`Findings:`,
  `Clinical history:`) right after a sentence's end (`.`, `?`, `!` or `;` and a space), as in
  reports written as one paragraph (`Indication: Cough. Findings: Clear lungs. Impression:
  Normal.`). A capitalised header word elsewhere in a sentence (`Chest comparison: none`) is text.

Aliases: `CONCLUSION(S)`, `INTERPRETATION`, `OPINION` -> impression; `REASON FOR EXAM(INATION)`,
`CLINICAL INDICATION`, `CLINICAL INFORMATION`, `INDICATION/HISTORY` -> indication;
`CLINICAL HISTORY`, `HISTORY` -> history; `EXAMINATION`, `EXAM`, `PROCEDURE (COMMENTS)` ->
technique; `PRIOR STUDIES` -> comparison. A combined `FINDINGS AND IMPRESSION:` (or
`FINDINGS/IMPRESSION:`) section fills both findings and impression unless the report also has a
dedicated one, which wins. Administrative headers (MIMIC's `FINAL REPORT`, `WET READ`,
`ADDENDUM`; CheXpert Plus's `NARRATIVE`, `END OF IMPRESSION`, `SUMMARY`, `ACCESSION NUMBER`) are
dropped, and the text under them, like any text before the first recognised header, is kept
under the `"preamble"` key. A section seen twice is joined with a newline; sections with no text
are left out. Section text is stripped but otherwise raw (see `normalize_report`).

De-identification placeholders: MIMIC writes `___`, Open-i `XXXX` (MIMIC-II `[** ... **]`);
`normalize_report` turns every one into `PLACEHOLDER` (`___`).
"""

from __future__ import annotations

import re

from radfm_jax.errors import ConfigError

SECTION_NAMES: tuple[str, ...] = ("findings", "impression", "indication", "comparison", "technique",
                                  "history")
PREAMBLE = "preamble"
PLACEHOLDER = "___"
TARGETS: tuple[str, ...] = ("findings", "impression", "both")

_COMBINED = "findings_and_impression"
_IGNORED = "ignored"  # headers whose text is kept as preamble
# Alias -> section, written lower case with single spaces; matching tolerates any whitespace.
_ALIASES: dict[str, str] = {
    "findings and impressions": _COMBINED, "findings and impression": _COMBINED,
    "findings/impression": _COMBINED,
    "findings": "findings", "finding": "findings",
    "impressions": "impression", "impression": "impression", "conclusions": "impression",
    "conclusion": "impression", "interpretation": "impression", "opinion": "impression",
    "indication/history": "indication", "history/indication": "indication",
    "clinical indications": "indication", "clinical indication": "indication",
    "clinical information": "indication", "reason for examination": "indication",
    "reason for exam": "indication", "reason for study": "indication",
    "indications": "indication", "indication": "indication",
    "comparisons": "comparison", "comparison": "comparison", "prior studies": "comparison",
    "technique": "technique", "examination": "technique", "exam": "technique",
    "procedure": "technique", "procedure comments": "technique",
    "clinical history": "history", "history": "history",
    # Administrative parts: MIMIC's banner and preliminary read, CheXpert Plus's narrative
    # (exam title), end-of-impression marker, summary (an urgency code) and accession number.
    "final report": _IGNORED, "wet read": _IGNORED, "addendum": _IGNORED, "narrative": _IGNORED,
    "end of impression": _IGNORED, "summary": _IGNORED, "accession number": _IGNORED,
}


def _alias_pattern(case: str) -> str:
    """The aliases as one group; case "any", "upper" or "capitalised" (first letter upper case,
    the rest in any case: "Findings", "Clinical History", "FINDINGS")."""
    names = sorted(_ALIASES, key=len, reverse=True)  # longest first: "findings and impression"
    parts = []
    for name in names:
        alias = r"\s*/\s*".join(r"\s+".join(map(re.escape, side.split())) for side in name.split("/"))
        if case == "upper":
            alias = alias.upper()
        elif case == "capitalised":
            alias = name[0].upper() + "(?i:" + alias[1:] + ")"
        parts.append(alias)
    return "(?P<alias>" + "|".join(parts) + ")"


_LINE_HEADER = re.compile(
    r"^[ \t]*" + _alias_pattern("any") + r"(?:[ \t]*:+|[ \t]*[-\u2013\u2014]+(?!\w)|[ \t]*$)",
    re.IGNORECASE | re.MULTILINE)
_INLINE_HEADER = re.compile(r"(?<=[\s.])" + _alias_pattern("upper") + r"[ \t]*:")
# A capitalised header inside a paragraph needs a sentence end before it; the match starts at
# the space, so the sentence before keeps its full stop.
_INLINE_TITLE_HEADER = re.compile(r"(?<=[.?!;])[ \t]+" + _alias_pattern("capitalised") + r"[ \t]*:")

_PLACEHOLDERS = re.compile(r"_{2,}|\bX{2,}\b|\[\*\*.*?\*\*\]")
_LIST_MARKER = re.compile(r"^(?:\(?\d{1,2}[.)]|[-*\u2022])\s+")
_INLINE_NUMBER = re.compile(r"(?<=[.!?:;])\s+\(?\d{1,2}[.)]\s+(?=\S)")
_SENTENCE_END = (".", "!", "?", ":", ";")


def _canonical(alias: str) -> str:
    return re.sub(r"\s*/\s*", "/", " ".join(alias.lower().split()))


def parse_sections(text: str) -> dict[str, str]:
    """Section name -> its text (stripped, line breaks kept); see the module docstring."""
    headers = sorted({m.start(): m for m in (*_LINE_HEADER.finditer(text),
                                             *_INLINE_HEADER.finditer(text),
                                             *_INLINE_TITLE_HEADER.finditer(text))}.values(),
                     key=lambda m: m.start())
    # A line header may contain an inline match of a shorter alias; keep the first of overlaps.
    kept: list[re.Match] = []
    for m in headers:
        if not kept or m.start() >= kept[-1].end():
            kept.append(m)
    chunks: dict[str, list[str]] = {}

    def add(name: str, body: str) -> None:
        body = body.strip()
        if body:
            chunks.setdefault(name, []).append(body)

    add(PREAMBLE, text[: kept[0].start()] if kept else text)
    for m, nxt in zip(kept, kept[1:] + [None]):
        name = _ALIASES[_canonical(m.group("alias"))]
        add(PREAMBLE if name == _IGNORED else name, text[m.end(): nxt.start() if nxt else len(text)])
    sections = {name: "\n".join(parts) for name, parts in chunks.items()}
    combined = sections.pop(_COMBINED, None)
    if combined is not None:
        sections.setdefault("findings", combined)
        sections.setdefault("impression", combined)
    return sections


def normalize_report(text: str) -> str:
    """One line of report text: placeholders unified to `___`, list numbering removed, line-wrap
    breaks joined, runs of whitespace collapsed, sentence punctuation kept.

    A list item or a paragraph (text after a blank line) whose predecessor has no closing
    punctuation gets a full stop, so sentence splitting downstream still sees the break.
    """
    text = _PLACEHOLDERS.sub(PLACEHOLDER, text.replace("\r\n", "\n").replace("\r", "\n"))
    pieces: list[str] = []
    starts_sentence = True  # the next line begins a new sentence (first line, item, paragraph)
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            starts_sentence = True
            continue
        stripped = _LIST_MARKER.sub("", line)
        if (stripped != line or starts_sentence) and pieces and not pieces[-1].endswith(_SENTENCE_END):
            pieces[-1] += "."
        if stripped:
            pieces.append(stripped)
        starts_sentence = False
    joined = _INLINE_NUMBER.sub(" ", " ".join(pieces))
    joined = re.sub(r"\s+([.,;:!?])", r"\1", joined)
    return " ".join(joined.split())


def has_words(text: str) -> bool:
    """True when some word is left once de-identification placeholders are removed."""
    return re.search(r"[A-Za-z]", _PLACEHOLDERS.sub("", text)) is not None


def report_target(text: str, target: str) -> str:
    """Normalised text of one report for a report-generation (or labelling) target.

    * `"findings"`: the findings section. A report with no recognised section header at all
      (free text) counts as all findings; a structured report without findings gives `""`
      (an impression is not substituted: it is a different kind of text to learn to write).
    * `"impression"`: the impression; without one, the findings (as MIMIC-CXR / CheXpert label
      the impression, else the findings).
    * `"both"`: `"FINDINGS: <findings>\\nIMPRESSION: <impression>"` as the synthetic data set
      writes reports, each part only when present (a combined section is written once, as
      findings).

    Returns `""` when nothing usable is left (callers count and skip such reports).
    """
    if target not in TARGETS:
        raise ConfigError(f"report target {target!r} is not one of {', '.join(TARGETS)}; "
                          f"choose one of those")
    sections = parse_sections(text)
    if not any(name in sections for name in SECTION_NAMES):
        sections = {"findings": sections.get(PREAMBLE, "")}
    findings = normalize_report(sections.get("findings", ""))
    impression = normalize_report(sections.get("impression", ""))
    findings = findings if has_words(findings) else ""
    impression = impression if has_words(impression) else ""
    if target == "findings":
        return findings
    if target == "impression":
        return impression or findings
    if impression == findings:
        impression = ""
    parts = [f"FINDINGS: {findings}" if findings else "", f"IMPRESSION: {impression}" if impression else ""]
    return "\n".join(p for p in parts if p)
