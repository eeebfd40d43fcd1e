"""``alexnet demo``: what ``make demo`` runs (train on Imagenette, evaluate, report)."""

from __future__ import annotations

import argparse

from alexnet.cli.options import parse_options


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data/imagenette",
                        help="Imagenette folder with train/ and val/ (default: %(default)s)")
    parser.add_argument("--out", default="runs/imagenette", help="run folder (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainConfig field of the preset, e.g. --set epochs=2")


def run_demo(args: argparse.Namespace) -> int:
    from alexnet.report.demo import run_demo

    result = run_demo(args.data, args.out, fresh=args.fresh, overrides=parse_options(args.set))
    print(f"report: {result.report.resolve()}")
    return 0
