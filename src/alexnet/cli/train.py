"""``alexnet train`` and ``alexnet bench train``.

Every TrainConfig field is a flag (``--lr 0.02``, ``--no-flip``, ``--lr-milestones 30,60``,
``--model-option width=0.5``), generated from the dataclass, its help from the field's
``metadata["help"]``, so that the two never disagree;
only the flags given override the preset. The command parses, calls
``alexnet.train.train`` and prints its summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from alexnet.cli.options import parse_options
from alexnet.runtime.device import PRECISIONS

# flags that take KEY=VALUE pairs, for the dict-valued fields
PAIR_FIELDS = {"model_options": "model-option", "layer_weight_decay": "layer-weight-decay"}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from alexnet.train.config import PRESETS, TrainConfig

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "presets:\n" + "\n".join(
        f"  {name}: {p.description}\n      source: {p.source}" for name, p in PRESETS.items())
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="start from a named setup (see below); flags override it")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue the run in RUN_DIR with its saved config (flags override "
                             "it); relaunching the same command on a run folder also resumes")
    parser.add_argument("--fresh", action="store_true",
                        help="start over in --out, deleting its checkpoints and logs")
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("config (every TrainConfig field; default: the preset's)")
    for f in dataclasses.fields(TrainConfig):
        text = f.metadata["help"]  # every TrainConfig field has one (train/config.py)
        default = getattr(defaults, f.name)
        if f.name in PAIR_FIELDS:
            group.add_argument(f"--{PAIR_FIELDS[f.name]}", dest=f.name, action="append",
                               metavar="KEY=VALUE", default=None,
                               help=f"{text} (repeatable)".strip())
        elif hints[f.name] is bool:
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                               action=argparse.BooleanOptionalAction,
                               help=f"{text} (default {default})".strip())
        else:
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                               metavar=f.name.upper(), help=f"{text} (default {shown})".strip())


def run_train(args: argparse.Namespace) -> int:
    from alexnet.train import train
    from alexnet.train.config import resolve_config, resume_config

    overrides = _overrides(args)
    preset = args.preset
    if args.resume is not None:
        config, saved_preset = resume_config(args.resume, overrides, fresh=args.fresh)
        preset = preset or saved_preset
    else:
        config = resolve_config(preset, overrides)
    result = train(config, fresh=args.fresh, preset=preset)
    print(result.summary())
    if result.status != "stopped":
        return 0
    # the shell's codes for death by these signals: 128 + 2 (Ctrl-C), 128 + 15 (SIGTERM)
    return 130 if result.stopped_by == "SIGINT" else 143


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from alexnet.train.config import TrainConfig

    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        values[f.name] = parse_options(value) if f.name in PAIR_FIELDS else value
    return values


def add_bench_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="alexnet2012,alexnet2014",
                        help="comma-separated candidates (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="candidates' precision (auto: bf16 where fast)")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the candidates")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="also split one step of each variant by kind of kernel "
                             "(convolutions, matrix products, the rest) and compare its FLOP/s "
                             "with this machine's measured matrix-product peak")
    parser.add_argument("--target-ratio", type=float, default=5.0,
                        help="with --profile: the ratio whose needed peak fraction is printed "
                             "(default: %(default)s)")


def run_bench_train(args: argparse.Namespace) -> int:
    from alexnet.train.bench import TrainBenchConfig, run_train_benchmark

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    config = TrainBenchConfig(models=models, image_size=args.image_size,
                              batch_size=args.batch_size, device=args.device,
                              precision=args.precision, channels_last=not args.no_channels_last,
                              compile=args.compile, rounds=args.rounds, steps=args.steps,
                              warmup=args.warmup, profile=args.profile,
                              target_ratio=args.target_ratio)
    result = run_train_benchmark(config, log=print)
    print(result.summary())
    return 0
