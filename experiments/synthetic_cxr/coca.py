"""CoCa: contrastive (CLIP) and captioning losses in one model; evaluated by zero-shot
classification, retrieval and report generation.

    radfm train --config experiments/synthetic_cxr/coca.py --workdir runs/coca
    radfm train --config experiments/synthetic_cxr/coca.py:smoke --workdir /tmp/coca_smoke
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import generative_config  # noqa: E402


def get_config(arg: str = ""):
    return generative_config("coca", arg)
