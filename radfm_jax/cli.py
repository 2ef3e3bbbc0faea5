"""`radfm <verb>`: train, finetune, eval, generate, weights, data, compile, sweep. User mistakes print one message and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from radfm_jax.errors import ConfigError, DiskFullError, RadfmError
from radfm_jax.reporting import drop_out_of_space_logs, out_of_space


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What `train` and `finetune` share: the experiment, its workdir and overrides."""
    parser.add_argument("--config", required=True, help="experiments/<study>/<name>.py[:arg]")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set total_steps=100 (repeatable)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="continue a workdir whose config.json differs (the old one is kept)")
    parser.add_argument("--weights", default=None, metavar="CHECKPOINT",
                        help="start from a published checkpoint you hold (a Hugging Face CLIPModel folder): its "
                             "architecture and tokenizer are set before your --set overrides")
    parser.add_argument("--text-weights", default=None, metavar="CHECKPOINT",
                        help="start the text tower from a published text encoder you hold (a BERT-family folder, "
                             "e.g. CXR-BERT or PubMedBERT): its architecture and tokenizer are set too")
    parser.add_argument("--resume-from-previous", action="store_true",
                        help="if the newest checkpoint is damaged, move it to WORKDIR/damaged_checkpoints/ "
                             "and resume from the newest one that restores")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radfm", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train or resume an experiment in a workdir")
    _add_run_arguments(train)

    finetune = verbs.add_parser(
        "finetune", help="train an experiment (e.g. objective classify) starting from another run's image tower")
    finetune.add_argument("--from", dest="source", required=True, help="the pretraining run's workdir")
    finetune.add_argument("--step", type=int, default=0, help="its checkpoint step (default: latest)")
    _add_run_arguments(finetune)

    evaluate = verbs.add_parser("eval", help="evaluate a workdir's latest (or a chosen) checkpoint, or compare two")
    evaluate.add_argument("--workdir", help="the workdir to evaluate")
    evaluate.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    evaluate.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                          help="instead: A's AUROC minus B's per finding on the same test studies, with paired "
                               "patient-bootstrap intervals, from their saved evaluations")
    evaluate.add_argument("--kind", default="classification", choices=["classification", "zeroshot"],
                          help="--compare: which evaluator's predictions")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override eval.* fields, e.g. --set eval.split=val")

    generate = verbs.add_parser("generate", help="write a split's generated reports (caption / coca workdirs)")
    generate.add_argument("--workdir", required=True)
    generate.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    generate.add_argument("--out", default=None,
                          help="JSONL file (default: WORKDIR/generated/<split>_step_<step>.jsonl)")
    generate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override eval.* fields, e.g. --set eval.generate.method=beam "
                               "--set eval.generate.max_examples=0 (all)")

    weights = verbs.add_parser("weights", help="import published checkpoints, export radfm_jax models")
    weights_verbs = weights.add_subparsers(dest="weights_verb", required=True)
    imports = weights_verbs.add_parser(
        "import", help="a Hugging Face CLIPModel folder you hold -> a workdir whose step 0 is that model")
    imports.add_argument("source", help="the checkpoint's folder (config.json + weights) or Hugging Face cache folder")
    imports.add_argument("--text", default=None, metavar="CHECKPOINT",
                         help="also a text encoder for the text tower (a BERT-family folder)")
    imports.add_argument("--config", required=True, help="the experiment it will be evaluated / trained as")
    imports.add_argument("--workdir", required=True, help="a new workdir")
    imports.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config field after the checkpoint's own (repeatable)")
    exports = weights_verbs.add_parser("export", help="a clip / siglip workdir -> a Hugging Face CLIPModel folder")
    exports.add_argument("--workdir", required=True)
    exports.add_argument("--out", required=True, help="a new (or empty) folder")
    exports.add_argument("--step", type=int, default=0, help="checkpoint step (default: latest)")
    exports.add_argument("--image-only", action="store_true",
                         help="the image tower and its projection alone (CLIPVisionModelWithProjection)")

    data = verbs.add_parser("data", help="prepare and inspect data sets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    check = data_verbs.add_parser(
        "check", help="patient overlap, duplicate images and label prevalence per split")
    check.add_argument("name", nargs="?", default=None,
                       help="data set name, e.g. synthetic_cxr or mimic_cxr (checked with the preprocessing "
                            "its recipe trains with); optional with --config")
    check.add_argument("--config", default=None, metavar="EXPERIMENT",
                       help="check the data as this experiment file trains on it (experiments/<study>/<name>.py[:arg])")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override data.* fields, e.g. --set data.manual_dir=/path")

    compile_ = verbs.add_parser(
        "compile", help="compile the train step ahead of time: per-chip memory, FLOPs, step time at peak")
    compile_.add_argument("--config", required=True, help="experiments/<study>/<name>.py[:arg]")
    compile_.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a config field, e.g. --set batch_size=4096 (repeatable)")
    compile_.add_argument("--topology", default="local",
                          help="a TPU slice such as v5e-256, v4-32, v5p-128, v6e-64, or several slices joined "
                               "by DCN as <slice>x<slices> (v5e-256x2) (needs the tpu extra: libtpu), or "
                               "'local' for this machine's devices (default)")
    compile_.add_argument("--peak-tflops", type=float, default=None,
                          help="peak bf16 TFLOP/s per device, for a chip the built-in table lacks")
    compile_.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")

    adapt = verbs.add_parser(
        "adapt-sweep", help="label efficiency: fine-tune modes x label fractions x seeds from a pretraining run, "
                            "then write the table and plot (finished points are kept)")
    adapt.add_argument("spec", help="experiments/adapt/<name>.py[:arg]")
    adapt.add_argument("--from", dest="source", required=True, help="the pretraining run's workdir")
    adapt.add_argument("--root", required=True, help="the sweep's folder: one workdir per point")

    sweep = verbs.add_parser("sweep", help="scaling sweeps: train the points in turn, show their state, collect results")
    sweep_verbs = sweep.add_subparsers(dest="sweep_verb", required=True)
    for verb, text in (("run", "train every unfinished point, one after another (or --emit tpu commands)"),
                       ("status", "each point's state: done, running, failed or pending"),
                       ("collect", "write ROOT/sweep.csv and ROOT/sweep.jsonl from the finished points")):
        sub = sweep_verbs.add_parser(verb, help=text)
        sub.add_argument("spec", help="experiments/scaling/<name>.py[:arg]")
        sub.add_argument("--root", required=True, help="the sweep's folder: one workdir per point")
    run = sweep_verbs.choices["run"]
    run.add_argument("--emit", choices=["tpu"], default=None,
                     help="print one `tpu/tpu_vm.py run -- radfm train ...` line per point instead of training")
    run.add_argument("--tpu-name", default="", help="--emit tpu: the TPU VM's name")
    run.add_argument("--project", default="", help="--emit tpu: the Google Cloud project")
    run.add_argument("--zone", default="", help="--emit tpu: the TPU VM's zone")
    run.add_argument("--accelerator-type", default="", help="--emit tpu: e.g. v4-32 (default: tpu_vm.py's)")
    return parser


def _sweep(args: argparse.Namespace) -> int:
    from radfm_jax.scaling import collect, runner
    from radfm_jax.scaling.sweep import load_sweep

    sweep = load_sweep(args.spec)
    if args.sweep_verb == "run" and args.emit == "tpu":
        if not (args.tpu_name and args.project and args.zone):
            raise ConfigError("--emit tpu needs --tpu-name, --project and --zone")
        print("\n".join(runner.emit_tpu_commands(sweep, args.root, tpu_name=args.tpu_name, project=args.project,
                                                 zone=args.zone, accelerator_type=args.accelerator_type)))
    elif args.sweep_verb == "run":
        states = runner.run_sweep(sweep, args.root)
        print(runner.format_status(runner.sweep_status(sweep, args.root)))
        return int(runner.FAILED in states.values())
    elif args.sweep_verb == "status":
        print(runner.format_status(runner.sweep_status(sweep, args.root)))
    else:
        rows = collect.collect(sweep, args.root)
        print(f"{len(rows)} of {len(sweep.points)} points finished -> {args.root}/{collect.CSV_FILE}, "
              f"{args.root}/{collect.JSONL_FILE}")
    return 0


def _adapt_sweep(args: argparse.Namespace) -> int:
    from absl import flags

    from radfm_jax.adapt import label_efficiency as le
    from radfm_jax.scaling import collect, runner

    spec = le.load_spec(args.spec)
    sweep = le.build_sweep(spec, args.source)
    flags.FLAGS.mark_as_parsed()  # Grain's worker processes read absl flags
    states = runner.run_sweep(sweep, args.root)
    table = le.label_efficiency_table(spec, collect.collect(sweep, args.root))
    paths = le.write_table(table, Path(args.root))
    print(runner.format_status(runner.sweep_status(sweep, args.root)))
    print(f"\n{le.format_markdown(table)}\nwrote {', '.join(str(p) for p in paths)}")
    return int(runner.FAILED in states.values())


def _run(args: argparse.Namespace) -> int:
    """The verb's work; JAX and the heavy modules are imported only by the verbs that need them."""
    if args.verb == "weights" and args.weights_verb == "export":
        from radfm_jax.weights.export import export_workdir

        out = export_workdir(args.workdir, args.out, step=args.step, image_only=args.image_only)
        print(f"wrote {out}")
        return 0
    if args.verb in ("train", "finetune", "eval", "generate", "weights"):
        from radfm_jax.parallel.multihost import initialize_distributed
        from radfm_jax.train.checkpoint import quiet_abandoned_reads

        if args.verb in ("train", "finetune", "weights"):
            from absl import flags

            from radfm_jax.config.loading import load_experiment
            from radfm_jax.weights.published import start_overrides

            start = [f"init.workdir={args.source}", f"init.step={args.step}"] if args.verb == "finetune" else []
            weights = args.source if args.verb == "weights" else args.weights
            text_weights = args.text if args.verb == "weights" else args.text_weights
            if weights:
                start = [*start, *start_overrides(weights)]
            if text_weights:
                start = [*start, *start_overrides(text_weights, text=True)]
            config = load_experiment(args.config, [*start, *args.overrides])  # checked before JAX starts
            # Grain's worker processes read absl flags (google/grain#1355): keep their defaults.
            flags.FLAGS.mark_as_parsed()
        initialize_distributed()
        with quiet_abandoned_reads():  # a failed restore must end in its one-line message
            if args.verb == "weights":
                from radfm_jax.train.loop import train

                train(config, args.workdir, start_only=True)
                print(f"imported {args.source} as step 0 of {args.workdir}")
            elif args.verb in ("train", "finetune"):
                from radfm_jax.train.loop import train

                train(config, args.workdir, allow_config_change=args.allow_config_change,
                      resume_from_previous=args.resume_from_previous)
            elif args.verb == "eval" and args.compare:
                from radfm_jax.train.from_checkpoint import compare_workdirs

                compare_workdirs(*args.compare, kind=args.kind)
            elif args.verb == "eval":
                from radfm_jax.train.from_checkpoint import evaluate_workdir

                if not args.workdir:
                    raise ConfigError("radfm eval needs --workdir (or --compare A B)")
                evaluate_workdir(args.workdir, step=args.step, overrides=args.overrides)
            else:
                from radfm_jax.train.from_checkpoint import generate_workdir

                generate_workdir(args.workdir, args.out, step=args.step, overrides=args.overrides)
        return 0
    if args.verb == "compile":
        from radfm_jax.config.loading import load_experiment
        from radfm_jax.tools.aot_compile import run_compile

        run_compile(load_experiment(args.config, args.overrides), args.topology, peak_tflops=args.peak_tflops,
                    json_out=args.json)
        return 0
    if args.verb == "adapt-sweep":
        return _adapt_sweep(args)
    if args.verb == "data":
        from radfm_jax.data.check import run_check

        return run_check(args.name, args.overrides, args.config)
    return _sweep(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("orbax", "jax._src", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # TFDS warns through absl on every non-default synthetic_cxr size; our errors say enough.
    logging.getLogger("absl").setLevel(logging.ERROR)
    drop_out_of_space_logs()
    try:
        return _run(args)
    except RadfmError as err:  # ConfigError, CheckpointError, NonFiniteError, DiskFullError
        return _report(args.verb, err)
    except Exception as err:
        path = out_of_space(err)
        if path is None:
            raise
        return _report(args.verb, DiskFullError(
            f"no space left on the device holding {path or 'a file being written'}; free space there "
            "(or choose another --workdir / data folder) and rerun"))


def _report(verb: str, err: RadfmError) -> int:
    print(f"radfm {verb}: error: {err}", file=sys.stderr, flush=True)
    return 2


def entry_point() -> None:
    """The `radfm` command: process-wide set-up that in-process callers of main() do not want,
    then main(). A failed checkpoint restore's abandoned reads report until the process ends,
    so their filter stays for the life of the process."""
    from radfm_jax.reporting import filter_abandoned_reads

    filter_abandoned_reads()
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
