"""From finished runs to numbers, and from numbers to a plain verdict.

A ``RunOutcome`` is what one trained (or ensembled) model gives: its per-epoch records
(metrics.jsonl) and its scores from ``alexnet.evaluate``. ``METRICS`` turns outcomes into one
number each; ``compare`` turns the numbers of two variants into an effect with a standard
error, and ``verdict`` into one of three words, by this rule:

- **reproduced**: the effect points the paper's way, is at least the experiment's
  threshold, and is larger than twice its standard error;
- **not reproduced**: the effect is resolved below the threshold: even the effect plus
  twice its standard error does not reach it (too small, or the wrong way);
- **not measurable at this scale**: otherwise - a number is missing (e.g. a run never
  reached the error it is timed to, or only a lower bound below the threshold), or the
  error bar is too wide to tell either way.

Standard error: the spread over seeds (when there are two or more) combined with the
binomial sampling error of an error rate measured on N test images, sqrt(p (1 - p) / N),
so even one seed gets an honest error bar for error-rate metrics.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURABLE = "not measurable at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_MEASURABLE)


@dataclass
class RunOutcome:
    """One model's results: epoch records of its training run and its evaluation."""

    epochs: list[dict[str, Any]]
    top1_error: float | None  # fraction, from alexnet.evaluate (the variant's views)
    top5_error: float | None
    n_images: int  # test images the errors were measured on
    seconds: float
    seed: int | None = None


@dataclass
class Value:
    """A metric's value on one run; ``lower_bound``: the true value is at least this."""

    value: float | None
    lower_bound: bool = False


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    is_error_rate: bool  # a percentage of N test images: gets a binomial error bar
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
        Metric("top1_error", "% top-1 test error", True, _percent("top1_error")),
        Metric("top5_error", "% top-5 test error", True, _percent("top5_error")),
        Metric("epochs_to_25pct_train_error", "epochs to 25% training error", False,
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

    def standard_error(self, is_error_rate: bool) -> float:
        """Of the mean, in the metric's units (see the module doc)."""
        variance = 0.0
        if self.std is not None:
            variance += self.std ** 2 / len(self.known)
        if is_error_rate and self.mean is not None and self.n_images > 0:
            p = min(max(self.mean / 100.0, 0.0), 1.0)
            variance += (100.0 ** 2) * p * (1 - p) / self.n_images
        return math.sqrt(variance)


@dataclass
class Effect:
    baseline: str
    variant: str
    value: float | None
    standard_error: float
    lower_bound: bool
    paper: float | None
    paper_text: str
    verdict: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


def compare(kind: str, baseline: Summary, variant: Summary, metric: Metric
            ) -> tuple[float | None, float, bool]:
    """(effect, standard error, effect is a lower bound) of ``variant`` against ``baseline``."""
    se_variant = variant.standard_error(metric.is_error_rate)
    if kind == "absolute":
        return variant.mean, se_variant, variant.lower_bound
    se_baseline = baseline.standard_error(metric.is_error_rate)
    if baseline.mean is None or variant.mean is None:
        return None, math.inf, False
    if kind == "difference":
        bound = variant.lower_bound and not baseline.lower_bound
        if baseline.lower_bound:
            return None, math.inf, False  # variant - (at least x): no bound either way
        return variant.mean - baseline.mean, math.hypot(se_variant, se_baseline), bound
    if baseline.lower_bound or baseline.mean <= 0:
        return None, math.inf, False  # x / (at least y): unknown
    ratio = variant.mean / baseline.mean
    # first-order propagation: relative errors add in quadrature
    relative = math.hypot(se_variant / variant.mean if variant.mean else 0.0,
                          se_baseline / baseline.mean)
    return ratio, ratio * relative, variant.lower_bound


def verdict(kind: str, effect: float | None, standard_error: float, lower_bound: bool,
            paper: float | None, threshold: float) -> tuple[str, str]:
    """(verdict, one-line reason) by the rule of the module doc."""
    if effect is None:
        return NOT_MEASURABLE, "a variant gave no value (see the table)"
    if kind == "absolute":
        # an absolute claim (an error rate): we match it when we are no worse than the
        # paper's number plus the threshold
        limit = (paper if paper is not None else 0.0) + threshold
        if lower_bound:
            return NOT_MEASURABLE, "only a lower bound was measured"
        if effect <= limit:
            return REPRODUCED, f"{effect:.2f} <= paper {paper:g} + {threshold:g}"
        if effect - 2 * standard_error > limit:
            return NOT_REPRODUCED, f"{effect:.2f} - 2 SE > paper {paper:g} + {threshold:g}"
        return NOT_MEASURABLE, f"{effect:.2f} +- 2 x {standard_error:.2f} straddles {limit:g}"
    neutral = 1.0 if kind == "ratio" else 0.0
    direction = 1.0 if paper is None or paper >= neutral else -1.0
    signed = direction * (effect - neutral)  # > 0: the paper's way
    needed = threshold - neutral if kind == "ratio" else threshold
    if signed >= needed and signed > 2 * standard_error:
        bound = " (a lower bound)" if lower_bound else ""
        return REPRODUCED, f"{effect:.2f}{bound} is the paper's way, >= {threshold:g} and > 2 SE"
    if lower_bound:
        return NOT_MEASURABLE, f"only a lower bound ({effect:.2f}) was measured, below {threshold:g}"
    if signed + 2 * standard_error < needed:
        return NOT_REPRODUCED, (f"{effect:.2f} (SE {standard_error:.2f}) is resolved below "
                                f"{threshold:g} the paper's way")
    return NOT_MEASURABLE, (f"{effect:.2f} +- 2 x {standard_error:.2f}: too noisy at this scale "
                            f"to tell whether it reaches {threshold:g}")


def overall(verdicts: Sequence[str]) -> str:
    """One word for an experiment: any not reproduced -> not reproduced; all reproduced ->
    reproduced; otherwise not measurable at this scale."""
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return NOT_MEASURABLE
