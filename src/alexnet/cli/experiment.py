"""``alexnet experiment NAME|all [--scale small|paper] [--seeds N] [--out DIR]`` and ``--list``."""

from __future__ import annotations

import argparse
import shlex

from alexnet.errors import AlexNetError


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?",
                        help="experiment name (see --list), or 'all': every experiment in turn, "
                             "skipping current results, then the README's table")
    parser.add_argument("--list", action="store_true", help="print every experiment and its claim")
    parser.add_argument("--scale", default="small",
                        help="small (2-core CPU, <= 30 min), paper (ImageNet on a GPU), test (seconds)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per variant (default: the scale's)")
    parser.add_argument("--out", default="runs/experiments",
                        help="folder for NAME-SCALE.md / .json / .png (default: runs/experiments)")
    parser.add_argument("--runs-dir", default=None,
                        help="folder for the training runs (default: runs/experiments/NAME-SCALE; "
                             "with 'all': the folder holding one NAME-SCALE/ per experiment, "
                             "default runs/experiments)")
    parser.add_argument("--data", default=None,
                        help="replace the scale's data (a prepared store or image folder), "
                             "e.g. your ILSVRC-2012 for --scale paper")
    parser.add_argument("--fresh", action="store_true",
                        help="start the training runs over instead of resuming / reusing them")
    parser.add_argument("--readme", default=None,
                        help="with 'all': the README whose experiment table (between "
                             "<!-- experiments:begin --> and <!-- experiments:end -->) is "
                             "rewritten (default: ./README.md when it has the markers)")


def run_experiment(args: argparse.Namespace) -> int:
    from alexnet.experiments import EXPERIMENTS, SCALES, get_experiment

    if args.list:
        for experiment in EXPERIMENTS.values():
            print(f"{experiment.name:<20} {experiment.section}: {experiment.claim}")
        return 0
    if args.name is None:
        raise AlexNetError("give an experiment NAME, or --list to see them")
    if args.scale not in SCALES:
        raise AlexNetError(f"--scale must be one of {', '.join(SCALES)}, got {args.scale!r}")
    if args.seeds is not None and args.seeds < 1:
        raise AlexNetError(f"--seeds must be at least 1, got {args.seeds}")
    if args.name == "all":
        return _all(args)
    if args.readme is not None:
        raise AlexNetError("--readme goes with 'alexnet experiment all'")
    experiment = get_experiment(args.name)

    from alexnet.experiments.report import write
    from alexnet.experiments.runner import run_experiment

    result = run_experiment(experiment, args.scale, seeds=args.seeds, runs_dir=args.runs_dir,
                            data=args.data, fresh=args.fresh,
                            command=_command_line(args))
    paths = write(result, args.out)
    print(f"{experiment.name} ({args.scale}): {result.verdict}")
    for effect in result.effects:
        value = "n/a" if effect.value is None else f"{effect.value:.2f}"
        print(f"  {effect.variant} vs {effect.baseline}: {value} (paper {effect.paper}) - "
              f"{effect.verdict}")
    print(f"table: {paths['markdown']}  json: {paths['json']}  plot: {paths['plot']}")
    return 0


def _all(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alexnet.experiments.report import README_BEGIN
    from alexnet.experiments.suite import run_all

    readme = args.readme
    if readme is None and Path("README.md").is_file() and README_BEGIN in Path("README.md").read_text():
        readme = "README.md"
    suite = run_all(args.scale, args.out, runs_root=args.runs_dir, seeds=args.seeds,
                    data=args.data, fresh=args.fresh, readme=readme, command=_command_line(args))
    for name, verdict in suite.verdicts.items():
        note = " (current result, not run again)" if name in suite.skipped else ""
        print(f"  {name}: {verdict}{note}")
    print(f"README table: {suite.readme}" if suite.readme else
          "README table not rewritten (no --readme, and no ./README.md with the markers)")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as a user would type it again (for the result's record)."""
    words = ["alexnet", "experiment", args.name, "--scale", args.scale]
    for flag, value in (("--seeds", args.seeds), ("--data", args.data),
                        ("--runs-dir", args.runs_dir), ("--out", args.out),
                        ("--readme", args.readme)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)
