"""CLIP-style image-report pretraining on Open-i (IU X-ray) from your own copy.

    radfm train --config experiments/cxr/openi_clip.py --workdir runs/openi_clip \
        --set data.manual_dir=/path/to/openi        # holds ecgen-radiology/ and NLMCXR_png/
    radfm train --config experiments/cxr/openi_clip.py:smoke --workdir /tmp/openi_smoke \
        --set data.manual_dir=/path/to/openi

data.manual_dir is required for the first build (the prepared data set is then reused from
data.data_dir); without it the build stops with an error showing the expected layout.
Open-i is small (about 7,400 images of 3,900 reports), so this is a fine-tuning-sized run:
a 128 px ViT and a short text tower, labels from the rule-based report labeler.
"""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "synthetic_cxr"))
from common import contrastive_config  # noqa: E402


def get_config(arg: str = ""):
    # The synthetic_cxr CLIP recipe (towers, optimiser, mesh), pointed at Open-i: larger images
    # and longer reports than the synthetic ones, and the findings + impression as the text.
    base = contrastive_config("clip", arg, init_temperature=10.0)
    smoke = arg == "smoke"
    size = 32 if smoke else 128
    data = dataclasses.replace(
        base.data, name="openi", manual_dir="", text_target="both", image_size=size,
        input_size=size, max_text_len=32 if smoke else 128, vocab_size=256 if smoke else 2048,
        augment=True, report_sentence_sampling=0.5, split_seed=0,
    )
    return dataclasses.replace(
        base, name="openi_clip" + ("_smoke" if smoke else ""), data=data,
        total_steps=base.total_steps if smoke else 2000,
    )
