"""User-facing errors.

Anything a user can get wrong (a name, a path, a value, a file) raises ``AlexNetError``
with one line that says what, where and what to do; the CLI prints that line and exits
with status 2 instead of a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable


class AlexNetError(Exception):
    """A user mistake or unusable input, reported as a single line (exit code 2)."""

    exit_code = 2


def unknown_choice(what: str, value: object, valid: Iterable[object]) -> AlexNetError:
    """``unknown model 'alexnet3'; valid: alexnet2012, alexnet2014, ...``"""
    choices = ", ".join(str(v) for v in valid)
    return AlexNetError(f"unknown {what} {value!r}; valid: {choices}")
