"""Reading and writing the tensor files published checkpoints come in, as NumPy arrays.

`.safetensors` files are read with safetensors' NumPy API (no PyTorch). PyTorch pickles
(`.bin`, `.pt`, `.pth`) need the optional `torch` extra and are loaded with
`weights_only=True`, so a pickle can never run code. A folder is read the way Hugging Face
lays one out: `model.safetensors`, a sharded `model.safetensors.index.json`, or
`pytorch_model.bin`; a Hugging Face cache folder (`models--org--name`) is read at its newest
snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from radfm_jax.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_FOLDER_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """The folder holding a checkpoint's files: `path` itself, the folder of a given file, or
    the newest snapshot of a Hugging Face cache folder (models--org--name)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: give a local file or folder (nothing is downloaded)")
    if path.is_file():
        return path.parent
    snapshots = path / "snapshots"
    if snapshots.is_dir() and not any((path / name).exists() for name in _FOLDER_FILES):
        found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
        if not found:
            raise CheckpointError(f"the Hugging Face cache folder {path} holds no snapshot")
        return found[-1]
    return path


def weights_file(path: str | os.PathLike) -> Path:
    """The tensor file of a checkpoint given as a file or a folder (checkpoint_folder)."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    folder = checkpoint_folder(given)
    for name in _FOLDER_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} holds none of {', '.join(_FOLDER_FILES)}; give the weights file itself")


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{name: array} of a checkpoint file or folder (see the module doc)."""
    file = weights_file(path)
    if file.name.endswith(".index.json"):
        shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        tensors: dict[str, np.ndarray] = {}
        for shard in shards:
            tensors.update(read_tensors(file.parent / shard))
        return tensors
    if file.suffix == ".safetensors":
        return _read_safetensors(file)
    if file.suffix in PICKLE_SUFFIXES:
        return _read_pickle(file)
    raise CheckpointError(f"{file}: unsupported weights file; use .safetensors (or a PyTorch "
                          f"{'/'.join(PICKLE_SUFFIXES)} pickle with the torch extra)")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(file)
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{file} is not a readable .safetensors file ({err}): it may be truncated "
                              "(an interrupted copy); copy it again") from None


def _read_pickle(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{file} is a PyTorch pickle: reading it needs PyTorch (pip install "
                              "'radfm_jax[torch]'), or convert it to .safetensors") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)  # never runs pickled code
    except Exception as err:  # torch raises many types for damaged or unsafe pickles
        raise CheckpointError(f"cannot read {file} as PyTorch weights ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a dict of tensors")
    return {name: tensor.detach().float().numpy() if tensor.dtype.is_floating_point else tensor.numpy()
            for name, tensor in state.items() if hasattr(tensor, "detach")}


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> Path:
    """Writes `tensors` (contiguous float32 / int arrays) to a new .safetensors file; never over
    an existing one."""
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists():
        raise CheckpointError(f"{path} exists; choose another output or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, path, metadata=metadata)
    return path
