"""CLIP-style image-report pretraining on CheXpert Plus (CheXpert images + reports).

    radfm train --config experiments/cxr/chexpert_plus_clip.py --workdir runs/chexpert_plus_clip \
        --set data.manual_dir=/data/chexpert_plus
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from real_cxr import real_cxr_clip  # noqa: E402


def get_config(arg: str = ""):
    return real_cxr_clip("chexpert_plus", arg)

