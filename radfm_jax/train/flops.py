"""FLOPs of one train step: an analytic count for each objective's model (two-tower, MAE,
captioner, CoCa), and XLA's count read from a compiled executable.

The analytic count is *model* FLOPs (what MFU divides by): the matrix multiplications of the
forward pass (2 FLOPs per multiply-add), times 3 for forward + backward (the backward pass
computes the gradient with respect to both the input and the weights of every matmul, 2x the
forward). Two exceptions are counted exactly: the patch embedding needs no gradient with respect
to the images (2x, not 3x), and the token embedding is a gather (no FLOPs). Norms, softmax,
GELU and the optimizer update are left out; they are a few percent of the total at real sizes.

Recomputation is not model FLOPs: MFU does not count it (PaLM, Chowdhery et al. 2022,
appendix B). It is reported separately as `recompute` so that `hardware` (what the chips
execute) can be compared with XLA's count. Two features recompute: a model.remat policy redoes
part of each block's forward pass in the backward pass, and gradient accumulation of a
contrastive loss (GradCache) runs both towers' forward pass twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from radfm_jax.config.schema import ExperimentConfig, ImageTowerConfig, TextTowerConfig
from radfm_jax.models.mae import visible_count
from radfm_jax.parallel.chips import chip_for_device

IMAGE_CHANNELS = 1  # the ViT reads single-channel radiographs


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimizer step on the global batch."""

    forward: float  # forward pass of both towers and the contrastive logits
    model: float  # forward + backward: the numerator of MFU
    recompute: float  # forward matmuls run again by remat or GradCache (0 without either)

    @property
    def hardware(self) -> float:
        """What the chips execute: model FLOPs plus recomputed forward passes."""
        return self.model + self.recompute


def block_flops(tokens: int, width: int, mlp_dim: int) -> float:
    """Forward FLOPs of one pre-norm transformer block on one example.

    q, k, v and output projections 4 * 2*T*W*W; attention scores q.k and probs.v 2 * 2*T*T*W
    (heads x head_dim = W); MLP 2 * 2*T*W*M.
    """
    t, w, m = tokens, width, mlp_dim
    return 8 * t * w * w + 4 * t * t * w + 4 * t * w * m


def block_recompute_flops(tokens: int, width: int, mlp_dim: int, policy: str) -> float:
    """Forward FLOPs a block redoes in its backward pass under a model.remat policy.

    The backward pass needs every matmul's input, so a policy recomputes whatever of these it
    did not save; the second MLP matmul's output is needed by nothing (XLA drops it):
    full keeps the block input only: all but the second MLP matmul;
    save_qkv_proj keeps q, k, v: scores, output projection and first MLP matmul;
    dots_no_batch keeps matmuls without batch dimensions: the attention scores (q.k, probs.v);
    dots keeps every matmul output, and none keeps everything: nothing.
    """
    t, w, m = tokens, width, mlp_dim
    scores = 4 * t * t * w
    return {
        "none": 0.0,
        "dots": 0.0,
        "dots_no_batch": scores,
        "save_qkv_proj": 2 * t * w * w + scores + 2 * t * w * m,
        "full": 8 * t * w * w + scores + 2 * t * w * m,
    }[policy]


def _map_head_flops(tokens: int, width: int, mlp_dim: int) -> float:
    """Attention pooling: one probe query against all tokens, then an MLP on the probe."""
    t, w, m = tokens, width, mlp_dim
    projections = 2 * w * w + 2 * 2 * t * w * w + 2 * w * w  # query, key+value, output
    return projections + 4 * t * w + 4 * w * m


def image_tower_flops(cfg: ImageTowerConfig, image_size: int) -> tuple[float, float, float]:
    """(patch embedding, blocks, pooling head) forward FLOPs of the ViT on one example."""
    patches = (image_size // cfg.patch_size) ** 2
    tokens = patches + (cfg.pool == "cls")
    mlp_dim = int(cfg.width * cfg.mlp_ratio)
    patch_embed = 2 * patches * cfg.patch_size**2 * IMAGE_CHANNELS * cfg.width
    blocks = cfg.depth * block_flops(tokens, cfg.width, mlp_dim)
    head = _map_head_flops(tokens, cfg.width, mlp_dim) if cfg.pool == "map" else 0.0
    return float(patch_embed), float(blocks), float(head)


def text_tower_flops(cfg: TextTowerConfig, length: int) -> float:
    """Forward FLOPs of the text tower's blocks on one example of `length` tokens (padding
    included: it is computed and masked, not skipped). The embedding lookup is a gather."""
    return float(cfg.depth * block_flops(length, cfg.width, int(cfg.width * cfg.mlp_ratio)))


def remat_policy(remat: bool | str) -> str:
    """model.remat as a policy name (older configs' True / False mean "full" / "none")."""
    if isinstance(remat, bool):
        return "full" if remat else "none"
    return remat


def _remat_recompute_flops(config: ExperimentConfig) -> float:
    """Per example: what the model.remat policy recomputes in both towers' blocks."""
    image, text, policy = config.model.image, config.model.text, remat_policy(config.model.remat)
    image_tokens = (config.data.input_size // image.patch_size) ** 2 + (image.pool == "cls")
    return float(
        image.depth * block_recompute_flops(image_tokens, image.width, int(image.width * image.mlp_ratio), policy)
        + text.depth * block_recompute_flops(
            config.data.max_text_len, text.width, int(text.width * text.mlp_ratio), policy
        )
    )


def cross_attention_flops(queries: int, keys: int, width: int, context_width: int) -> float:
    """Forward FLOPs of cross-attention: q / out projections, k / v from the context, scores."""
    return 4 * queries * width * width + 4 * keys * context_width * width + 4 * queries * keys * width


def decoder_flops(config: ExperimentConfig, length: int, vocab_size: int) -> float:
    """Forward FLOPs of the report decoder on one example of `length` inputs: causal blocks
    (computed in full and masked), cross-attention in the multimodal blocks, vocabulary head."""
    dec, image = config.model.decoder, config.model.image
    image_tokens = (config.data.input_size // image.patch_size) ** 2 + (image.pool == "cls")
    mlp_dim = int(dec.width * dec.mlp_ratio)
    cross = (dec.depth - dec.unimodal_depth) * cross_attention_flops(length, image_tokens, dec.width, image.width)
    return float(dec.depth * block_flops(length, dec.width, mlp_dim) + cross + 2 * length * dec.width * vocab_size)


def _mae_step_flops(config: ExperimentConfig) -> StepFlops:
    image, dec, batch = config.model.image, config.model.mae_decoder, config.batch_size
    patches = (config.data.input_size // image.patch_size) ** 2
    keep = visible_count(patches, config.objective.mask_ratio)
    pixels = image.patch_size**2 * IMAGE_CHANNELS
    patch_embed = 2 * patches * pixels * image.width  # embeds every patch, then drops the hidden
    encoder = image.depth * block_flops(keep + (image.pool == "cls"), image.width, int(image.width * image.mlp_ratio))
    decoder = (2 * keep * image.width * dec.width + dec.depth * block_flops(patches, dec.width, int(dec.width * dec.mlp_ratio))
               + 2 * patches * dec.width * pixels)
    differentiable = batch * (encoder + decoder)
    recompute = 0.0 if remat_policy(config.model.remat) == "none" else float("nan")
    return StepFlops(forward=batch * patch_embed + differentiable, model=3 * differentiable + 2 * batch * patch_embed,
                     recompute=recompute)


def _generative_step_flops(config: ExperimentConfig, vocab_size: int) -> StepFlops:
    """Captioner (L decoder inputs) or CoCa (L + 1, plus the contrastive head and logits)."""
    model, batch = config.model, config.batch_size
    coca = config.objective.name == "coca"
    patch_embed, image_blocks, image_head = image_tower_flops(model.image, config.data.input_size)
    length = config.data.max_text_len + coca
    per_example = image_blocks + decoder_flops(config, length, vocab_size)
    logits = 0.0
    if coca:
        per_example += image_head + 2 * (model.image.width + model.decoder.width) * model.embed_dim
        logits = 2 * batch * batch * model.embed_dim
    differentiable = batch * per_example + logits
    recompute = 0.0 if remat_policy(model.remat) == "none" else float("nan")
    return StepFlops(forward=batch * patch_embed + differentiable, model=3 * differentiable + 2 * batch * patch_embed,
                     recompute=recompute)


def train_step_flops(config: ExperimentConfig, vocab_size: int | None = None) -> StepFlops:
    """Analytic FLOPs of one train step on `config.batch_size` examples. Generative objectives'
    vocabulary heads need the tokenizer's `vocab_size` (default: data.vocab_size). Remat
    recomputation is counted for the contrastive towers only (NaN otherwise)."""
    if config.objective.name == "mae":
        return _mae_step_flops(config)
    if config.objective.name in ("caption", "coca"):
        return _generative_step_flops(config, vocab_size or config.data.vocab_size)
    model, batch = config.model, config.batch_size
    patch_embed, image_blocks, image_head = image_tower_flops(model.image, config.data.input_size)
    text_blocks = text_tower_flops(model.text, config.data.max_text_len)
    projections = 2 * (model.image.width + model.text.width) * model.embed_dim
    logits = 2 * batch * batch * model.embed_dim  # every image against every text, f32
    blocks = batch * (image_blocks + text_blocks)
    differentiable = blocks + batch * (image_head + projections) + logits
    forward = batch * patch_embed + differentiable
    recompute = batch * _remat_recompute_flops(config)
    if config.optim.grad_accum_steps > 1:  # GradCache: an extra forward pass, without the loss
        recompute += forward - logits
    return StepFlops(forward=forward, model=3 * differentiable + 2 * batch * patch_embed, recompute=recompute)


def compiled_flops(compiled: Any) -> float | None:
    """XLA's FLOP count of a compiled executable, per device (`compiled.cost_analysis()`);
    None where the backend reports none.

    XLA counts every operation (elementwise ops and the optimizer too), so it is a little above
    the analytic count; but it counts the body of a loop once, so with model.scan_layers the
    blocks appear once, not `depth` times.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


class ThroughputMeter:
    """Throughput metrics of a logged step: examples/s per device, model and XLA FLOPs per step
    and, on a chip with a known peak, MFU = model FLOPs / (step time x devices x peak).

    Host-side arithmetic on the measured step time only: no device synchronisation. XLA's
    count is read once, from the executable the loop runs (`compiled_step.compiled`).
    """

    def __init__(self, config: ExperimentConfig, devices: list[Any], compiled_step: Any,
                 vocab_size: int | None = None):
        self._batch_size = config.batch_size
        self._num_devices = len(devices)
        self._model_flops = train_step_flops(config, vocab_size).model
        chip = chip_for_device(devices[0])
        self._peak = chip.peak_bf16_flops if chip else None
        self._compiled_step = compiled_step
        self._compiled_flops: float | None = None

    def metrics(self, step_time_s: float) -> dict[str, float]:
        if self._compiled_flops is None and self._compiled_step.compiled is not None:
            per_device = compiled_flops(self._compiled_step.compiled)
            self._compiled_flops = per_device * self._num_devices if per_device else None
        out = {
            "examples_per_sec_per_device": self._batch_size / step_time_s / self._num_devices,
            "model_flops_per_step": self._model_flops,
        }
        if self._compiled_flops is not None:
            out["compiled_flops_per_step"] = self._compiled_flops
        if self._peak:
            out["mfu"] = self._model_flops / (step_time_s * self._num_devices * self._peak)
        return out
