"""`radfm weights export`: a radfm_jax workdir's two-tower model (or its image tower) as a
Hugging Face CLIPModel folder: model.safetensors, config.json, preprocessor_config.json and the
run's tokenizer.json when it used one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from radfm_jax.data.tokenizer import EOS_ID
from radfm_jax.errors import ConfigError
from radfm_jax.objectives.base import image_channels
from radfm_jax.train.paths import workdir_path
from radfm_jax.train.pretrained import checkpoint_step, read_params
from radfm_jax.train.workdir import read_config
from radfm_jax.weights.hf_clip import export_clip
from radfm_jax.weights.tensor_files import write_safetensors

TWO_TOWER_KEYS = {"image", "text", "image_proj", "text_proj", "log_logit_scale", "logit_bias"}


def export_workdir(workdir: str | os.PathLike, out: str | os.PathLike, *, step: int = 0,
                   image_only: bool = False) -> Path:
    """Writes the folder `out` (new or empty) from the workdir's checkpoint at `step` (0 = latest)."""
    workdir = workdir_path(workdir)
    config = read_config(workdir)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; choose another --out")
    step = checkpoint_step(workdir, config, step)
    params = read_params(workdir, step)
    if set(params) != TWO_TOWER_KEYS:
        raise ConfigError(f"{workdir} trained objective.name='{config.objective.name}', not a two-tower model; "
                          "radfm weights export reads clip and siglip workdirs")
    eos_id = EOS_ID
    if config.data.tokenizer_file:
        from radfm_jax.data.hf_tokenizer import HFTokenizer

        eos_id = HFTokenizer.load(config.data.tokenizer_file).eos_id
    tensors, hf_config, preprocessor = export_clip(
        params, config.model, image_size=config.data.input_size, channels=image_channels(config), eos_id=eos_id,
        vocab_size=int(params["text"]["token_emb"]["embedding"].shape[0]), image_only=image_only)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", tensors,
                      metadata={"format": "pt", "radfm_jax_workdir": str(workdir), "step": str(step)})
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    if config.data.tokenizer_file and not image_only:
        source = Path(config.data.tokenizer_file).expanduser()
        shutil.copyfile(source / "tokenizer.json" if source.is_dir() else source, out / "tokenizer.json")
    return out
