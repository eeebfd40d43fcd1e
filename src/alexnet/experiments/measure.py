"""From finished runs to numbers, and from numbers to a plain verdict.

A ``RunOutcome`` is what one trained (or ensembled) model gives: its per-epoch records
(metrics.jsonl), its scores from ``alexnet.evaluate.accuracy`` and, image by image, which test images
it got right (``ImageOutcomes``, with the images' identity so that two runs pair only when
they were scored on the same images in the same order). ``METRICS`` turns outcomes into one
number each; ``compare`` turns two variants' outcomes into a ``PairedEffect`` with a 95%
interval and a verdict (alexnet.experiments.paired: a bootstrap over images and seeds,
McNemar's test within each seed combined across seeds, and the verdict rule of
docs/experiments.md).
"""

from __future__ import annotations

import base64
import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alexnet.experiments.paired import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    VERDICTS,
    PairedEffect,
    Rule,
    per_image_effect,
    per_seed_ratio,
)

__all__ = ["CONTRADICTED", "INCONCLUSIVE", "REPRODUCED", "VERDICTS", "PairedEffect"]


@dataclass
class ImageOutcomes:
    """Per test image, in scoring order: right or wrong at top-1 and top-k.

    ``images`` is a digest of the images' positions in the test split and their labels:
    outcomes pair only when their digests are equal. In JSON the 0/1 vectors are packed
    bits in base64 (10,000 images: 1.7 kB each) and the positions are [start, stop) ranges.
    """

    indices: np.ndarray  # (N,) int64 positions in the test split
    labels: np.ndarray  # (N,) int64
    top1_correct: np.ndarray  # (N,) bool
    topk_correct: np.ndarray  # (N,) bool

    @property
    def images(self) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.indices, dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        return digest.hexdigest()[:16]

    def errors(self, top: str) -> np.ndarray:
        """(N,) 1.0 where the image was wrong at ``top`` (top1 | topk)."""
        correct = self.top1_correct if top == "top1" else self.topk_correct
        return 1.0 - np.asarray(correct, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"n": len(self.indices), "images": self.images,
                "index_ranges": _ranges(self.indices),
                "labels": _pack_ints(self.labels),
                "top1_correct": _pack_bits(self.top1_correct),
                "topk_correct": _pack_bits(self.topk_correct)}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ImageOutcomes:
        n = int(record["n"])
        indices = np.concatenate([np.arange(a, b) for a, b in record["index_ranges"]] or
                                 [np.zeros(0, dtype=np.int64)]).astype(np.int64)
        outcome = cls(indices, _unpack_ints(record["labels"]),
                      _unpack_bits(record["top1_correct"], n), _unpack_bits(record["topk_correct"], n))
        if outcome.images != record["images"]:
            raise ValueError("per-image outcomes do not match their digest")
        return outcome

    @classmethod
    def from_evaluation(cls, per_image: Any) -> ImageOutcomes:
        """From alexnet.evaluate.accuracy's ``EvalResult.per_image``."""
        return cls(np.asarray(per_image.indices, dtype=np.int64),
                   np.asarray(per_image.labels, dtype=np.int64),
                   np.asarray(per_image.top1_correct, dtype=bool),
                   np.asarray(per_image.topk_correct, dtype=bool))


def _ranges(indices: np.ndarray) -> list[list[int]]:
    ranges: list[list[int]] = []
    for i in np.asarray(indices, dtype=np.int64).tolist():
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def _pack_bits(values: np.ndarray) -> str:
    return base64.b64encode(np.packbits(np.asarray(values, dtype=bool)).tobytes()).decode()


def _unpack_bits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def _pack_ints(values: np.ndarray) -> str:
    small = np.asarray(values, dtype="<i8")
    kind = "<i8"  # the narrowest type that holds the labels: 1 byte each for <= 256 classes
    for narrow, limit in (("<u1", 2**8), ("<u2", 2**16)):
        if small.size == 0 or (small.min() >= 0 and small.max() < limit):
            kind = narrow
            break
    return kind + ":" + base64.b64encode(small.astype(kind).tobytes()).decode()


def _unpack_ints(text: str) -> np.ndarray:
    kind, data = text.split(":", 1)
    return np.frombuffer(base64.b64decode(data), dtype=kind).astype(np.int64)


@dataclass
class RunOutcome:
    """One model's results: epoch records of its training run and its evaluation."""

    epochs: list[dict[str, Any]]
    top1_error: float | None  # fraction, from alexnet.evaluate.accuracy (the variant's views)
    top5_error: float | None
    n_images: int  # test images the errors were measured on
    seconds: float
    seed: int | None = None
    per_image: ImageOutcomes | None = None  # None: an old result, scored before they were kept
    regime: dict[str, Any] = field(default_factory=dict)  # how its length was chosen (runner)


@dataclass
class Value:
    """A metric's value on one run; ``lower_bound``: the true value is at least this."""

    value: float | None
    lower_bound: bool = False


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    per_image: str | None  # top1 | topk: an error rate over test images, paired image by image
    measure: Callable[[RunOutcome], Value]


def epochs_to_train_error(target: float) -> Callable[[RunOutcome], Value]:
    """The first epoch whose training top-1 error is at most ``target`` (Fig. 1's x-axis);
    a run that never gets there gives its epoch count as a lower bound."""

    def measure(outcome: RunOutcome) -> Value:
        for record in outcome.epochs:
            if record["train_top1_error"] <= target:
                return Value(float(record["epoch"]))
        return Value(float(len(outcome.epochs)) or None, lower_bound=True)

    return measure


def _percent(key: str) -> Callable[[RunOutcome], Value]:
    def measure(outcome: RunOutcome) -> Value:
        value = getattr(outcome, key)
        return Value(None if value is None else 100.0 * value)

    return measure


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("top1_error", "% top-1 test error", "top1", _percent("top1_error")),
        Metric("top5_error", "% top-5 test error", "topk", _percent("top5_error")),
        Metric("epochs_to_25pct_train_error", "epochs to 25% training error", None,
               epochs_to_train_error(0.25)),
    )
}


@dataclass
class Summary:
    """A variant's values over seeds."""

    values: list[Value]
    n_images: int

    @property
    def known(self) -> list[float]:
        return [v.value for v in self.values if v.value is not None]

    @property
    def complete(self) -> bool:
        return bool(self.values) and all(v.value is not None for v in self.values)

    @property
    def lower_bound(self) -> bool:
        return any(v.lower_bound for v in self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.known) if self.complete else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.known) if self.complete and len(self.known) > 1 else None


@dataclass
class Effect:
    """A comparison's result: ``paired`` holds the value, its interval and the verdict."""

    baseline: str
    variant: str
    paper: float | None
    paper_text: str
    paired: PairedEffect

    @property
    def value(self) -> float | None:
        return self.paired.value

    @property
    def verdict(self) -> str:
        return self.paired.verdict

    @property
    def reason(self) -> str:
        return self.paired.reason

    def to_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "variant": self.variant, "paper": self.paper,
                "paper_text": self.paper_text, **self.paired.to_json()}


def _undecided(reason: str, seeds: int = 0, value: float | None = None,
               lower_bound: bool = False) -> PairedEffect:
    return PairedEffect(value, None, lower_bound, INCONCLUSIVE, reason, "none", 0, seeds)


def compare(rule: Rule, baseline: Sequence[RunOutcome], variant: Sequence[RunOutcome],
            metric: Metric) -> PairedEffect:
    """The paired effect of ``variant``'s outcomes against ``baseline``'s (seed by seed; one
    outcome on either side, an ensemble, is paired with every seed of the other)."""
    if metric.per_image is not None:
        sides = [variant] if rule.kind == "absolute" else [baseline, variant]
        outcomes = [o for side in sides for o in side]
        if any(o.per_image is None for o in outcomes):
            return _undecided("no per-image outcomes (an older result): unpaired, rerun needed")
        if len({o.per_image.images for o in outcomes if o.per_image is not None}) != 1:
            return _undecided("the variants were scored on different test images: cannot pair")
        top = metric.per_image
        errors = {id(o): o.per_image.errors(top) for o in outcomes if o.per_image is not None}
        return per_image_effect(rule, [errors[id(o)] for o in baseline] if rule.kind != "absolute"
                                else [], [errors[id(o)] for o in variant])
    values = {"baseline": [metric.measure(o) for o in baseline],
              "variant": [metric.measure(o) for o in variant]}
    if rule.kind != "ratio":
        return _undecided(f"no interval for {metric.name} as a {rule.kind}", len(variant))
    if any(v.value is None for side in values.values() for v in side):
        return _undecided("a run gave no value (see the table)", len(variant))
    if any(v.lower_bound for v in values["baseline"]):
        return _undecided("the baseline gave only a lower bound: no ratio", len(variant))
    if len(baseline) != len(variant):
        return _undecided("the variants have different seeds: cannot pair", len(variant))
    return per_seed_ratio(rule, [v.value for v in values["baseline"]],  # type: ignore[misc]
                          [v.value for v in values["variant"]],  # type: ignore[misc]
                          lower_bound=any(v.lower_bound for v in values["variant"]))


def overall(verdicts: Sequence[str]) -> str:
    """One word for an experiment: any contradicted -> contradicted; all reproduced ->
    reproduced; otherwise inconclusive."""
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE
