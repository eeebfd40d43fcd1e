"""``alexnet info MODEL``."""

from __future__ import annotations

import argparse

from alexnet.cli.options import parse_options


def _add_info(parser: argparse.ArgumentParser) -> None:
    from alexnet.models import list_models

    parser.add_argument("model", help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--input-size", type=int, default=None, help="square input side (default: the model's)")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="model option, e.g. -o num_classes=10 -o lrn=false")


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    _add_info(parser)


def run_info(args: argparse.Namespace) -> int:
    from alexnet.models import MODELS
    from alexnet.models.info import format_table, layer_table

    options = parse_options(args.option)
    size = args.input_size if args.input_size is not None else (
        MODELS[args.model].input_size if args.model in MODELS else 224)
    rows = layer_table(args.model, size, **options)
    print(format_table(args.model, rows, size))
    return 0
