"""The ``alexnet`` command: argument parsing and printing over the package's functions."""

from alexnet.cli.main import main

__all__ = ["main"]
