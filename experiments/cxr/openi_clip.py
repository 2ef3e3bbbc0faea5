"""CLIP-style image-report pretraining on Open-i (IU X-ray) from your own copy.

    radfm train --config experiments/cxr/openi_clip.py --workdir runs/openi_clip \
        --set data.manual_dir=/path/to/openi        # holds ecgen-radiology/ and NLMCXR_png/
    radfm train --config experiments/cxr/openi_clip.py:smoke --workdir /tmp/openi_smoke \
        --set data.manual_dir=/path/to/openi

data.manual_dir is required for the first build (the prepared data set is then reused from
data.data_dir); without it the build stops with an error showing the expected layout. Labels
come from the rule-based report labeler. Open-i is small (about 7,400 images of 3,900
reports), so the real-CXR recipe runs for 2,000 steps (about 70 epochs) instead of 20,000.
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from real_cxr import real_cxr_clip  # noqa: E402


def get_config(arg: str = ""):
    config = real_cxr_clip("openi", arg)
    if arg == "":
        config = dataclasses.replace(config, total_steps=2_000, eval_every=500, checkpoint_every=500)
    return config
