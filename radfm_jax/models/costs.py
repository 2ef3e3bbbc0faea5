"""Closed-form costs of a stack of pre-norm transformer blocks: forward FLOPs, what a remat
policy recomputes, the activation bytes the backward pass reads. Towers describe themselves as
`BlockStack`s and objectives add them up (objectives/base.py), so FLOPs (MFU) and the memory
estimate (`radfm compile`) cover every objective and tower the same way.

FLOPs are matrix multiplications only, 2 per multiply-add; norms, softmax and GELU are a few
percent at real sizes and left out.

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
(the backward pass needs neither). Each stack's final LayerNorm adds 3 * T*W*4. A decoder block
that cross-attends to Tc context tokens adds a third LayerNorm (3 * T*W*4 and its output in
c), its query and output (2 * T*W*c), the keys and values of the context (2 * Tc*W*c) and a
softmax of h*T*Tc*(4 + c).

A stack of ONE block without remat is different: XLA removes a scan of one iteration and,
in straight-line code, fuses the elementwise chains (LayerNorm, GELU's tanh terms) into their
consumers, as in the backward pass below, and keeps the arrays that pass between matmuls,
the softmax probabilities and the residual stream: the backward working set below (a decoder
block's cross-attention also keeps its input residual stream, T*W*4, and LayerNorm output,
T*W*c) and the final LayerNorm (XLA:CPU measured: smoke MAE decoder, CoCa's unimodal and
multimodal stacks of one block each).

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
arrays themselves under a remat policy. Towers' backward passes run one after the other, so
this working set counts once, for the largest block.

3D towers (models/vit3d.py) count the same terms per remat unit of the encoder's scan. Every
term is per half block: an attention half (LayerNorm, its output, q, k, v, attention output,
softmax) and an MLP half (LayerNorm, its output, the hidden layer). A block that attends within
`sequences` runs of T tokens (slices, slabs) counts its softmax per run, h*T*T per run, and
its other terms over all sequences*T tokens. A factorised (divided) block adds a second
attention half along depth, with its own softmax of h*S*S per (h, w) position; the block is
one remat unit: one saved input, one working set holding both softmaxes. A local_global group
(slab layers and one global layer) is one remat unit: under a remat policy it saves one input;
its backward's working set is counted as the largest block's, as for other stacks (with the
slab layers' recomputed working sets added beside the global layer's, XLA:CPU's activations
were 0.88 and XLA:TPU's 0.70 of the count: XLA holds less of them). Counting a factorised layer as separate
spatial and depth blocks instead (each with its own saved input and a working set of one slice)
undercounts CT-CLIP's 13,824-token volume 2.6-fold: one slice's working set is 1/24 of the
layer's (XLA:TPU, benchmarks/aot_ct_clip.py: 1.06 x the estimate here, 2.6 x the old count).

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

F32 = 4
LAYER_NORM_SAVED = 3  # f32 T*W arrays autodiff keeps per LayerNorm
GELU_SAVED = 6  # T*M arrays in the compute dtype autodiff keeps per (tanh-approximate) GELU MLP


def block_flops(tokens: int, width: int, mlp_dim: int) -> float:
    """Forward FLOPs of one pre-norm transformer block on one example.

    q, k, v and output projections 4 * 2*T*W*W; attention scores q.k and probs.v 2 * 2*T*T*W
    (heads x head_dim = W); MLP 2 * 2*T*W*M.
    """
    t, w, m = tokens, width, mlp_dim
    return 8 * t * w * w + 4 * t * t * w + 4 * t * w * m


def cross_attention_flops(queries: int, keys: int, width: int, context_width: int) -> float:
    """Forward FLOPs of cross-attention: q / out projections, k / v from the context, scores."""
    return 4 * queries * width * width + 4 * keys * context_width * width + 4 * queries * keys * width


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


def map_head_flops(tokens: int, width: int, mlp_dim: int) -> float:
    """Attention pooling: one probe query against all tokens, then an MLP on the probe."""
    t, w, m = tokens, width, mlp_dim
    projections = 2 * w * w + 2 * 2 * t * w * w + 2 * w * w  # query, key+value, output
    return projections + 4 * t * w + 4 * w * m


def softmax_bytes(queries: int, keys: int, heads: int, compute_bytes: int) -> float:
    return heads * queries * keys * (F32 + compute_bytes)


# A block is an attention half (LayerNorm, q/k/v/output projections, softmax) and an MLP half
# (LayerNorm, two matmuls); the byte counts below are per half, so a divided (factorised)
# block, which has a second attention half, is counted from the same terms.


def attention_residual_bytes(tokens: int, width: int, heads: int, compute_bytes: int) -> float:
    """Per example: what autodiff saves of one attention half without remat: its LayerNorm,
    the LayerNorm's output, q, k, v, the attention output, the softmax."""
    t, w, c = tokens, width, compute_bytes
    return LAYER_NORM_SAVED * t * w * F32 + 5 * t * w * c + softmax_bytes(t, t, heads, c)


def mlp_residual_bytes(tokens: int, width: int, mlp_dim: int, compute_bytes: int) -> float:
    """Per example: what autodiff saves of one MLP half without remat: its LayerNorm, the
    LayerNorm's output, GELU's terms."""
    t, w, m, c = tokens, width, mlp_dim, compute_bytes
    return LAYER_NORM_SAVED * t * w * F32 + t * w * c + GELU_SAVED * t * m * c


def block_residual_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int) -> float:
    """Per example: what autodiff saves of one block without remat (the module docstring's
    first table)."""
    return (attention_residual_bytes(tokens, width, heads, compute_bytes)
            + mlp_residual_bytes(tokens, width, mlp_dim, compute_bytes))


def attention_policy_bytes(tokens: int, width: int, heads: int, compute_bytes: int, policy: str) -> float:
    """Per example: the matmul outputs of one attention half a remat policy saves."""
    t, w, c = tokens, width, compute_bytes
    return {
        "full": 0.0,
        "save_qkv_proj": 3 * t * w * c,
        "dots_no_batch": 4 * t * w * c,
        "dots": 5 * t * w * c + heads * t * t * F32,
    }[policy]


def mlp_policy_bytes(tokens: int, mlp_dim: int, compute_bytes: int, policy: str) -> float:
    """Per example: the matmul output of one MLP half a remat policy saves (the first)."""
    return tokens * mlp_dim * compute_bytes if policy in ("dots_no_batch", "dots") else 0.0


def block_saved_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int,
                      policy: str) -> float:
    """Per example: what one block keeps for the backward pass under a model.remat policy."""
    if policy == "none":
        return block_residual_bytes(tokens, width, mlp_dim, heads, compute_bytes)
    return (tokens * width * F32 + attention_policy_bytes(tokens, width, heads, compute_bytes, policy)
            + mlp_policy_bytes(tokens, mlp_dim, compute_bytes, policy))


def attention_materialized_bytes(tokens: int, width: int, heads: int, compute_bytes: int) -> float:
    """Per example: what one attention half's fused backward materializes: its residual
    stream, LayerNorm output, q, k, v, attention output and softmax."""
    t, w, c = tokens, width, compute_bytes
    return t * w * F32 + 5 * t * w * c + softmax_bytes(t, t, heads, c)


def mlp_materialized_bytes(tokens: int, width: int, mlp_dim: int, compute_bytes: int) -> float:
    """Per example: what one MLP half's fused backward materializes: its residual stream,
    LayerNorm output and the hidden layer before and after GELU."""
    t, w, m, c = tokens, width, mlp_dim, compute_bytes
    return t * w * F32 + t * w * c + 2 * t * m * c


def block_materialized_bytes(tokens: int, width: int, mlp_dim: int, heads: int, compute_bytes: int) -> float:
    """Per example: the arrays one block's fused computation materializes (the module
    docstring's second table); its backward pass holds their cotangents."""
    return (attention_materialized_bytes(tokens, width, heads, compute_bytes)
            + mlp_materialized_bytes(tokens, width, mlp_dim, compute_bytes))


def cross_attention_saved_bytes(tokens: int, context_tokens: int, width: int, heads: int,
                                compute_bytes: int, policy: str) -> float:
    """Per example: what a decoder block's cross-attention adds to what the block keeps."""
    t, tc, w, c = tokens, context_tokens, width, compute_bytes
    if policy == "none":
        return (LAYER_NORM_SAVED * t * w * F32 + t * w * c + 2 * t * w * c + 2 * tc * w * c
                + softmax_bytes(t, tc, heads, c))
    return {
        "full": 0.0,
        "save_qkv_proj": t * w * c + 2 * tc * w * c,
        "dots_no_batch": 2 * t * w * c + 2 * tc * w * c,
        "dots": 3 * t * w * c + 2 * tc * w * c + heads * t * tc * F32,
    }[policy]


@dataclasses.dataclass(frozen=True)
class BlockStack:
    """`depth` pre-norm blocks over `tokens` tokens of `width` (MLP width `mlp_dim`, `heads`
    heads) and a final LayerNorm; decoder blocks also cross-attend to `context_tokens` tokens
    of `context_width`. What a tower tells objectives about its cost.

    3D layouts (models/vit3d.py): each block attends within `sequences` independent runs of
    `tokens` tokens per example (slices, slabs), its LayerNorms and MLP run over all of them;
    a `divided` block (TimeSformer's factorised attention) then attends across the runs at
    each of the `tokens` positions (`sequences` tokens each) with its own LayerNorm, before
    its MLP: one remat unit, so one saved input per block, and one backward working set that
    holds both attentions. `group_layers` > 0: these blocks run inside the remat units of the
    next stack, `group_layers` of them per unit (local_global's slab layers, scanned in groups
    with one global layer): under a remat policy they save no input of their own (the unit
    saves one), and they add no final LayerNorm.
    """

    tokens: int
    width: int
    mlp_dim: int
    heads: int
    depth: int
    context_tokens: int = 0
    context_width: int = 0
    sequences: int = 1
    divided: bool = False
    group_layers: int = 0

    @property
    def _cross(self) -> bool:
        return self.context_tokens > 0

    @property
    def total_tokens(self) -> int:
        """Tokens per example a block's LayerNorms and MLP see."""
        return self.sequences * self.tokens

    def forward_flops(self) -> float:
        """Per example, forward, every block."""
        block = self.sequences * block_flops(self.tokens, self.width, self.mlp_dim)
        if self.divided:  # an attention half (no MLP) over each position's `sequences` tokens
            block += self.tokens * block_flops(self.sequences, self.width, 0)
        if self._cross:
            block += cross_attention_flops(self.tokens, self.context_tokens, self.width, self.context_width)
        return float(self.depth * block)

    def recompute_flops(self, policy: str) -> float:
        """Per example: forward FLOPs the blocks redo in the backward pass under `policy`.
        Cross-attention redoes what the policy did not save of its query, scores, probs.v and
        output projection; the context's keys and values are not recomputed (XLA:CPU measured:
        they depend on the context alone, not on the block's residual stream)."""
        block = self.sequences * block_recompute_flops(self.tokens, self.width, self.mlp_dim, policy)
        if self.divided:
            block += self.tokens * block_recompute_flops(self.sequences, self.width, 0, policy)
        if self._cross and policy != "none":
            t, tc, w = self.tokens, self.context_tokens, self.width
            block += {"dots": 0.0, "dots_no_batch": 4 * t * tc * w,
                      "save_qkv_proj": 2 * t * w * w + 4 * t * tc * w,
                      "full": 4 * t * w * w + 4 * t * tc * w}[policy]
        return float(self.depth * block)

    def saved_bytes(self, compute_bytes: int, policy: str) -> float:
        """Per example: what the blocks and the final LayerNorm keep for the backward pass."""
        c, t, s, w = compute_bytes, self.tokens, self.sequences, self.width
        final_norm = 0.0 if self.group_layers else LAYER_NORM_SAVED * self.total_tokens * w * F32
        if self.depth == 1 and policy == "none":  # straight-line code to XLA (module docstring)
            return self._lone_block_bytes(c) + final_norm
        if policy == "none":
            block = s * block_residual_bytes(t, w, self.mlp_dim, self.heads, c)
            if self.divided:
                block += t * attention_residual_bytes(s, w, self.heads, c)
        else:
            block = s * (attention_policy_bytes(t, w, self.heads, c, policy)
                         + mlp_policy_bytes(t, self.mlp_dim, c, policy))
            if self.divided:
                block += t * attention_policy_bytes(s, w, self.heads, c, policy)
            if not self.group_layers:  # the remat unit's input
                block += self.total_tokens * w * F32
        if self._cross:
            block += cross_attention_saved_bytes(t, self.context_tokens, w, self.heads, c, policy)
        return self.depth * block + final_norm

    def _lone_block_bytes(self, compute_bytes: int) -> float:
        """Per example: what a stack of one block without remat keeps (module docstring): its
        backward working set, and a cross-attention's input residual stream and LayerNorm output."""
        block = self.materialized_bytes(compute_bytes)
        if self._cross:
            block += self.tokens * self.width * (F32 + compute_bytes)
        return block

    def materialized_bytes(self, compute_bytes: int) -> float:
        """Per example: one block's backward working set (module docstring, second table)."""
        c, t, s, w = compute_bytes, self.tokens, self.sequences, self.width
        block = s * block_materialized_bytes(t, w, self.mlp_dim, self.heads, c)
        if self.divided:
            block += t * attention_materialized_bytes(s, w, self.heads, c)
        if self._cross:
            tc = self.context_tokens
            block += 2 * t * w * c + 2 * tc * w * c + softmax_bytes(t, tc, self.heads, c)
        return block


@dataclasses.dataclass(frozen=True)
class TowerCosts:
    """A tower's forward cost per example: matmuls on its raw input (a patch embedding, whose
    backward needs no input gradient), its transformer stacks, and heads on top (pooling, a
    vocabulary projection); `width` is the width of the states it outputs."""

    width: int
    input_flops: float
    stacks: tuple[BlockStack, ...]
    head_flops: float = 0.0

    @property
    def blocks_flops(self) -> float:
        return sum(stack.forward_flops() for stack in self.stacks)

    def recompute_flops(self, policy: str) -> float:
        return sum(stack.recompute_flops(policy) for stack in self.stacks)


def block_params(width: int, mlp_dim: int, context_width: int = 0) -> int:
    """Parameters of one pre-norm block (two LayerNorms; attention with biases on the query,
    value and output projections, none on the key; a two-layer MLP); with cross-attention to
    tokens `context_width` wide, its LayerNorm and projections too."""
    w, m = width, mlp_dim
    params = 2 * 2 * w + (4 * w * w + 3 * w) + (2 * w * m + m + w)
    if context_width:
        params += 2 * w + 2 * w * w + 2 * context_width * w + 3 * w
    return params
