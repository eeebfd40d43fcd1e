"""Subcommands of the ``alexnet`` CLI, one module per stage; each registers itself with
``alexnet.cli.command``. Keep them thin: parse, call the package's API, print."""
