"""Time to import a ViT-B/16 CLIP (Hugging Face CLIPModel layout, 150 M parameters) from a local
.safetensors without PyTorch: read the file, convert to radfm_jax's tree, build the model and put
the weights in it.

The checkpoint is made first by transformers with random weights (needs torch and transformers:
the test extra); the timed import runs in a fresh process where `import torch` fails.

    python benchmarks/weights_import.py --out benchmarks/results/weights_import_vit_b16.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_TIMED = r"""
import sys, time, json
sys.modules["torch"] = None  # as on a machine without PyTorch
start = time.perf_counter()
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.weights.published import config_overrides, load_published
from flax import nnx
from radfm_jax.models.two_tower import TwoTower
imported = time.perf_counter()
folder = sys.argv[1]
config = apply_overrides(ExperimentConfig(), config_overrides(folder))
params = load_published(folder, channels=1, scan_layers=True, max_text_len=config.data.max_text_len,
                            input_size=config.data.input_size)
converted = time.perf_counter()
size = config.data.input_size
# Abstract (no random initialisation), then the imported arrays put in.
model = nnx.eval_shape(lambda: TwoTower(config.model, params["text"]["token_emb"]["embedding"].shape[0],
                                        config.data.max_text_len, (size, size), nnx.Rngs(0)))
graphdef, state = nnx.split(model, nnx.Param)
nnx.replace_by_pure_dict(state, params)
model = nnx.merge(graphdef, state)
done = time.perf_counter()
print(json.dumps({"python_imports_s": imported - start, "read_and_convert_s": converted - imported,
                  "build_and_load_model_s": done - converted, "total_s": done - start,
                  "parameters": sum(x.size for x in __import__("jax").tree.leaves(params))}))
"""


def make_checkpoint(folder: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16),
        projection_dim=512)
    transformers.CLIPModel(config).save_pretrained(folder, safe_serialization=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp))
        size_mb = (Path(tmp) / "model.safetensors").stat().st_size / 2**20
        result = subprocess.run([sys.executable, "-c", _TIMED, tmp], capture_output=True, text=True, check=True,
                                env={"JAX_PLATFORMS": "cpu", **__import__("os").environ})
    figures = {"model": "ViT-B/16 CLIP (Hugging Face CLIPModel layout)", "file_mb": round(size_mb, 1),
               **json.loads(result.stdout.strip().splitlines()[-1])}
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
