"""CLIP-style image-report pretraining on MIMIC-CXR-JPG with MIMIC-CXR reports.

    radfm train --config experiments/cxr/mimic_clip.py --workdir runs/mimic_clip \
        --set data.manual_dir=/data/mimic-cxr-jpg/2.1.0
    radfm data check mimic_cxr --set data.manual_dir=/data/mimic-cxr-jpg/2.1.0 --set data.image_size=224
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from real_cxr import real_cxr_clip  # noqa: E402


def get_config(arg: str = ""):
    return real_cxr_clip("mimic_cxr", arg)
