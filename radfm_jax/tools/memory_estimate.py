"""A closed-form estimate of per-chip memory of a train step, to check XLA's memory analysis.

    per chip = 16 * P / state shards                parameters, gradients, Adam mu and nu (f32)
             + examples per chip * activations per example

Activations are what the backward pass reads, saved by the forward pass. With scanned layers
(model.scan_layers) the forward scan hands the backward scan every residual autodiff lists,
stacked over the layers, so each one is stored: the count below is JAX's own list
(`jax.ad_checkpoint.saved_residuals` of a Block; tests check it), with the three casts of one
LayerNorm output, one per q/k/v projection, counted once as XLA computes it once. Per example
and per pre-norm block of T tokens, width W, MLP width M, h heads, compute dtype of c bytes:

    2 LayerNorms (f32): 2x (the derivative of x**2 in the variance), x - mean
         and rsqrt(var + eps) * scale broadcast to T x W                      2 * 3 * T*W*4
    LayerNorm outputs in c, inputs of the q/k/v and first MLP matmuls         2 * T*W*c
    q, k, v and the attention output, input of the output projection         4 * T*W*c
    softmax: exp(logits) in f32 and the probabilities in c                    h*T*T*(4 + c)
    MLP: GELU's input and output (the matmuls' output and input) and, of its
         tanh approximation, 3x**2, tanh, 1 - tanh**2 and the cdf             6 * T*M*c

A masked (text) block also lists its masked logits and the broadcast mask; XLA drops them
(the backward pass needs neither). Each tower's final LayerNorm adds 3 * T*W*4.

A model.remat policy saves, per block, the block input (T*W*4) and some matmul outputs (full:
none; save_qkv_proj: q, k, v; dots_no_batch: q, k, v, the output projection and the first MLP
matmul; dots: those, q.k in f32 and probs.v); the backward pass recomputes the rest one block
at a time.

The backward pass of one block is one computation, where XLA recomputes the elementwise chains
(LayerNorm, GELU) inside their consumers instead of storing them; it materializes

    residual stream and LayerNorm outputs          2 * T*W*4 + 2 * T*W*c
    q, k, v, attention output                      4 * T*W*c
    softmax                                        h*T*T*(4 + c)
    MLP hidden before and after GELU               2 * T*M*c

once as the cotangents of these arrays (one of each shape), and once more as the recomputed
arrays themselves under a remat policy. The towers' backward passes run one after the other,
so this working set counts once, for the larger tower's block.

With gradient accumulation only one microbatch's activations are live.

Not modelled, measured against XLA:TPU for ViT-B/16 at 16 examples per chip
(benchmarks/aot_vit_b16_v5e.py): XLA:TPU stores arrays in (8, 128) tiles and chose layouts with
the 196 tokens as the minor dimension for most saved residuals, padding them to 256 (+30% on
those, about +15% on the total); each block's weights cast to c (sharded like the parameters),
FSDP's all-gathered layer weights and one layer's gradient before its reduce-scatter (tens of
MiB); the contrastive logits (per-chip batch x global batch in f32). The count assumes the
scan's residuals really are stored: with 2 or 4 scanned blocks XLA:TPU stored a third to a half
of them, and kept small models' working sets in on-chip memory (VMEM), outside HBM; unrolled
layers (scan_layers=False) also let XLA fuse across blocks.
"""

from __future__ import annotations

import dataclasses

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.train.flops import remat_policy

F32 = 4
OPTIMIZER_STATE_BYTES_PER_PARAM = 16  # f32 parameters, gradients, Adam mu and nu
LAYER_NORM_SAVED = 3  # f32 T*W arrays autodiff keeps per LayerNorm
GELU_SAVED = 6  # T*M arrays in the compute dtype autodiff keeps per (tanh-approximate) GELU MLP


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    state_bytes: float  # parameters, gradients and optimizer moments on one chip
    activation_bytes: float  # saved activations and one block's backward working set

    @property
    def total_bytes(self) -> float:
        return self.state_bytes + self.activation_bytes


def _softmax_bytes(tokens: int, heads: int, compute_bytes: int) -> float:
    return heads * tokens * tokens * (F32 + compute_bytes)


def block_residual_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int) -> float:
    """Per example: what autodiff saves of one block without remat (the module docstring's
    first table)."""
    t, w, m, c = tokens, width, mlp_dim, compute_bytes
    return (2 * LAYER_NORM_SAVED * t * w * F32 + 6 * t * w * c + _softmax_bytes(t, heads, c)
            + GELU_SAVED * t * m * c)


def block_saved_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int,
                      policy: str) -> float:
    """Per example: what one block keeps for the backward pass under a model.remat policy."""
    if policy == "none":
        return block_residual_bytes(tokens, width, mlp_dim, heads, compute_bytes)
    t, w, m, c = tokens, width, mlp_dim, compute_bytes
    saved_matmuls = {
        "full": 0.0,
        "save_qkv_proj": 3 * t * w * c,
        "dots_no_batch": 4 * t * w * c + t * m * c,
        "dots": 5 * t * w * c + t * m * c + heads * t * t * F32,
    }[policy]
    return t * w * F32 + saved_matmuls


def block_materialized_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int) -> float:
    """Per example: the arrays one block's fused computation materializes (the module
    docstring's second table); its backward pass holds their cotangents."""
    t, w, m, c = tokens, width, mlp_dim, compute_bytes
    return 2 * t * w * F32 + 6 * t * w * c + _softmax_bytes(t, heads, c) + 2 * t * m * c


@dataclasses.dataclass(frozen=True)
class _Tower:
    tokens: int
    width: int
    mlp_dim: int
    heads: int
    depth: int

    def saved_bytes(self, compute_bytes: int, policy: str) -> float:
        block = block_saved_bytes(self.tokens, self.width, self.mlp_dim, self.heads, compute_bytes, policy)
        final_norm = LAYER_NORM_SAVED * self.tokens * self.width * F32
        return self.depth * block + final_norm

    def materialized_bytes(self, compute_bytes: int) -> float:
        return block_materialized_bytes(self.tokens, self.width, self.mlp_dim, self.heads, compute_bytes)


def _towers(config: ExperimentConfig) -> tuple[_Tower, _Tower]:
    image, text = config.model.image, config.model.text
    image_tokens = (config.data.input_size // image.patch_size) ** 2 + (image.pool == "cls")
    return (
        _Tower(image_tokens, image.width, int(image.width * image.mlp_ratio), image.heads, image.depth),
        _Tower(config.data.max_text_len, text.width, int(text.width * text.mlp_ratio), text.heads, text.depth),
    )


def activation_bytes_per_example(config: ExperimentConfig) -> float:
    c = 2 if config.model.compute_dtype == "bfloat16" else F32
    policy = remat_policy(config.model.remat)
    towers = _towers(config)
    saved = sum(tower.saved_bytes(c, policy) for tower in towers)
    block = max(tower.materialized_bytes(c) for tower in towers)
    recomputed = 0.0 if policy == "none" else block
    return saved + block + recomputed  # + the cotangents of one block


def estimate_memory_per_chip(config: ExperimentConfig, num_params: int, state_shards: int,
                             batch_shards: int) -> MemoryEstimate:
    """`state_shards`: how many ways parameters are split (all chips under a full FSDP mesh,
    1 under data parallelism); `batch_shards`: how many ways the global batch is split."""
    live_examples = config.batch_size / batch_shards / config.optim.grad_accum_steps
    return MemoryEstimate(
        state_bytes=OPTIMIZER_STATE_BYTES_PER_PARAM * num_params / state_shards,
        activation_bytes=live_examples * activation_bytes_per_example(config),
    )
