"""KEY=VALUE option pairs (``--model-option width=0.5``, ``--set epochs=2``) as typed values."""

from __future__ import annotations

from collections.abc import Sequence

from alexnet.errors import AlexNetError


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
