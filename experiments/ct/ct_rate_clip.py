"""CT-CLIP-style volume-report pretraining on the user's copy of CT-RATE (Hamamci et al.).

    radfm train --config experiments/ct/ct_rate_clip.py --workdir runs/ct_rate_clip \
        --set data.manual_dir=/data/CT-RATE
    radfm train --config experiments/ct/ct_rate_clip.py:single_gpu ...     # 240 x 240 x 120
    radfm train --config experiments/ct/ct_rate_clip.py:local_global ...   # HLIP-style attention
    radfm compile --config experiments/ct/ct_rate_clip.py --topology v5p-64  # memory per chip

Variants:
  ""            the published input geometry: 480 x 480 x 240 voxels (0.75 mm in-plane, 1.5 mm
                along z over CT-CLIP's 360 mm field of view), 20 x 20 x 10 tubelets -> 13,824
                tokens, a ViT-B-wide tower; bf16, remat. CT-CLIP: CT-ViT image encoder
                (factorised spatial / temporal attention), CXR-BERT text encoder, batch 8 on one
                80 GB GPU, 18 abnormalities scored zero-shot.
  single_gpu    240 x 240 x 120 (twice the voxel size), the same tubelets: 1,728 tokens.
  local_global  the published geometry with HLIP's recipe: attention within slabs of 2 depth
                tokens in most layers and over the whole volume every 4th layer.
  smoke         tiny, float32, for tests on a fake copy of the data set's layout.

What differs from CT-CLIP: our text tower is a 6-layer transformer trained from scratch with
our SentencePiece tokenizer (CXR-BERT import is the weights issue), the factorised attention is
TimeSformer's divided block, and the learning rate is scaled to our batch.
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.clip import ClipConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_ct_cpu(), {
        "name": "ct_rate_clip",
        "objective": ClipConfig(),
        "total_steps": 50_000, "batch_size": 64, "log_every": 50, "eval_every": 2_500,
        "checkpoint_every": 2_500,
        # The stored size is (image_size / 2, image_size, image_size) over 360 mm.
        "data": presets.recipe_data("ct_rate"),
        "data.image_size": 480, "data.input_size": 480, "data.max_text_len": 256,
        "data.vocab_size": 8192, "data.augment": True, "data.report_sentence_sampling": 0.0,
        "model.image": presets.vit3d("B", tubelet=(10, 20, 20), attention="factorised", pool="mean"),
        "model.text": presets.text("B", depth=6),
        "model.embed_dim": 512, "model.scan_layers": True, "model.remat": "full",
        "model.compute_dtype": "bfloat16", "model.init_temperature": 1 / 0.07,
        "optim.learning_rate": 1e-4, "optim.warmup_steps": 2_000,
        "mesh.data": 1, "mesh.fsdp": -1,
        "eval.batch_size": 16, "eval.max_examples": 0,
    })
    if arg == "":
        return config
    if arg == "single_gpu":
        return with_fields(config, {
            "name": "ct_rate_clip_240", "batch_size": 16, "data.image_size": 240, "data.input_size": 240,
            "mesh.data": -1, "mesh.fsdp": 1,
        })
    if arg == "local_global":
        return with_fields(config, {
            "name": "ct_rate_clip_local_global",
            "model.image": presets.vit3d("B", tubelet=(10, 20, 20), attention="local_global", slab=2,
                                         global_every=4, pool="mean"),
        })
    if arg == "smoke":
        return presets.smoke_3d(with_fields(config, {
            "model.image.pool": "mean",
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
            "model.compute_dtype": "float32", "model.remat": "none",
            "mesh.data": -1, "mesh.fsdp": 1,
        }))
    raise ValueError(f"unknown variant {arg!r}; use '', 'single_gpu', 'local_global' or 'smoke'")
