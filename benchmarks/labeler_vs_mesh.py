"""The rule-based report labeler against expert MeSH terms on Open-i (IU X-ray) chest reports.

Open-i's reports carry "major" MeSH terms assigned by hand (Demner-Fushman et al., 2016). This
script labels each report with `radfm_jax.data.labeler` and scores the labels per CheXpert
finding against a conservative mapping of those terms, printing precision, recall and support
and writing JSON.

Input: `--reports` is an `indiana_reports.csv` (columns uid, MeSH, Problems, image, indication,
comparison, findings, impression; the Kaggle copy of the data set) or a folder of text files
holding that CSV cut into consecutive pieces (`page_00.txt`, `page_01.txt`, ...; numbered 0,
1, ... in name order). The pieces are joined before parsing, so a row cut at a piece boundary
is read whole; a row belongs to the piece it starts on (`--pages 10-19` scores those), and a
row cut off by the end of the last piece is dropped.

What is labelled: the text the Open-i builder labels, "INDICATION: ...\\nCOMPARISON: ...\\n
FINDINGS: ...\\nIMPRESSION: ..."; the labeler reads only the findings and impression. Reports
with neither findings nor impression text and reports indexed "No Indexing" are not scored.

Reference (MeSH heading -> finding; a term's first part is its heading, the rest qualifiers):

* positive: Cardiomegaly, Cardiac Shadow/enlarged -> cardiomegaly; Opacity, Airspace Disease,
  Infiltrate -> lung_opacity; Nodule, Mass, Lung Neoplasms -> lung_lesion (a granuloma, calcified
  or not, is not a lung lesion: the CheXpert convention); Pulmonary Edema -> edema;
  Consolidation; Pneumonia; Pulmonary Atelectasis -> atelectasis; Pneumothorax; Pleural Effusion;
  Thickening/pleura -> pleural_other; Fractures, Bone -> fracture; Catheters, Indwelling,
  Tube, Inserted, Pacemaker, Artificial, Defibrillators, Implantable, Implanted Medical Device,
  Medical Device, Stents, Heart Valve Prosthesis -> support_devices; no_finding is positive when
  every term is "normal", a support device (CheXpert's No Finding ignores devices) or Technical
  Quality of Image Unsatisfactory, and negative when any other term is present.
* excluded (the report is not scored for that finding, because the term and the finding
  overlap without being the same thing): a positive term qualified "/borderline" (borderline
  cardiomegaly is uncertain in CheXpert too); Costophrenic Angle (blunting, which CheXpert
  reads as effusion) for pleural_effusion; Pulmonary Congestion and Heart Failure (uncertain
  and positive edema in CheXpert) for edema; Density, Markings, Cicatrix (scar), Lung Diseases,
  Interstitial and Pulmonary Fibrosis (interstitial markings and scars are opacities in
  CheXpert) for lung_opacity; Density for lung_lesion (a "nodular density" is a lesion);
  Surgical Instruments (clips, sternotomy wires) for support_devices.
* negative: everything else. enlarged_cardiomediastinum has no MeSH counterpart and is not
  scored.

Prediction: the labeler's POSITIVE, and separately POSITIVE or UNCERTAIN ("uncertain as
positive"); both are reported. Findings with fewer than `--min-support` reference positives
among the scored reports are listed, not scored.

    python benchmarks/labeler_vs_mesh.py --reports indiana_reports.csv
    python benchmarks/labeler_vs_mesh.py --reports /tmp/openi_reports --pages 0-9 --errors edema
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

from radfm_jax.data.findings import CHEXPERT_FINDINGS, POSITIVE, UNCERTAIN
from radfm_jax.data.labeler import label_report

COLUMNS = ("uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression")
NO_INDEXING = "No Indexing"

# MeSH heading (or heading/qualifier) -> the finding it states.
POSITIVE_TERMS: dict[str, str] = {
    "Cardiomegaly": "cardiomegaly", "Cardiac Shadow/enlarged": "cardiomegaly",
    "Opacity": "lung_opacity", "Airspace Disease": "lung_opacity", "Infiltrate": "lung_opacity",
    "Nodule": "lung_lesion", "Mass": "lung_lesion", "Lung Neoplasms": "lung_lesion",
    "Pulmonary Edema": "edema", "Consolidation": "consolidation", "Pneumonia": "pneumonia",
    "Pulmonary Atelectasis": "atelectasis", "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion", "Thickening/pleura": "pleural_other",
    "Fractures, Bone": "fracture",
    **{device: "support_devices" for device in (
        "Catheters, Indwelling", "Tube, Inserted", "Pacemaker, Artificial",
        "Defibrillators, Implantable", "Implanted Medical Device", "Medical Device", "Stents",
        "Heart Valve Prosthesis")},
}
# MeSH heading -> findings it overlaps without stating them: the report is not scored for them.
AMBIGUOUS_TERMS: dict[str, tuple[str, ...]] = {
    "Costophrenic Angle": ("pleural_effusion",),
    "Pulmonary Congestion": ("edema",), "Heart Failure": ("edema",),
    "Density": ("lung_opacity", "lung_lesion"), "Markings": ("lung_opacity",),
    "Cicatrix": ("lung_opacity",), "Lung Diseases, Interstitial": ("lung_opacity",),
    "Pulmonary Fibrosis": ("lung_opacity",),
    "Surgical Instruments": ("support_devices",),
}
# Headings that leave no_finding positive besides support devices.
NOT_ABNORMAL = ("normal", "Technical Quality of Image Unsatisfactory")
SCORED = tuple(f for f in CHEXPERT_FINDINGS if f != "enlarged_cardiomediastinum")
MODES = {"uncertain_as_negative": (POSITIVE,), "uncertain_as_positive": (POSITIVE, UNCERTAIN)}


@dataclasses.dataclass(frozen=True)
class Report:
    uid: str
    mesh: str
    text: str  # as the Open-i builder writes it for the labeler
    has_body: bool  # some findings or impression text


def _row_spans(text: str) -> list[tuple[int, str]]:
    """(start offset, raw text) of each CSV record; a newline inside quotes is not an end."""
    spans, start, quoted = [], 0, False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "\n" and not quoted:
            spans.append((start, text[start:i]))
            start = i + 1
    if start < len(text):
        spans.append((start, text[start:]))
    return spans


def _read_pages(path: Path) -> tuple[str, list[range]]:
    """The joined text of the CSV file or of the folder's pieces, and each piece's offsets."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    texts = [f.read_text(encoding="utf-8") for f in files]
    bounds, start = [], 0
    for text in texts:
        bounds.append(range(start, start + len(text)))
        start += len(text)
    return "".join(texts), bounds


def _builder_text(row: dict[str, str]) -> str:
    parts = [(label, row[label.lower()].strip()) for label in
             ("INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION")]
    return "\n".join(f"{label}: {body}" for label, body in parts if body)


def read_reports(path: Path, pages: range | None = None) -> tuple[list[Report], int]:
    """Reports to score (with a folder, rows starting on the pieces numbered `pages`, counting
    from 0 in name order) and the number of rows skipped as unparseable (a piece of a row
    before the first piece's start, a wrong field count)."""
    joined, bounds = _read_pages(path)
    spans = _row_spans(joined)
    if path.is_dir() and not joined.endswith("\n"):
        spans = spans[:-1]  # the last row runs past the last piece
    reports, skipped = [], 0
    for start, raw in spans:
        page = next(i for i, b in enumerate(bounds) if start in b)
        if pages is not None and path.is_dir() and page not in pages:
            continue
        fields = next(csv.reader([raw]), [])
        if tuple(fields) == COLUMNS:
            continue
        if len(fields) != len(COLUMNS) or not fields[0].isdigit():
            skipped += raw.strip() != ""
            continue
        row = dict(zip(COLUMNS, fields))
        has_body = bool(row["findings"].strip() or row["impression"].strip())
        reports.append(Report(row["uid"], row["MeSH"], _builder_text(row), has_body))
    return reports, skipped


def reference(mesh: str) -> dict[str, bool | None]:
    """Finding -> True (MeSH states it), False (it does not), None (not scored: ambiguous)."""
    terms = [[part.strip() for part in term.split("/")] for term in mesh.split(";") if term.strip()]
    stated, borderline, ambiguous = set(), set(), set()
    for heading, *qualifiers in terms:
        for key in (heading, *(f"{heading}/{q}" for q in qualifiers)):
            if key in POSITIVE_TERMS:
                (borderline if "borderline" in qualifiers else stated).add(POSITIVE_TERMS[key])
        ambiguous.update(AMBIGUOUS_TERMS.get(heading, ()))
    ref: dict[str, bool | None] = {
        f: True if f in stated else None if f in borderline | ambiguous else False for f in SCORED}
    # CheXpert's No Finding ignores support devices; image quality is no finding either.
    ref["no_finding"] = all(heading in NOT_ABNORMAL or POSITIVE_TERMS.get(heading) == "support_devices"
                            for heading, *_ in terms)
    return ref


def _scores(pairs: list[tuple[bool, bool]]) -> dict[str, float | int]:
    tp = sum(r and p for r, p in pairs)
    fp = sum(p and not r for r, p in pairs)
    fn = sum(r and not p for r, p in pairs)
    return {"precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "support": tp + fn, "predicted": tp + fp, "scored_reports": len(pairs)}


def evaluate(reports: list[Report]) -> tuple[dict, dict[str, list[tuple[str, bool, int]]]]:
    """Per mode and finding, precision / recall / support; and per finding the (uid, MeSH
    reference, labeler value) of each report where some mode disagrees with MeSH."""
    pairs = {mode: {f: [] for f in SCORED} for mode in MODES}
    errors: dict[str, list[tuple[str, bool, int]]] = {f: [] for f in SCORED}
    for report in reports:
        labels, ref = label_report(report.text), reference(report.mesh)
        for finding in SCORED:
            if ref[finding] is None:
                continue
            predictions = {mode: labels[finding] in values for mode, values in MODES.items()}
            for mode, predicted in predictions.items():
                pairs[mode][finding].append((ref[finding], predicted))
            if any(predicted != ref[finding] for predicted in predictions.values()):
                errors[finding].append((report.uid, ref[finding], labels[finding]))
    return {mode: {f: _scores(p) for f, p in by_finding.items()}
            for mode, by_finding in pairs.items()}, errors


def _is_scoreable(report: Report) -> bool:
    return report.has_body and report.mesh.strip() != NO_INDEXING


def _pages(spec: str) -> range:
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, required=True,
                        help="indiana_reports.csv, or a folder of its consecutive pieces")
    parser.add_argument("--pages", type=_pages, default=None,
                        help="with a folder: the pieces whose rows are scored, e.g. 0-9")
    parser.add_argument("--min-support", type=int, default=15)
    parser.add_argument("--errors", nargs="*", default=[], metavar="FINDING",
                        help="print the reports the labeler and MeSH disagree on")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/labeler_vs_mesh.json"))
    args = parser.parse_args()

    reports, skipped = read_reports(args.reports, args.pages)
    scored = [r for r in reports if _is_scoreable(r)]
    results, errors = evaluate(scored)
    supported = [f for f in SCORED if results["uncertain_as_negative"][f]["support"] >= args.min_support]
    print(f"{len(reports)} reports read ({skipped} unparseable rows skipped), {len(scored)} scored "
          f"(the rest have no findings / impression text or are '{NO_INDEXING}')")
    print(f"{'finding':<18}{'support':>8}{'P (U=0)':>9}{'R (U=0)':>9}{'P (U=1)':>9}{'R (U=1)':>9}")
    for f in supported:
        neg, pos = results["uncertain_as_negative"][f], results["uncertain_as_positive"][f]
        print(f"{f:<18}{neg['support']:>8}" + "".join(
            f"{'n/a' if x is None else f'{x:.3f}':>9}"
            for x in (neg["precision"], neg["recall"], pos["precision"], pos["recall"])))
    too_few = {f: results["uncertain_as_negative"][f]["support"] for f in SCORED if f not in supported}
    print(f"support under {args.min_support} (not scored): {too_few}")
    by_uid = {r.uid: r for r in scored}
    for finding in args.errors:
        for uid, ref, value in errors[finding]:
            print(f"\n[{finding}: MeSH {'positive' if ref else 'negative'}, labeler {value}] "
                  f"uid {uid}, MeSH {by_uid[uid].mesh}\n{by_uid[uid].text}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "reports": str(args.reports), "pages": None if args.pages is None else
        [args.pages.start, args.pages.stop - 1], "reports_read": len(reports),
        "reports_scored": len(scored), "min_support": args.min_support,
        "scored_findings": supported, "unscored_support": too_few, "results": results,
        "disagreements": {f: len(e) for f, e in errors.items()},
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
