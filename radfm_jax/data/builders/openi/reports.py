"""One Open-i (IU X-ray) report: the XML file of ecgen-radiology/ read into plain fields.

A report file looks like (abridged)::

    <eCitation>
      <uId id="CXR1"/>
      <MedlineCitation><Article><Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette ... XXXX ...</AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract></Article></MedlineCitation>
      <MeSH><major>normal</major><automatic>...</automatic></MeSH>
      <parentImage id="CXR1_1_IM-0001-3001"><caption>...</caption>...</parentImage>
      <parentImage id="CXR1_1_IM-0001-4001">...</parentImage>
    </eCitation>

Each <parentImage id> names NLMCXR_png/<id>.png.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

# The AbstractText labels that carry report text, in the order a radiologist writes them.
SECTION_LABELS: tuple[str, ...] = ("INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION")


class OpenIReportError(ValueError):
    """An ecgen-radiology file that is not a readable Open-i report."""


@dataclasses.dataclass(frozen=True)
class OpenIReport:
    report_id: str  # "CXR1": the <uId>, else the file name's stem
    sections: dict[str, str]  # SECTION_LABELS -> text ("" when absent or empty)
    mesh_major: tuple[str, ...]
    mesh_automatic: tuple[str, ...]
    image_ids: tuple[str, ...]

    def as_report_text(self) -> str:
        """The sections as one report with the usual "LABEL:" headers, for section parsing."""
        return "\n".join(f"{label}: {self.sections[label]}" for label in SECTION_LABELS
                         if self.sections[label])

    def mesh_text(self) -> str:
        """MeSH terms, major then automatic, "; "-separated (e.g. "Cardiomegaly/mild; normal")."""
        return "; ".join(self.mesh_major + self.mesh_automatic)


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def read_report(path: Path) -> OpenIReport:
    """Parse one ecgen-radiology XML file; raises OpenIReportError when it is not one."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise OpenIReportError(f"{path}: not readable XML ({err})") from None
    if root.tag != "eCitation":
        raise OpenIReportError(f"{path}: root element is <{root.tag}>, an Open-i report has <eCitation>")
    sections = dict.fromkeys(SECTION_LABELS, "")
    for element in root.iter("AbstractText"):
        label = element.get("Label", "").upper()
        if label in sections:
            sections[label] = _text(element)
    uid = root.find("uId")
    report_id = uid.get("id", "") if uid is not None else ""
    mesh = root.find("MeSH")
    major = tuple(_text(e) for e in mesh.iter("major")) if mesh is not None else ()
    automatic = tuple(_text(e) for e in mesh.iter("automatic")) if mesh is not None else ()
    image_ids = tuple(e.get("id", "") for e in root.iter("parentImage") if e.get("id"))
    return OpenIReport(
        report_id=report_id or path.stem,
        sections=sections,
        mesh_major=tuple(t for t in major if t),
        mesh_automatic=tuple(t for t in automatic if t),
        image_ids=image_ids,
    )
