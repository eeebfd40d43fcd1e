"""``alexnet convert-checkpoint``: re-save a trusted checkpoint that holds pickled objects."""

from __future__ import annotations

import argparse

from alexnet.errors import AlexNetError


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE", help="the checkpoint to convert (unpickled: runs its code)")
    parser.add_argument("out", metavar="OUT.pt", help="where to write the converted checkpoint")
    parser.add_argument("--trust-source", action="store_true",
                        help="required: you know where FILE came from; unpickling an untrusted "
                             "file can run any code")


def run_convert(args: argparse.Namespace) -> int:
    from alexnet.models.checkpoint import convert_trusted

    if not args.trust_source:
        raise AlexNetError("converting unpickles the file, which runs any code it holds: add "
                           "--trust-source only if you know where it came from")
    print(f"wrote {convert_trusted(args.source, args.out)}")
    return 0
