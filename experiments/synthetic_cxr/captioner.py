"""Report generation: ViT encoder + cross-attending report decoder, teacher-forced; evaluated
by BLEU, ROUGE-L, clinical efficacy and a memorisation audit of greedy-decoded reports.
CapPa: --set objective.parallel_fraction=0.75.

    radfm train --config experiments/synthetic_cxr/captioner.py --workdir runs/captioner
    radfm train --config experiments/synthetic_cxr/captioner.py:smoke --workdir /tmp/captioner_smoke
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import generative_config  # noqa: E402


def get_config(arg: str = ""):
    return generative_config("caption", arg)
