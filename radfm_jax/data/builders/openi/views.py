"""Open-i views from the projections table of the Kaggle copy of the IU X-ray collection.

The NLM release (ecgen-radiology XML + NLMCXR_png) records no view. Kaggle's copy ships
indiana_projections.csv (uid, filename, projection) with "Frontal" or "Lateral" per image,
its files named differently from NLM's:

    NLM <parentImage id> / PNG    CXR1_1_IM-0001-4001(.png)   CXR2_IM-0652-1001(.png)
    Kaggle filename               1_IM-0001-4001.dcm.png      2_IM-0652-1001.dcm.png

so both are matched by `image_key`: the report number and the image's own name.
"""

from __future__ import annotations

import re
from pathlib import Path

from radfm_jax.data.builders.manual_folder import read_csv_rows
from radfm_jax.data.builders.skips import UNPARSEABLE_ROW, SkipLog

PROJECTIONS_CSV = "indiana_projections.csv"
COL_FILENAME = "filename"
COL_PROJECTION = "projection"
# The view vocabulary of the other builders: CheXpert's frontal image without AP / PA is FRONTAL.
PROJECTION_VIEWS = {"frontal": "FRONTAL", "lateral": "LATERAL"}
OPENI_VIEWS: tuple[str, ...] = tuple(PROJECTION_VIEWS.values())
UNKNOWN_VIEW = "unknown"  # no table, or an image the table does not list

# [CXR]<report number>_[<NLM's sub-study number>_]<image name>; Kaggle's names lack the
# sub-study number that NLM's carry for some reports ("CXR1_1_IM-..." is Kaggle's "1_IM-...").
_NAME = re.compile(r"^(?:CXR)?(\d+)_(?:\d+_)?(.+)$", re.IGNORECASE)
_EXTENSIONS = (".png", ".dcm")


def image_key(name: str) -> str:
    """The key an NLM image id / PNG name and a Kaggle file name of the same image share:
    "CXR1_1_IM-0001-4001.png" and "1_IM-0001-4001.dcm.png" -> "1/IM-0001-4001"."""
    stem = name.strip()
    while stem.lower().endswith(_EXTENSIONS):
        stem = stem[:-4]
    match = _NAME.match(stem)
    return f"{match[1]}/{match[2].upper()}" if match else stem.upper()


def read_projections(path: Path, dataset: str, skips: SkipLog) -> dict[str, str]:
    """{image_key: "FRONTAL" | "LATERAL"} from a projections table; a row with no file name or
    another projection is skipped as unparseable."""
    views = {}
    for line, row in enumerate(read_csv_rows(path, dataset, [COL_FILENAME, COL_PROJECTION]), start=2):
        filename, projection = ((row[c] or "").strip() for c in (COL_FILENAME, COL_PROJECTION))
        view = PROJECTION_VIEWS.get(projection.lower())
        if view is None or not filename:
            skips.skip(UNPARSEABLE_ROW, f"{path.name}:{line}", f"filename {filename!r}, projection "
                       f"{projection!r}: expected a file name and Frontal or Lateral")
            continue
        views[image_key(filename)] = view
    return views
