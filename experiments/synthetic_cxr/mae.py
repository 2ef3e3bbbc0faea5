"""Masked image modelling (MAE) on synthetic_cxr images; evaluated by a linear probe on frozen
encoder features.

    radfm train --config experiments/synthetic_cxr/mae.py --workdir runs/mae
    radfm train --config experiments/synthetic_cxr/mae.py:smoke --workdir /tmp/mae_smoke
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import generative_config  # noqa: E402


def get_config(arg: str = ""):
    return generative_config("mae", arg)
