"""radfm_jax against open_clip on the same work: CLIP train steps per second at one experiment's
dimensions, both on this machine's CPU cores, run in alternating blocks (so load from other
jobs hits both alike) and compared by their medians.

    pip install -e ".[bench]"   # torch and open_clip_torch: this benchmark only
    python benchmarks/vs_open_clip.py --config experiments/synthetic_cxr/clip.py [--mode both]

--mode step: the train step alone on random inputs of the configured shapes (radfm: the
project's own jitted step; open_clip: eager PyTorch forward, ClipLoss, backward, gradient
clipping and AdamW). --mode e2e: training fed by each side's input pipeline from the same
prepared data set and the same record -> model-input transforms (radfm: the Grain train loader
and device prefetch; open_clip: a torch DataLoader with data.worker_count workers). --mode
loader: the two pipelines alone (batches per second, "steps" in the output; use blocks of 50 or
more so read-ahead buffers do not decide it). The
dimensions come from the experiment file: image size and channels, patch, widths, depths, heads,
MLP ratio, pooling (mean -> open_clip's "avg"; map -> its attentional pooler with one query),
context length, vocabulary, embedding size, batch, and AdamW's settings. Differences that
remain: open_clip's text tower pools the arg-max token (it has no mean pooling) and masks no
padding, and its attentional pooler has no MLP (radfm's MAP head has one): radfm does slightly
more work.
Writes the medians and their ratio to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.model_inputs import input_channels, is_volume_dataset
from radfm_jax.train.experiment import Experiment


# --------------------------------------------------------------------------------------------
# open_clip at the experiment's dimensions.
# --------------------------------------------------------------------------------------------


def open_clip_model(config: ExperimentConfig, channels: int):
    """An open_clip CLIP with the experiment's towers (fp32, random init)."""
    import open_clip
    import torch

    image, text = config.model.image, config.model.text
    vision = open_clip.model.CLIPVisionCfg(
        layers=image.depth, width=image.width, head_width=image.width // image.heads,
        mlp_ratio=image.mlp_ratio, patch_size=image.patch_size, image_size=config.data.input_size,
        pool_type={"mean": "avg", "cls": "tok"}.get(image.pool, "tok"),
        attentional_pool=image.pool == "map", attn_pooler_queries=1, attn_pooler_heads=image.heads,
    )
    text_cfg = open_clip.model.CLIPTextCfg(
        context_length=config.data.max_text_len, vocab_size=config.data.vocab_size, width=text.width,
        heads=text.heads, layers=text.depth, mlp_ratio=text.mlp_ratio, no_causal_mask=True,
    )
    model = open_clip.model.CLIP(config.model.embed_dim, vision, text_cfg,
                                 init_logit_scale=math.log(config.model.init_temperature), output_dict=True)
    patch = image.patch_size
    model.visual.conv1 = torch.nn.Conv2d(channels, image.width, kernel_size=patch, stride=patch, bias=False)
    return model


class OpenClipTrainer:
    """One eager PyTorch train step: forward, ClipLoss, backward, clip, AdamW."""

    def __init__(self, config: ExperimentConfig, channels: int):
        import open_clip
        import torch

        self.torch = torch
        self.model = open_clip_model(config, channels)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim.learning_rate,
                                           betas=(optim.b1, optim.b2), weight_decay=optim.weight_decay)
        self.loss = open_clip.ClipLoss()
        self.clip_norm = optim.grad_clip_norm

    def step(self, images, tokens) -> float:
        out = self.model(images, tokens)
        loss = self.loss(out["image_features"], out["text_features"], out["logit_scale"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        return loss


# --------------------------------------------------------------------------------------------
# The two workloads: random inputs (step) or each side's pipeline (e2e).
# --------------------------------------------------------------------------------------------


def _to_torch(batch: dict):
    import torch

    images = torch.from_numpy(np.array(np.moveaxis(np.asarray(batch["image"]), -1, 1)))  # a writable copy
    return images, torch.from_numpy(np.asarray(batch["tokens"]).astype(np.int64))


def step_workloads(config: ExperimentConfig, exp: Experiment):
    """(radfm block, open_clip block): each runs n train steps on fixed random inputs."""
    state = [exp.init_state()]
    step = exp.train_step().jit()
    batch = exp.random_batch()
    trainer = OpenClipTrainer(config, batch["image"].shape[-1])
    images, tokens = _to_torch(jax.device_get(batch))

    def radfm(n: int) -> None:
        metrics = None
        for _ in range(n):
            state[0], metrics = step(state[0], batch)
        jax.block_until_ready(metrics)

    def torch_block(n: int) -> None:
        for _ in range(n):
            trainer.step(images, tokens)

    return radfm, torch_block


def pipelines(config: ExperimentConfig, exp: Experiment):
    """(radfm batches, torch batches): endless iterators over the same prepared training split
    through the same record -> model-input transforms, each with data.worker_count workers
    (radfm: the Grain train loader with device prefetch; open_clip: a torch DataLoader)."""
    import torch

    from radfm_jax.data.datasets import open_prepared
    from radfm_jax.data.device_put import prefetch_to_device
    from radfm_jax.data.pipeline import make_train_loader, transforms_for
    from radfm_jax.data.transforms import apply_transforms

    data = open_prepared(config.data)
    source = data.sources["train"]
    loader = make_train_loader(source, tokenizer=data.tokenizer, data_cfg=config.data,
                               global_batch_size=config.batch_size, seed=config.seed,
                               keys=tuple(exp.objective.batch_spec()),
                               extra_transforms=exp.objective.data_transforms())
    radfm_batches = iter(prefetch_to_device(loader, config.data.prefetch_batches, exp.batch_shardings()))
    transforms = transforms_for(data.tokenizer, config.data, train=True)

    class Records(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(source)

        def __getitem__(self, index: int):
            element = apply_transforms(source[index], transforms, np.random.default_rng(index))
            return _to_torch({"image": element["image"][None], "tokens": element["tokens"][None]})

    workers = config.data.worker_count
    torch_loader = torch.utils.data.DataLoader(
        Records(), batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, collate_fn=lambda items: tuple(torch.cat(x) for x in zip(*items)))

    def torch_batches():
        while True:  # epoch after epoch
            yield from torch_loader

    return radfm_batches, torch_batches()


def e2e_workloads(config: ExperimentConfig, exp: Experiment):
    """(radfm block, open_clip block): n train steps, each fed by its own input pipeline."""
    radfm_batches, torch_batches = pipelines(config, exp)
    state = [exp.init_state()]
    step = exp.train_step().jit()
    trainer = OpenClipTrainer(config, input_channels(config.data))

    def radfm(n: int) -> None:
        metrics = None
        for _ in range(n):
            state[0], metrics = step(state[0], next(radfm_batches))
        jax.block_until_ready(metrics)

    def torch_block(n: int) -> None:
        for _ in range(n):
            trainer.step(*next(torch_batches))

    return radfm, torch_block


def loader_workloads(config: ExperimentConfig, exp: Experiment):
    """(radfm block, torch block): n batches from each input pipeline, no training."""
    radfm_batches, torch_batches = pipelines(config, exp)

    def radfm(n: int) -> None:
        batch = None
        for _ in range(n):
            batch = next(radfm_batches)
        jax.block_until_ready(batch)

    def torch_block(n: int) -> None:
        for _ in range(n):
            next(torch_batches)

    return radfm, torch_block


def compare(radfm, torch_block, steps: int, rounds: int) -> dict:
    """First-block times (compile / warm-up), then `rounds` alternating timed blocks of `steps`
    steps each: median steps per second of each side and their ratio."""
    first = {}
    for name, block in (("radfm_jax", radfm), ("open_clip", torch_block)):
        start = time.perf_counter()
        block(1)
        first[name] = time.perf_counter() - start
    rates: dict[str, list[float]] = {"radfm_jax": [], "open_clip": []}
    for r in range(rounds):
        order = (("radfm_jax", radfm), ("open_clip", torch_block))
        for name, block in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            block(steps)
            rates[name].append(steps / (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "steps_per_sec": medians,
        "ratio_radfm_over_open_clip": medians["radfm_jax"] / medians["open_clip"],
        "first_step_s": first,
        "rounds": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/synthetic_cxr/clip.py")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--mode", choices=("step", "e2e", "loader", "both"), default="step",
                        help="both = step and e2e")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=6, help="timed blocks per side, alternating")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--out", default="benchmarks/results/vs_open_clip.json")
    args = parser.parse_args()
    try:
        import open_clip  # noqa: F401
        import torch
    except ImportError:
        raise SystemExit('this benchmark needs torch and open_clip_torch: pip install -e ".[bench]"') from None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.mode != "step":
        from absl import flags

        flags.FLAGS.mark_as_parsed()  # Grain worker processes read absl flags
    config = load_experiment(args.config, args.overrides)
    if config.objective.name != "clip" or is_volume_dataset(config.data.name):
        raise SystemExit(f"{args.config} trains {config.objective.name!r} on {config.data.name}; this benchmark "
                         "compares 2D CLIP")
    exp = Experiment.plan(config, config.data.vocab_size)
    result = {
        "config": args.config, "overrides": args.overrides, "batch_size": config.batch_size,
        "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "steps_per_block": args.steps, "rounds": args.rounds,
    }
    modes = ("step", "e2e") if args.mode == "both" else (args.mode,)
    for mode in modes:
        workloads = {"step": step_workloads, "e2e": e2e_workloads, "loader": loader_workloads}[mode]
        result[mode] = compare(*workloads(config, exp), args.steps, args.rounds)
        print(f"{mode}: radfm_jax {result[mode]['steps_per_sec']['radfm_jax']:.2f} steps/s, open_clip "
              f"{result[mode]['steps_per_sec']['open_clip']:.2f} steps/s, ratio "
              f"{result[mode]['ratio_radfm_over_open_clip']:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
