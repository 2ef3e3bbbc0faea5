"""CLIP-style (softmax, symmetric InfoNCE) image-report pretraining on synthetic_cxr.

    radfm train --config experiments/synthetic_cxr/clip.py --workdir runs/clip
    radfm train --config experiments/synthetic_cxr/clip.py:smoke --workdir /tmp/smoke
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import contrastive_config  # noqa: E402


def get_config(arg: str = ""):
    return contrastive_config("clip", arg, init_temperature=10.0)
