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


def short_reason(error: BaseException | str, limit: int = 240) -> str:
    """An exception's message as one short line for an ``AlexNetError``: the first line
    that says something (a heading ending in ':' takes the line after it), cut at a
    sentence or clause end when too long, never mid-word."""
    text = str(error).replace("\x1b[1m", "").replace("\x1b[0m", "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else "no reason given"
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line = f"{line} {lines[1]}"
    if len(line) <= limit:
        return line
    head = line[:limit]
    for end in (". ", "; ", ", ", " "):
        cut = head.rfind(end)
        if cut > limit // 3:
            return head[:cut + (1 if end == ". " else 0)].rstrip(",; ") + (" ..." if end != ". " else "")
    return head + " ..."


def check_positive(**values: int | float | None) -> None:
    """``check_positive(batch_size=0)`` -> ``--batch-size must be positive, got 0``; None passes
    (an optional count left out); nan fails."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not value >= 1):
            raise AlexNetError(f"--{name.replace('_', '-')} must be positive, got {value}")


def check_non_negative(**values: int | float | None) -> None:
    """Like ``check_positive``, for counts where 0 means "none" or "off"."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not value >= 0):
            raise AlexNetError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
