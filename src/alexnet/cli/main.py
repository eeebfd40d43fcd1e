"""The ``alexnet`` command: a thin layer over the Python API.

Each subcommand parses its arguments, calls one function of the package and prints the
result. User mistakes surface as ``AlexNetError`` and are printed as one line with exit
status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from alexnet.errors import AlexNetError
from alexnet.runtime.allocator import reuse_freed_memory

# Subcommands register themselves here: name -> (help, add_arguments, run)
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str) -> Callable:
    """Decorator pairing an ``add_arguments`` function with the ``run`` it returns."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        def with_run(run: Callable[[argparse.Namespace], int | None]) -> Callable:
            COMMANDS[name] = (help, add_arguments, run)
            return run

        return with_run

    return register


def parse_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["num_classes=10", "lrn=false"]`` -> {"num_classes": 10, "lrn": False}."""
    options: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise AlexNetError(f"option {pair!r} is not KEY=VALUE (e.g. num_classes=10)")
        key, value = pair.split("=", 1)
        options[key.strip()] = parse_value(value.strip())
    return options


def parse_value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _load_commands() -> None:
    """Import every module of ``alexnet.cli``; each registers its subcommands."""
    import alexnet.cli

    for module in pkgutil.iter_modules(alexnet.cli.__path__):
        if module.name != "main":
            importlib.import_module(f"alexnet.cli.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="Krizhevsky, Sutskever & Hinton (2012) as fast, faithful, tested software.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _run) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    reuse_freed_memory()  # before any large tensor: see alexnet/allocator.py
    try:
        return COMMANDS[args.command][2](args) or 0
    except AlexNetError as error:
        print(f"alexnet {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
