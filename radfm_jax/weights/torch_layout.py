"""What every PyTorch transformer checkpoint shares, in NumPy: torch Linear weights <-> radfm_jax
dense kernels, a block's tensors <-> layers.Block's tree (by a table of the family's names),
per-layer trees <-> scanned stacks, and the patch embedding folded onto radfm_jax's image
normalisation (and back)."""

from __future__ import annotations

from typing import Any

import numpy as np

from radfm_jax.data.transforms import IMAGE_MEAN, IMAGE_STD
from radfm_jax.errors import CheckpointError, ConfigError

Params = dict[str, Any]

# layers.Block's parts -> a family's tensor names within one block (weight / bias appended;
# scale1 / scale2 are layer-scale vectors, named in full).
BLOCK_PARTS = ("query", "key", "value", "out", "fc1", "fc2", "norm1", "norm2")


def check_names(tensors: dict[str, np.ndarray], expected: list[str], source: str, model: str,
                ignored: tuple[str, ...] = ()) -> None:
    """A CheckpointError listing the first missing and unexpected tensors, if any; names
    starting with one of `ignored` (buffers, heads the tower leaves out) are neither."""
    missing = [name for name in expected if name not in tensors]
    extra = sorted(name for name in set(tensors) - set(expected) if not name.startswith(ignored))
    if missing or extra:
        lines = [f"missing: {name}" for name in missing[:6]] + [f"unexpected: {name}" for name in extra[:6]]
        more = len(missing) + len(extra) - len(lines)
        raise CheckpointError(
            f"{source} does not hold the {model} its config.json describes:\n  " + "\n  ".join(lines)
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nCheck num_hidden_layers / hidden_size in its config.json, or that the file is complete")


def linear_in(weight: np.ndarray, bias: np.ndarray | None, heads: int | None = None,
              out_heads: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """A torch Linear (out, in) as radfm_jax's dense kernel / bias: (in, heads, head_dim) when
    `out_heads`, (heads, head_dim, out) when its input is split in heads, else (in, out)."""
    kernel = weight.T
    if heads and out_heads:
        kernel = kernel.reshape(kernel.shape[0], heads, -1)
        bias = None if bias is None else bias.reshape(heads, -1)
    elif heads:
        kernel = kernel.reshape(heads, -1, kernel.shape[1])
    return kernel, bias


def block_tensor_names(names: dict[str, str], prefix: str) -> list[str]:
    """Every tensor of one block, by the family's `names` table."""
    listed = [f"{prefix}.{names[part]}.{kind}" for part in BLOCK_PARTS for kind in ("weight", "bias")]
    return listed + [f"{prefix}.{names[part]}" for part in ("scale1", "scale2") if part in names]


def block_in(get, prefix: str, heads: int, names: dict[str, str]) -> Params:
    """One block's tensors (read by `get(name)`) as layers.Block's tree. The key bias is
    dropped: it adds one constant to each query's logits, which the softmax ignores."""

    def linear(part: str, **kw) -> dict:
        kernel, bias = linear_in(get(f"{prefix}.{names[part]}.weight"), get(f"{prefix}.{names[part]}.bias"), **kw)
        return {"kernel": kernel, "bias": bias}

    def norm(part: str) -> dict:
        return {"scale": get(f"{prefix}.{names[part]}.weight"), "bias": get(f"{prefix}.{names[part]}.bias")}

    block = {
        "norm1": norm("norm1"), "norm2": norm("norm2"),
        "attn": {"query": linear("query", heads=heads, out_heads=True),
                 "key": {"kernel": linear("key", heads=heads, out_heads=True)["kernel"]},
                 "value": linear("value", heads=heads, out_heads=True),
                 "out": linear("out", heads=heads)},
        "mlp": {"fc1": linear("fc1"), "fc2": linear("fc2")},
    }
    for part in ("scale1", "scale2"):
        if part in names:
            block[part] = get(f"{prefix}.{names[part]}")
    return block


def block_out(block: Params, prefix: str, names: dict[str, str]) -> dict[str, np.ndarray]:
    """layers.Block's tree as the family's tensors (the key bias as zeros)."""
    attn, mlp = block["attn"], block["mlp"]
    out: dict[str, np.ndarray] = {}

    def linear(part: str, kernel: np.ndarray, bias: np.ndarray, *, split_in: bool = False) -> None:
        kernel = np.asarray(kernel)
        matrix = kernel.reshape(-1, kernel.shape[-1]) if split_in else kernel.reshape(kernel.shape[0], -1)
        out[f"{prefix}.{names[part]}.weight"] = matrix.T
        out[f"{prefix}.{names[part]}.bias"] = np.asarray(bias).reshape(-1)

    key = np.asarray(attn["key"]["kernel"])
    linear("query", attn["query"]["kernel"], attn["query"]["bias"])
    linear("key", key, np.zeros(key.shape[1:], np.float32))
    linear("value", attn["value"]["kernel"], attn["value"]["bias"])
    linear("out", attn["out"]["kernel"], attn["out"]["bias"], split_in=True)
    linear("fc1", mlp["fc1"]["kernel"], mlp["fc1"]["bias"])
    linear("fc2", mlp["fc2"]["kernel"], mlp["fc2"]["bias"])
    for part in ("norm1", "norm2"):
        out[f"{prefix}.{names[part]}.weight"] = np.asarray(block[part]["scale"])
        out[f"{prefix}.{names[part]}.bias"] = np.asarray(block[part]["bias"])
    for part in ("scale1", "scale2"):
        if part in names:
            out[f"{prefix}.{names[part]}"] = np.asarray(block[part])
    return out


def stack_layers(blocks: list[Params], scan_layers: bool) -> Params:
    """Per-layer trees as the model holds them: one tree with a leading layers axis (scanned)
    or {index: tree} (unrolled)."""
    if not scan_layers:
        return dict(enumerate(blocks))
    import jax

    return jax.tree.map(lambda *leaves: np.stack(leaves), *blocks)


def unstack_layers(layers: Params, depth: int) -> list[Params]:
    import jax

    if all(isinstance(key, int) or str(key).isdigit() for key in layers):
        return [layers[index] if index in layers else layers[str(index)] for index in range(depth)]
    return [jax.tree.map(lambda leaf, i=index: np.asarray(leaf)[i], layers) for index in range(depth)]


def image_normalisation(preprocessor: dict | None, default_mean, default_std) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean / std the checkpoint's images were normalised with: its
    preprocessor_config.json's, else the family's default."""
    pre = preprocessor or {}
    return (np.asarray(pre.get("image_mean", default_mean), np.float64),
            np.asarray(pre.get("image_std", default_std), np.float64))


def fold_patch_embedding(conv: np.ndarray, conv_bias: np.ndarray | None, channels: int, mean: np.ndarray,
                         std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A patch conv (width, C, p, p) on per-channel normalised RGB -> radfm_jax's (p * p *
    channels, width) kernel and (width,) bias on its own normalisation, x01 = IMAGE_STD * u +
    IMAGE_MEAN. One channel: the kernel is summed over RGB, which is the conv of the gray image
    copied to every channel."""
    width, source_channels, p, _ = conv.shape
    if channels not in (1, source_channels):
        raise ConfigError(f"the checkpoint's images have {source_channels} channels; this config gives {channels} "
                          "(data.windows): use 1 (grayscale, folded from RGB) or the same number")
    if mean.shape != (source_channels,) or std.shape != (source_channels,):
        raise CheckpointError(f"image_mean / image_std have {mean.shape[0]} / {std.shape[0]} values for "
                              f"{source_channels} channels")
    w = conv.astype(np.float64).transpose(2, 3, 1, 0)  # (p, p, C, width)
    kernel = IMAGE_STD * w / std[:, None]
    bias = np.einsum("c,pqcw->w", (IMAGE_MEAN - mean) / std, w)
    if conv_bias is not None:
        bias = bias + conv_bias
    if channels == 1:
        kernel = kernel.sum(axis=2, keepdims=True)
    return kernel.reshape(p * p * channels, width).astype(np.float32), bias.astype(np.float32)


def unfold_patch_embedding(kernel: np.ndarray, bias: np.ndarray, patch: int, channels: int, mean: np.ndarray,
                           std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fold_patch_embedding's inverse onto an RGB conv without bias: (conv (width, 3, p, p),
    the constant every patch token gains, which the caller adds to the patch positions). One
    channel is spread evenly over RGB."""
    width = kernel.shape[-1]
    k = np.asarray(kernel, np.float64).reshape(patch, patch, channels, width)
    if channels == 1:
        k = np.repeat(k / len(mean), len(mean), axis=2)
    conv = k * std[:, None] / IMAGE_STD
    constant = np.asarray(bias, np.float64) + np.einsum("c,pqcw->w", (mean - IMAGE_MEAN) / IMAGE_STD, k)
    return conv.transpose(3, 2, 0, 1), constant
