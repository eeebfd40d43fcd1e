"""``alexnet bench TARGET``: speed benchmarks, one per stage, each registered by its own module.

A stage adds its benchmark with ``@benchmark(name, help)`` on an add-arguments function and
decorates the run function with the result, exactly like ``alexnet.cli.command``:

    @benchmark("data", "loader images/s vs torchvision")
    def _args(parser): ...

    @_args
    def _run(args): ...

Benchmarks compare a candidate with a baseline measured in the same run and print the ratio.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from alexnet.cli.main import command
from alexnet.errors import AlexNetError

Run = Callable[[argparse.Namespace], int | None]
BENCHMARKS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Run]] = {}


def benchmark(name: str, help: str) -> Callable:
    """Decorator pairing a benchmark's ``add_arguments`` with the ``run`` it returns."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        def with_run(run: Run) -> Run:
            BENCHMARKS[name] = (help, add_arguments, run)
            return run

        return with_run

    return register


@command("bench", "speed benchmarks against a baseline measured in the same run")
def _bench_args(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET")
    for name, (help_text, add_arguments, _run) in sorted(BENCHMARKS.items()):
        add_arguments(targets.add_parser(name, help=help_text, description=help_text))


@_bench_args
def _bench(args: argparse.Namespace) -> int | None:
    if args.bench_target is None:
        raise AlexNetError(f"name a benchmark: alexnet bench {{{','.join(sorted(BENCHMARKS))}}}")
    return BENCHMARKS[args.bench_target][2](args)
