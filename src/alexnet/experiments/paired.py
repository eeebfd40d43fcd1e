"""Paired statistics for experiments whose variants are scored on the same test images.

Two variants of an experiment are scored on the same N test images, seed by seed, so the
comparison is paired: most images are right (or wrong) for both, and only the images on
which they disagree carry the effect. With ``D[s, i]`` = (variant's error - baseline's error)
on image i for seed s (in points: 100 x (-1, 0 or 1)), the effect is the mean of D:

- **interval**: a bootstrap that resamples seeds and test images together (each replicate
  draws S seeds and N images with replacement, the same images for every seed, as every
  seed is scored on the same test set) gives the 95% percentile interval of the effect;
- **McNemar's test** within each seed, combined across seeds: z = sum_s (b_s - c_s) /
  sqrt(sum_s (b_s + c_s)), with b_s / c_s the images only the variant / only the baseline
  got wrong (a stratified McNemar test); its two-sided p-value is reported beside the
  interval;
- **variance components** of D (images a, seeds b, their interaction e, from the two-way
  table's mean squares) project the interval's half-width to S' seeds:
  1.96 * sqrt(var_a / N + var_b / S' + var_e / (N S')). The image term does not shrink with
  seeds: past some S' only more test images narrow the interval.

Metrics that are not per-image (epochs to a training error) are paired by seed: the log
of each seed's ratio, a Student-t interval over seeds, exponentiated.

The verdict (docs/experiments.md), for the effect the paper's way (``signed``):

- **reproduced**: the interval lies on the paper's side (its paper-side end beyond no
  effect) and the effect reaches the threshold;
- **contradicted**: the interval excludes the paper's effect (for a claim without a number,
  the threshold): even its far end stays short of it;
- **inconclusive** otherwise, with the number of seeds that would decide it at the observed
  spread, or the reason more seeds cannot.

An absolute claim (an error rate the paper reached) is reproduced when the interval's upper
end is at most the paper's number plus the threshold, contradicted when its lower end is
above that, and inconclusive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)

LEVEL = 0.95
RESAMPLES = 2000  # bootstrap replicates: the 2.5% / 97.5% percentiles move by < 0.05 points
MAX_SEEDS = 100  # seeds_needed looks no further than this


@dataclass
class PairedEffect:
    """An effect with its 95% interval, the paired test and what would decide it."""

    value: float | None
    interval: tuple[float, float] | None  # None: cannot be computed (e.g. one seed, a ratio)
    lower_bound: bool  # the value (and the interval's upper end) is only a lower bound
    verdict: str
    reason: str
    method: str  # "bootstrap over images and seeds" | "t over seeds" | "none"
    n_images: int
    n_seeds: int
    mcnemar_p: float | None = None
    discordant: tuple[int, int] | None = None  # (only the variant wrong, only the baseline wrong)
    seeds_needed: int | None = None  # seeds that would decide it at the observed spread
    seeds_note: str = ""
    components: dict[str, float] = field(default_factory=dict)  # variances (points^2)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "interval": list(self.interval) if self.interval else None,
                "lower_bound": self.lower_bound, "verdict": self.verdict, "reason": self.reason,
                "method": self.method, "n_images": self.n_images, "n_seeds": self.n_seeds,
                "mcnemar_p": self.mcnemar_p,
                "discordant": list(self.discordant) if self.discordant else None,
                "seeds_needed": self.seeds_needed, "seeds_note": self.seeds_note,
                "components": self.components}


# ---- the decision rule ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """The claim's direction and size, in the effect's units."""

    kind: str  # difference | ratio | absolute
    paper: float | None
    threshold: float

    @property
    def neutral(self) -> float:
        return 1.0 if self.kind == "ratio" else 0.0

    @property
    def direction(self) -> float:
        return 1.0 if self.paper is None or self.paper >= self.neutral else -1.0

    def signed(self, x: float) -> float:
        """> 0: the paper's way."""
        return self.direction * (x - self.neutral)

    @property
    def needed(self) -> float:
        """The threshold as a signed effect."""
        return self.threshold - self.neutral if self.kind == "ratio" else self.threshold

    @property
    def target(self) -> float:
        """The paper's effect as a signed effect (the threshold when it gives no number)."""
        return self.needed if self.paper is None else self.signed(self.paper)

    def decide(self, value: float, low: float, high: float, lower_bound: bool) -> tuple[str, str]:
        if self.kind == "absolute":
            limit = (self.paper or 0.0) + self.threshold
            if not lower_bound and high <= limit:
                return REPRODUCED, f"interval [{low:.2f}, {high:.2f}] <= paper {self.paper:g} + {self.threshold:g}"
            if low > limit:
                return CONTRADICTED, f"interval [{low:.2f}, {high:.2f}] > paper {self.paper:g} + {self.threshold:g}"
            return INCONCLUSIVE, f"interval [{low:.2f}, {high:.2f}] contains {limit:g}"
        near, far = sorted((self.signed(low), self.signed(high)))
        if lower_bound:
            far = math.inf
        bound = " (a lower bound)" if lower_bound else ""
        if near > 0 and self.signed(value) >= self.needed:
            return REPRODUCED, (f"{value:.2f}{bound}, interval [{low:.2f}, {high:.2f}] on the "
                                f"paper's side and >= {self.threshold:g}")
        if far < self.target:
            what = "the threshold" if self.paper is None else "the paper's effect"
            return CONTRADICTED, (f"interval [{low:.2f}, {high:.2f}] excludes {what} "
                                  f"({self.paper if self.paper is not None else self.threshold:g})")
        return INCONCLUSIVE, f"{value:.2f}{bound}, interval [{low:.2f}, {high:.2f}]: undecided"


# ---- per-image effects --------------------------------------------------------------------------

def differences(baseline: Sequence[np.ndarray], variant: Sequence[np.ndarray], kind: str
                ) -> np.ndarray:
    """(S, N) per-image effects in points from per-seed 0/1 error vectors (N,).

    difference: 100 (variant - baseline), paired seed by seed; one baseline (or variant)
    vector against S of the other (an ensemble against its members) is used for every seed.
    absolute: 100 variant."""
    if kind == "absolute":
        return 100.0 * np.stack([np.asarray(v, dtype=np.float64) for v in variant])
    if len(baseline) == 1 and len(variant) > 1:
        baseline = list(baseline) * len(variant)
    if len(variant) == 1 and len(baseline) > 1:
        variant = list(variant) * len(baseline)
    if len(baseline) != len(variant):
        raise ValueError(f"cannot pair {len(baseline)} baseline seeds with {len(variant)}")
    return 100.0 * (np.stack([np.asarray(v, dtype=np.float64) for v in variant])
                    - np.stack([np.asarray(b, dtype=np.float64) for b in baseline]))


def bootstrap(table: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
              level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of table.mean() when seeds (rows) and images (columns) are
    resampled together; the same image draw serves every seed of a replicate.

    Only the K images with a non-zero entry move the mean, and their counts in a draw of N
    images are multinomial over K + 1 cells (the K images, and all the others together):
    drawn that way, a replicate costs O(K) instead of O(N)."""
    seeds, images = table.shape
    rng = np.random.default_rng(seed)
    moving = table[:, np.any(table != 0, axis=0)]  # (S, K)
    k = moving.shape[1]
    cells = np.append(np.full(k, 1.0 / images), max(0.0, 1.0 - k / images))
    replicates = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(k, 1)))
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        image_counts = rng.multinomial(images, cells, size=count)[:, :k]  # (count, K)
        seed_counts = rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=count)
        per_seed = image_counts @ moving.T / images  # (count, S)
        replicates[start:start + count] = (per_seed * seed_counts).sum(axis=1) / seeds
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar(baseline: Sequence[np.ndarray], variant: Sequence[np.ndarray]
            ) -> tuple[float, tuple[int, int]]:
    """Two-sided p of McNemar's test within each seed, combined across seeds (stratified):
    z = sum (b - c) / sqrt(sum (b + c)); b: only the variant wrong, c: only the baseline."""
    table = differences(baseline, variant, "difference") / 100.0
    only_variant = int((table > 0).sum())
    only_baseline = int((table < 0).sum())
    discordant = only_variant + only_baseline
    if discordant == 0:
        return 1.0, (0, 0)
    z = (only_variant - only_baseline) / math.sqrt(discordant)
    return math.erfc(abs(z) / math.sqrt(2)), (only_variant, only_baseline)


def components(table: np.ndarray) -> dict[str, float] | None:
    """Variances of the two-way model D = mu + a_image + b_seed + e (points^2); None with
    one seed (the seeds' spread is then unmeasured)."""
    seeds, images = table.shape
    if seeds < 2 or images < 2:
        return None
    row, column, grand = table.mean(axis=1), table.mean(axis=0), table.mean()
    residual = table - row[:, None] - column[None, :] + grand
    interaction = float((residual**2).sum() / ((seeds - 1) * (images - 1)))
    seed = max(float(row.var(ddof=1)) - interaction / images, 0.0)
    image = max(float(column.var(ddof=1)) - interaction / seeds, 0.0)
    return {"image": image, "seed": seed, "interaction": interaction}


def half_width(parts: dict[str, float], images: int, seeds: float) -> float:
    z = _normal_quantile(0.5 + LEVEL / 2)
    return z * math.sqrt(parts["image"] / images + parts["seed"] / seeds
                         + parts["interaction"] / (images * seeds))


def per_image_effect(rule: Rule, baseline: Sequence[np.ndarray], variant: Sequence[np.ndarray],
                     resamples: int = RESAMPLES, seed: int = 0) -> PairedEffect:
    """The paired effect of ``variant`` against ``baseline`` from per-seed error vectors."""
    table = differences(baseline, variant, rule.kind)
    seeds, images = table.shape
    value = float(table.mean())
    low, high = bootstrap(table, resamples, seed)
    verdict, reason = rule.decide(value, low, high, lower_bound=False)
    p, discordant = (None, None) if rule.kind == "absolute" else mcnemar(baseline, variant)
    parts = components(table)
    effect = PairedEffect(value, (low, high), False, verdict, reason,
                          "bootstrap over images and seeds", images, seeds, p, discordant,
                          components=parts or {})
    if verdict == INCONCLUSIVE:
        effect.seeds_needed, effect.seeds_note = _seeds_to_decide(rule, value, parts, images, seeds)
    return effect


def _seeds_to_decide(rule: Rule, value: float, parts: dict[str, float] | None, images: int,
                     seeds: int) -> tuple[int | None, str]:
    if parts is None:
        return None, (f"{seeds} seed: the spread over seeds is unmeasured; run at least 3 seeds "
                      "to project how many would decide it")
    for count in range(seeds + 1, MAX_SEEDS + 1):
        h = half_width(parts, images, count)
        if rule.decide(value, value - h, value + h, False)[0] != INCONCLUSIVE:
            return count, (f"about {count} seeds would decide it if the effect stayed {value:.2f} "
                           f"(projected interval +-{h:.2f})")
    floor = _normal_quantile(0.5 + LEVEL / 2) * math.sqrt(parts["image"] / images)
    return None, (f"more seeds cannot decide it: the {images} test images alone leave "
                  f"+-{floor:.2f} at any number of seeds (needs more test images, or the "
                  "effect is too close to the threshold)")


# ---- per-seed effects (a metric that is not per image) --------------------------------------------

def per_seed_ratio(rule: Rule, baseline: Sequence[float], variant: Sequence[float],
                   lower_bound: bool) -> PairedEffect:
    """ratio = variant / baseline per seed; the interval is a Student-t interval of the
    seeds' log ratios, exponentiated. ``lower_bound``: a variant value is only a bound."""
    ratios = [v / b for b, v in zip(baseline, variant, strict=True)]
    value = float(math.exp(np.mean(np.log(ratios))))
    seeds = len(ratios)
    if seeds < 2:
        word = INCONCLUSIVE
        reason = (f"{value:.2f}{' (a lower bound)' if lower_bound else ''} from one seed: no "
                  "interval; run at least 3 seeds")
        return PairedEffect(value, None, lower_bound, word, reason, "none", 0, seeds,
                            seeds_note="one seed gives no spread; run at least 3 seeds")
    logs = np.log(ratios)
    spread = float(logs.std(ddof=1)) / math.sqrt(seeds)
    t = _t_quantile(0.5 + LEVEL / 2, seeds - 1)
    low, high = math.exp(logs.mean() - t * spread), math.exp(logs.mean() + t * spread)
    verdict, reason = rule.decide(value, low, high, lower_bound)
    effect = PairedEffect(value, (low, high), lower_bound, verdict, reason, "t over seeds", 0, seeds)
    if verdict == INCONCLUSIVE:
        sd = float(logs.std(ddof=1))
        for count in range(seeds + 1, MAX_SEEDS + 1):
            h = _t_quantile(0.5 + LEVEL / 2, count - 1) * sd / math.sqrt(count)
            mean = float(logs.mean())
            if rule.decide(value, math.exp(mean - h), math.exp(mean + h), lower_bound)[0] != INCONCLUSIVE:
                effect.seeds_needed = count
                effect.seeds_note = f"about {count} seeds would decide it at the observed spread"
                break
        else:
            effect.seeds_note = f"more than {MAX_SEEDS} seeds at the observed spread"
    return effect


# ---- quantiles (no scipy in the core dependencies) -----------------------------------------------

def _normal_quantile(p: float) -> float:
    return _bisect(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)), p)


def _t_quantile(p: float, df: int) -> float:
    """Student t quantile for integer ``df``: the CDF's closed form (Abramowitz & Stegun
    26.7.3-4, a finite series in cos(theta), theta = atan(t / sqrt(df))) inverted by bisection."""

    def cdf(t: float) -> float:
        theta = math.atan(t / math.sqrt(df))
        c2, sine = math.cos(theta) ** 2, math.sin(theta)
        if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2.4/3.5 cos^4 + ...))
            term = total = math.cos(theta)
            for j in range(1, (df - 3) // 2 + 1):
                term *= 2 * j / (2 * j + 1) * c2
                total += term
            inside = 2 / math.pi * (theta + (sine * total if df > 1 else 0.0))
        else:  # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
            term = total = 1.0
            for j in range(1, (df - 2) // 2 + 1):
                term *= (2 * j - 1) / (2 * j) * c2
                total += term
            inside = sine * total
        return 0.5 + inside / 2

    return _bisect(cdf, p, high=1e4)


def _bisect(cdf: Any, p: float, high: float = 40.0) -> float:
    low = 0.0
    for _ in range(60):
        middle = (low + high) / 2
        if cdf(middle) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2
