"""``alexnet bench TARGET``: speed benchmarks, one per stage (data, train, evaluate).

``BENCHMARKS`` is their one table: each stage's cli module defines the target's
``add_..._arguments`` and ``run_...``. Benchmarks compare a candidate with a baseline
measured in the same run and print the ratio.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from alexnet.cli import data, evaluate, train
from alexnet.errors import AlexNetError

Run = Callable[[argparse.Namespace], int | None]

# the one table of benchmarks: target -> (help, add_arguments, run), one per stage
BENCHMARKS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Run]] = {
    "data": (
        "images/s of the torchvision ImageFolder+DataLoader baseline vs the prepared "
            "store + StoreLoader + batched paper augmentation, same cores, one run",
        data.add_bench_data_arguments, data.run_bench_data),
    "evaluate": (
        "images/s of batched evaluation (uint8 in, views, bf16/channels_last) vs "
            "torchvision alexnet fp32 NCHW on ready float batches",
        evaluate.add_bench_evaluate_arguments, evaluate.run_bench_evaluate),
    "train": (
        "images/s of a training step: alexnet2012 and alexnet2014 on the fast path vs "
            "torchvision's alexnet in fp32 eager NCHW and as the strongest plain-PyTorch "
            "peer (bf16 autocast where fast, channels_last), interleaved in one run",
        train.add_bench_train_arguments, train.run_bench_train),
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET")
    for name, (help_text, add_arguments, _run) in sorted(BENCHMARKS.items()):
        add_arguments(targets.add_parser(name, help=help_text, description=help_text))


def run_bench(args: argparse.Namespace) -> int | None:
    if args.bench_target is None:
        raise AlexNetError(f"name a benchmark: alexnet bench {{{','.join(sorted(BENCHMARKS))}}}")
    return BENCHMARKS[args.bench_target][2](args)
