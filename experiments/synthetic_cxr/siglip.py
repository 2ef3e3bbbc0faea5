"""SigLIP-style (pairwise sigmoid) image-report pretraining on synthetic_cxr.

    radfm train --config experiments/synthetic_cxr/siglip.py --workdir runs/siglip
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import contrastive_config  # noqa: E402


def get_config(arg: str = ""):
    # SigLIP's initialisation: logit scale 10, bias -10.
    return contrastive_config("siglip", arg, init_temperature=10.0, init_bias=-10.0)
