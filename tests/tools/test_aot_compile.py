"""`radfm compile`: the real train step compiled on abstract inputs; XLA's per-chip memory
against the closed-form estimate of tools/memory_estimate.py."""

import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from radfm_jax.cli import main
from radfm_jax.config import presets
from radfm_jax.config.schema import (
    DataConfig,
    ExperimentConfig,
    MeshConfig,
    ModelConfig,
)
from radfm_jax.config.overrides import with_fields
from radfm_jax.models.costs import block_saved_bytes, cross_attention_saved_bytes
from radfm_jax.models.decoder import DecoderBlock, TextDecoderConfig, causal_mask
from radfm_jax.models.layers import Transformer
from radfm_jax.models.pixel_decoder import PixelDecoderConfig
from radfm_jax.objectives.caption import CaptionConfig
from radfm_jax.objectives.coca import CocaConfig
from radfm_jax.objectives.mae import MaeConfig
from radfm_jax.tools.aot_compile import compile_train_step, format_report

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None



def _leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The first two sizes other than 1 (jax.nn's attention keeps its softmax as
    (layers, 1, batch, ...))."""
    return tuple(size for size in shape if size != 1)[:2]

def _tiny(rules: str, width: int = 64, remat: str = "full", **mesh) -> ExperimentConfig:
    # Activations dominate (64 examples per device): the regime the estimate is for.
    return ExperimentConfig(
        batch_size=512,
        data=DataConfig(input_size=32, max_text_len=16, vocab_size=128),
        model=ModelConfig(
            image=presets.vit("Ti", 8, width=width, depth=2, heads=2),
            text=presets.text("Ti", width=width, depth=2, heads=2),
            embed_dim=32, remat=remat,
        ),
        mesh=MeshConfig(rules=rules, **mesh),
    )


@pytest.mark.parametrize("dtype, compute_bytes", [(jnp.float32, 4), (jnp.bfloat16, 2)])
@pytest.mark.parametrize("policy", ["none", "full", "save_qkv_proj", "dots_no_batch", "dots"])
def test_saved_block_bytes_are_what_the_forward_scan_hands_the_backward_scan(policy, dtype, compute_bytes):
    # The reference is JAX's own autodiff of scanned blocks: the stacked (depth, batch, ...)
    # outputs of the forward scan in the jaxpr of the gradient, which XLA must store.
    tokens, width, mlp_dim, heads, batch, depth = 16, 64, 256, 2, 3, 4
    model = Transformer(width, depth, heads, mlp_dim, dtype=dtype, scan_layers=True, remat=policy,
                        rngs=nnx.Rngs(0))
    graph, state = nnx.split(model)
    x = jnp.ones((batch, tokens, width), jnp.float32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda s, x: nnx.merge(graph, s)(x).sum()))(state, x)
    forward_scan = next(e for e in jaxpr.eqns if e.primitive.name == "scan")
    per_example = [v.aval for v in forward_scan.outvars if _leading(v.aval.shape) == (depth, batch)]
    # Per-token statistics (LayerNorm's mean and rsqrt, softmax's sum: one number per token and
    # head) are left out of the closed form, 1/W of the rest.
    saved = [a for a in per_example if a.size > depth * batch * heads * tokens]
    jax_bytes = sum(a.size * a.dtype.itemsize for a in saved) / (depth * batch)
    if policy == "none" and compute_bytes < 4:
        # The jaxpr casts the first LayerNorm's output once per q, k, v projection; XLA merges
        # the three identical casts, the closed form counts one.
        jax_bytes -= 2 * tokens * width * compute_bytes
    assert block_saved_bytes(tokens, width, mlp_dim, heads, compute_bytes, policy) == jax_bytes


def _saved_per_example(model, graph_args, depth: int, batch: int, heads: int, tokens: int) -> float:
    """Bytes per example and block of the stacked (depth, batch, ...) outputs of the forward
    scan in the jaxpr of the gradient: what XLA must store for the backward scan. Per-token
    statistics (LayerNorm's mean and rsqrt, softmax's sum) are left out of the closed form."""
    graph, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(jax.grad(lambda s, *args: nnx.merge(graph, s)(*args).sum()))(state, *graph_args)
    forward_scan = next(e for e in jaxpr.eqns if e.primitive.name == "scan")
    per_example = [v.aval for v in forward_scan.outvars if _leading(v.aval.shape) == (depth, batch)]
    saved = [a for a in per_example if a.size > depth * batch * heads * tokens]
    return sum(a.size * a.dtype.itemsize for a in saved) / (depth * batch)


@pytest.mark.parametrize("dtype, compute_bytes", [(jnp.float32, 4), (jnp.bfloat16, 2)])
@pytest.mark.parametrize("policy", ["none", "full", "save_qkv_proj", "dots_no_batch", "dots"])
def test_saved_decoder_block_bytes_add_what_cross_attention_keeps(policy, dtype, compute_bytes):
    # Report-decoder blocks: causal self-attention, cross-attention to 12 context tokens, MLP.
    tokens, context_tokens, width, mlp_dim, heads, batch, depth = 16, 12, 64, 256, 2, 3, 4
    model = Transformer(width, depth, heads, mlp_dim, dtype=dtype, scan_layers=True, remat=policy,
                        rngs=nnx.Rngs(0), block=functools.partial(DecoderBlock, context_width=width))
    x = jnp.ones((batch, tokens, width), jnp.float32)
    context = jnp.ones((batch, context_tokens, width), jnp.float32)
    jax_bytes = _saved_per_example(model, (x, causal_mask(tokens), context), depth, batch, heads, tokens)
    if policy == "none" and compute_bytes < 4:
        # As for a plain block: the self-attention's LayerNorm output is cast once per q, k, v
        # projection in the jaxpr and once by XLA (cross-attention's queries have one cast).
        jax_bytes -= 2 * tokens * width * compute_bytes
    closed_form = (block_saved_bytes(tokens, width, mlp_dim, heads, compute_bytes, policy)
                   + cross_attention_saved_bytes(tokens, context_tokens, width, heads, compute_bytes, policy))
    assert closed_form == jax_bytes


@pytest.mark.parametrize("remat", ["none", "full"])
@pytest.mark.parametrize("objective", [MaeConfig(), CaptionConfig(), CocaConfig()], ids=["mae", "caption", "coca"])
def test_generative_objectives_memory_matches_their_estimate_within_25_percent(objective, remat):
    # Stacks of two or more scanned blocks each: the regime where the scan's residuals are stored
    # (a scan of one block lets XLA:CPU keep or drop them as it likes).
    config = with_fields(_tiny("dp", remat=remat, data=-1), {
        "objective": objective,
        "model.decoder": TextDecoderConfig(width=64, depth=4, heads=2, unimodal_depth=2 * (objective.name == "coca")),
        "model.mae_decoder": PixelDecoderConfig(width=64, depth=2, heads=2),
    })
    report = compile_train_step(config)
    assert report.memory.total == pytest.approx(report.estimated_total_bytes, rel=0.25)


@pytest.mark.parametrize("remat", ["none", "full", "dots_no_batch"])
def test_local_memory_matches_the_closed_form_estimate_within_25_percent(remat):
    # XLA:CPU stores every residual the forward scan hands over, as XLA:TPU does at depth 12.
    report = compile_train_step(_tiny("dp", remat=remat, data=-1))
    assert report.num_devices == 8 and report.chip is None and report.fits is None
    assert report.memory.alias > 0  # the donated train state is updated in place
    assert report.memory.total == pytest.approx(report.estimated_total_bytes, rel=0.25)
    assert report.compiled_flops_per_device > 0
    assert "closed-form estimate" in format_report(report)


def test_local_fsdp_memory_matches_the_estimate_within_25_percent():
    report = compile_train_step(_tiny("fsdp", data=1, fsdp=-1))
    assert report.memory.total == pytest.approx(report.estimated_total_bytes, rel=0.25)


def test_cli_compile_writes_json(tmp_path, capsys):
    out = tmp_path / "aot.json"
    code = main(["compile", "--config", "experiments/synthetic_cxr/clip.py:smoke",
                 "--set", "batch_size=32", "--json", str(out), "--peak-tflops", "1"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["batch_size"] == 32 and report["num_devices"] == 8
    assert report["memory"]["total"] > 0 and report["model_flops_per_step"] > 0
    assert report["step_time_at_peak_s"] == pytest.approx(report["hardware_flops_per_step"] / 8e12)
    assert "per-chip memory" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--topology", "v9-8"], "unknown TPU topology"),
    (["--json", "/nonexistent/dir/aot.json"], "does not exist"),
])
def test_cli_compile_user_errors(args, message, capsys):
    assert main(["compile", "--config", "experiments/synthetic_cxr/clip.py:smoke", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(HAS_LIBTPU, reason="libtpu is installed")
@pytest.mark.parametrize("topology", ["v5e-8", "v5e-8x2"])
def test_tpu_topology_without_libtpu_says_how_to_install_it(topology, capsys):
    assert main(["compile", "--config", "experiments/synthetic_cxr/clip.py:smoke", "--topology", topology]) == 2
    assert "pip install 'radfm_jax[tpu]'" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu (the tpu extra)")
def test_tpu_v5e_compile_reports_chip_memory_and_fit():
    # The estimate's regime on XLA:TPU: 12 scanned blocks whose saved residuals are stored in
    # HBM (with 2 blocks XLA:TPU stored a third of them). Width 128: XLA:TPU pads minor
    # dimensions to 128 lanes, so narrower arrays take more memory than their shapes say.
    config = ExperimentConfig(
        batch_size=256,
        data=DataConfig(input_size=64, max_text_len=64, vocab_size=128),
        model=ModelConfig(
            image=presets.vit("Ti", 8, width=128, depth=12, heads=2),
            text=presets.text("Ti", width=128, depth=12, heads=2),
            embed_dim=32, compute_dtype="bfloat16",
        ),
        mesh=MeshConfig(rules="dp", data=-1),
    )
    report = compile_train_step(config, "v5e-8")
    assert report.device_kind == "TPU v5 lite" and report.chip == "TPU v5e" and report.num_devices == 8
    assert report.fits is True and report.hbm_bytes == 16 * 1024**3
    assert report.memory.total == pytest.approx(report.estimated_total_bytes, rel=0.25)
    assert report.step_time_at_peak_s == pytest.approx(report.hardware_flops_per_step / (8 * 197e12))


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu (the tpu extra)")
def test_two_slice_v5e_compile_spans_the_slices_with_data_parallelism():
    # Two v5e-8 slices over DCN: fsdp over each slice's 8 chips, data across the 2 slices. A
    # chip holds what a chip of one v5e-8 slice holds at half the global batch (the same state
    # shard and per-chip batch); XLA's temporaries differ with the collectives, so the total is
    # checked against the closed-form estimate (the model of the single-slice test above).
    config = ExperimentConfig(
        batch_size=512,
        data=DataConfig(input_size=64, max_text_len=64, vocab_size=128),
        model=ModelConfig(
            image=presets.vit("Ti", 8, width=128, depth=12, heads=2),
            text=presets.text("Ti", width=128, depth=12, heads=2),
            embed_dim=32, compute_dtype="bfloat16",
        ),
        mesh=MeshConfig(rules="fsdp", data=1, fsdp=-1),
    )
    report = compile_train_step(config, "v5e-8x2")
    assert report.topology == "v5e-8x2" and report.num_slices == 2 and report.num_devices == 16
    assert report.mesh == {"data": 2, "fsdp": 8, "tensor": 1}
    assert report.chip == "TPU v5e" and report.fits is True
    assert report.memory.total == pytest.approx(report.estimated_total_bytes, rel=0.25)
    text = format_report(report)
    assert "2 slices x 8 x TPU v5 lite" in text and "data across the 2 slices over DCN" in text
    one_slice = compile_train_step(with_fields(config, {"batch_size": 256}), "v5e-8")
    assert one_slice.num_slices == 1 and one_slice.mesh == {"data": 1, "fsdp": 8, "tensor": 1}
    for field in ("argument", "output", "alias"):
        assert getattr(report.memory, field) == getattr(one_slice.memory, field), field
