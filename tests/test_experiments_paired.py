"""Paired statistics and the verdict rule on constructed outcomes with a known answer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from alexnet.errors import AlexNetError
from alexnet.experiments import get_experiment
from alexnet.experiments.measure import METRICS, ImageOutcomes, RunOutcome, compare, overall
from alexnet.experiments.paired import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Rule,
    _normal_quantile,
    _t_quantile,
    bootstrap,
    mcnemar,
    per_image_effect,
    per_seed_ratio,
)
from alexnet.experiments.registry import Plateau
from alexnet.experiments.report import FORMAT, readme_row, write_readme_table
from alexnet.experiments.runner import definition_key, plateau_decision
from alexnet.runtime.machine import describe_cpu

LRN = Rule("difference", paper=1.4, threshold=0.7)


def _errors(n: int, wrong: list[int] | np.ndarray) -> np.ndarray:
    errors = np.zeros(n)
    errors[np.asarray(wrong, dtype=np.int64)] = 1.0
    return errors


def _pair(n: int, shared: int, only_variant: int, only_baseline: int) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and variant error vectors: ``shared`` images wrong for both, then
    ``only_variant`` wrong for the variant alone, then ``only_baseline`` for the baseline alone."""
    both = list(range(shared))
    variant = both + list(range(shared, shared + only_variant))
    start = shared + only_variant
    baseline = both + list(range(start, start + only_baseline))
    return _errors(n, baseline), _errors(n, variant)


def test_two_variants_differing_on_exactly_k_images() -> None:
    n, k = 10_000, 120
    baseline, variant = _pair(n, shared=2_500, only_variant=k, only_baseline=0)
    effect = per_image_effect(LRN, [baseline], [variant])
    assert effect.value == pytest.approx(100 * k / n)  # 1.2 points
    assert effect.discordant == (k, 0) and effect.n_images == n and effect.n_seeds == 1
    # McNemar with b = k, c = 0: z = sqrt(k)
    assert effect.mcnemar_p == pytest.approx(math.erfc(math.sqrt(k) / math.sqrt(2)))
    low, high = effect.interval
    assert 0 < low < effect.value < high
    # the paired interval is the binomial one of k discordant images, not of 2,500 errors:
    # var(mean d) = (k/n)(1 - k/n) / n
    normal = 1.96 * 100 * math.sqrt(k / n * (1 - k / n) / n)
    assert (high - low) / 2 == pytest.approx(normal, rel=0.12)
    unpaired = 1.96 * 100 * math.sqrt(2 * 0.25 * 0.75 / n)  # what the old standard error gave
    assert (high - low) / 2 < unpaired / 3
    assert effect.verdict == REPRODUCED  # interval above 0, 1.2 >= 0.7


def test_discordant_images_both_ways_cancel() -> None:
    baseline, variant = _pair(1_000, shared=100, only_variant=30, only_baseline=20)
    effect = per_image_effect(LRN, [baseline], [variant])
    assert effect.value == pytest.approx(100 * (30 - 20) / 1_000)
    p, discordant = mcnemar([baseline], [variant])
    assert discordant == (30, 20) and p == pytest.approx(math.erfc(10 / math.sqrt(50) / math.sqrt(2)))
    same = per_image_effect(LRN, [baseline], [baseline])
    assert same.value == 0 and same.interval == (0.0, 0.0) and same.mcnemar_p == 1.0


@pytest.mark.parametrize(("n", "only_variant", "only_baseline", "expected"), [
    (10_000, 300, 0, REPRODUCED),       # +3 points, resolved
    (200_000, 300, 100, CONTRADICTED),  # +0.1 points, resolved: excludes the paper's 1.4
    (10_000, 50, 300, CONTRADICTED),    # -2.5 points: the wrong way
    (100, 3, 0, INCONCLUSIVE),          # 100 images cannot resolve 3 points
])
def test_the_verdict_rule(n: int, only_variant: int, only_baseline: int, expected: str) -> None:
    baseline, variant = _pair(n, shared=n // 4, only_variant=only_variant, only_baseline=only_baseline)
    assert per_image_effect(LRN, [baseline], [variant]).verdict == expected


def test_a_claim_without_a_number_is_contradicted_only_below_its_threshold() -> None:
    dropout = Rule("difference", paper=None, threshold=0.5)
    baseline, variant = _pair(200_000, shared=1_000, only_variant=200, only_baseline=200)
    effect = per_image_effect(dropout, [baseline], [variant])
    assert effect.verdict == CONTRADICTED and "threshold" in effect.reason


def test_an_absolute_claim() -> None:
    rule = Rule("absolute", paper=18.0, threshold=1.0)
    good = per_image_effect(rule, [], [_errors(10_000, np.arange(1_700))])  # 17%
    bad = per_image_effect(rule, [], [_errors(10_000, np.arange(2_200))])  # 22%
    edge = per_image_effect(rule, [], [_errors(10_000, np.arange(1_900))])  # 19%: on the limit
    assert (good.verdict, bad.verdict, edge.verdict) == (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
    assert good.mcnemar_p is None and good.value == pytest.approx(17.0)


def _seeds(rng: np.random.Generator, seeds: int, n: int, only_variant: int,
           only_baseline: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeds whose disagreements fall on different random images (training noise)."""
    baselines, variants = [], []
    for _ in range(seeds):
        order = rng.permutation(n)
        baselines.append(_errors(n, order[:only_baseline]))
        variants.append(_errors(n, order[only_baseline:only_baseline + only_variant]))
    return baselines, variants


def test_more_seeds_shrink_the_interval() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for seeds in (2, 8):
        baselines, variants = _seeds(rng, seeds, 2_000, 60, 40)
        low, high = per_image_effect(LRN, baselines, variants).interval
        widths.append(high - low)
    assert widths[1] < 0.7 * widths[0]


def test_seeds_needed_decide_it_at_the_observed_spread() -> None:
    rng = np.random.default_rng(1)
    baselines, variants = _seeds(rng, 2, 1_000, 24, 16)  # +0.8 points, noisy
    effect = per_image_effect(LRN, baselines, variants)
    assert effect.verdict == INCONCLUSIVE
    assert effect.seeds_needed is not None and effect.seeds_needed > 2
    assert f"about {effect.seeds_needed} seeds" in effect.seeds_note
    parts = effect.components
    assert set(parts) == {"image", "seed", "interaction"} and parts["interaction"] > 0
    one = per_image_effect(LRN, baselines[:1], variants[:1])
    assert one.seeds_needed is None and "unmeasured" in (one.seeds_note or "x")
    # when the same images decide every seed, more seeds cannot help
    baseline, variant = _pair(400, shared=50, only_variant=6, only_baseline=2)
    fixed = per_image_effect(LRN, [baseline] * 3, [variant] * 3)
    assert fixed.verdict == INCONCLUSIVE and fixed.seeds_needed is None
    assert "more seeds cannot decide it" in fixed.seeds_note


def test_an_ensemble_pairs_with_every_member_seed() -> None:
    n = 1_000
    ensemble = _errors(n, range(200))
    members = [_errors(n, range(230)), _errors(n, range(250))]
    effect = per_image_effect(Rule("difference", 2.6, 1.3), [ensemble], members)
    assert effect.value == pytest.approx(100 * (30 + 50) / 2 / n)
    assert effect.discordant == (80, 0) and effect.n_seeds == 2


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    table = np.random.default_rng(2).choice([-100.0, 0.0, 100.0], p=[0.02, 0.95, 0.03], size=(3, 500))
    assert bootstrap(table, seed=5) == bootstrap(table, seed=5)
    low, high = bootstrap(table)
    assert low < table.mean() < high


def test_ratios_are_paired_by_seed() -> None:
    fig1 = Rule("ratio", paper=6.0, threshold=3.0)
    effect = per_seed_ratio(fig1, [5.0, 6.0, 5.0], [30.0, 35.0, 31.0], lower_bound=False)
    assert effect.value == pytest.approx(math.exp(np.mean(np.log([6.0, 35 / 6, 6.2]))))
    assert effect.verdict == REPRODUCED and effect.method == "t over seeds"
    one = per_seed_ratio(fig1, [5.0], [30.0], lower_bound=False)
    assert one.verdict == INCONCLUSIVE and one.interval is None and "3 seeds" in one.reason
    slow = per_seed_ratio(fig1, [10.0, 10.0, 11.0], [12.0, 13.0, 12.0], lower_bound=False)
    assert slow.verdict == CONTRADICTED
    # a lower bound (tanh never got there) can be reproduced but never contradicted
    bound = per_seed_ratio(fig1, [10.0, 10.0, 11.0], [12.0, 13.0, 12.0], lower_bound=True)
    assert bound.verdict == INCONCLUSIVE


def test_quantiles_match_the_textbook_tables() -> None:
    # two-sided 95% t and normal critical values (NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
    for df, value in ((1, 12.706), (2, 4.303), (3, 3.182), (10, 2.228), (30, 2.042)):
        assert _t_quantile(0.975, df) == pytest.approx(value, abs=1e-3)
    assert _normal_quantile(0.975) == pytest.approx(1.960, abs=1e-3)


# ---- outcomes, pairing, old results ------------------------------------------------------------

def _outcome(errors: np.ndarray, seed: int = 0, labels: np.ndarray | None = None) -> RunOutcome:
    n = len(errors)
    labels = np.arange(n) % 10 if labels is None else labels
    per_image = ImageOutcomes(np.arange(n), labels, errors == 0, np.ones(n, dtype=bool))
    return RunOutcome([], float(errors.mean()), 0.0, n, 1.0, seed, per_image)


def test_image_outcomes_round_trip_through_json() -> None:
    rng = np.random.default_rng(3)
    outcome = ImageOutcomes(np.r_[np.arange(5), np.arange(7, 300)], rng.integers(0, 1000, 298),
                            rng.random(298) < 0.7, rng.random(298) < 0.9)
    record = json.loads(json.dumps(outcome.to_json()))
    assert record["index_ranges"] == [[0, 5], [7, 300]] and record["n"] == 298
    assert record["labels"].startswith("<u2:")  # 1000 classes; 10 fit one byte each
    assert _outcome(np.zeros(8)).per_image.to_json()["labels"].startswith("<u1:")  # type: ignore[union-attr]
    again = ImageOutcomes.from_json(record)
    for name in ("indices", "labels", "top1_correct", "topk_correct"):
        np.testing.assert_array_equal(getattr(again, name), getattr(outcome, name))
    record["labels"] = ImageOutcomes(outcome.indices, outcome.labels + 1, outcome.top1_correct,
                                     outcome.topk_correct).to_json()["labels"]
    with pytest.raises(ValueError, match="digest"):
        ImageOutcomes.from_json(record)


def test_compare_pairs_only_the_same_images_and_says_when_it_cannot() -> None:
    metric = METRICS["top1_error"]
    baseline, variant = _pair(500, shared=50, only_variant=20, only_baseline=0)
    paired = compare(LRN, [_outcome(baseline)], [_outcome(variant)], metric)
    assert paired.value == pytest.approx(4.0) and paired.interval is not None
    shuffled = _outcome(variant, labels=np.arange(500)[::-1] % 10)
    assert "different test images" in compare(LRN, [_outcome(baseline)], [shuffled], metric).reason
    old = RunOutcome([], 0.3, 0.1, 500, 1.0, 0, None)
    unpaired = compare(LRN, [old], [_outcome(variant)], metric)
    assert unpaired.verdict == INCONCLUSIVE and "unpaired, rerun needed" in unpaired.reason


def test_overall_verdict() -> None:
    assert overall([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert overall([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert overall([REPRODUCED, CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert overall([]) == INCONCLUSIVE


# ---- the plateau rule -----------------------------------------------------------------------------

def _curve(errors: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, "val_top1_error": v, "train_top1_error": 0.1} for e, v in
            enumerate(errors, start=1)]


def test_the_plateau_rule_stops_when_validation_stops_improving_or_rises() -> None:
    rule = Plateau("x", patience=3, min_delta=0.01, max_epochs=20)
    assert not plateau_decision(_curve([0.5, 0.4, 0.35, 0.3]), rule)["decided"]
    rising = plateau_decision(_curve([0.5, 0.4, 0.3, 0.31, 0.33, 0.36, 0.4]), rule)
    assert (rising["decided"], rising["why"], rising["stopped_at"], rising["best_epoch"]) == \
        (True, "plateau", 6, 3)
    flat = plateau_decision(_curve([0.5, 0.4, 0.3, 0.295, 0.296, 0.292]), rule)  # < min_delta
    assert flat["stopped_at"] == 6 and flat["epochs"] == 6
    capped = plateau_decision(_curve([0.5 - 0.02 * i for i in range(20)]), rule)
    assert capped["why"] == "max_epochs" and capped["epochs"] == 20


# ---- the README table ---------------------------------------------------------------------------

def _record(**changes: object) -> dict[str, object]:
    record = {"format": FORMAT, "experiment": "lrn", "scale": "small", "paper_numbers": "13% -> 11%",
              "effect_kind": "difference", "seeds": [0, 1], "verdict": REPRODUCED,
              "effects": [{"variant": "no-lrn", "baseline": "lrn", "value": 1.9,
                           "interval": [1.2, 2.6], "lower_bound": False}],
              "definition": definition_key(get_experiment("lrn"), "small", [0, 1], None)}
    return {**record, **changes}


def test_readme_rows_show_the_interval_and_mark_old_results() -> None:
    row = readme_row(_record(), "docs/results/lrn-small.md")
    assert row == ("| [lrn](docs/results/lrn-small.md) | 13% -> 11% | +1.90 [1.20, 2.60] "
                   "(small, 2 seeds) | **reproduced** |")
    # several comparisons: named by variant, and by baseline too where a variant repeats
    both = {"interval": [0.1, 0.5], "lower_bound": False}
    row = readme_row(_record(effects=[{"variant": "none", "baseline": "a", "value": 0.3, **both},
                                      {"variant": "none", "baseline": "b", "value": 0.2, **both},
                                      {"variant": "c", "baseline": "a", "value": 0.1, **both}]), "x.md")
    assert "| none vs a: +0.30 [0.10, 0.50]; none vs b: +0.20 [0.10, 0.50]; c: +0.10 " in row
    old = _record(effects=[{"variant": "no-lrn", "baseline": "lrn", "value": 0.06,
                            "standard_error": 0.61, "lower_bound": False}],
                  verdict="not measurable at this scale", seeds=[0])
    del old["format"]
    row = readme_row(old, "x.md")
    assert "+0.06 (SE 0.61)" in row and "unpaired, rerun needed (was: not measurable" in row
    # paired, but made by an earlier definition (another regime, other runs): marked too
    changed = readme_row(_record(definition="0123456789abcdef"), "x.md")
    assert changed.endswith("| earlier setting, rerun needed (was: reproduced) |")


def test_the_real_old_results_still_render(tmp_path: Path) -> None:
    """docs/results/*.json from before per-image outcomes: the table says so, no crash."""
    results = sorted((Path(__file__).parents[1] / "docs" / "results").glob("*-small.json"))
    assert results
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- experiments:begin -->\nold\n<!-- experiments:end -->\ntail\n")
    write_readme_table(readme, results)
    text = readme.read_text()
    assert text.startswith("# x\n<!-- experiments:begin -->\n| experiment |") and text.endswith(
        "<!-- experiments:end -->\ntail\n")
    assert "old\n" not in text and text.count("| [") == len(results)
    assert f"from {len(results)} results (their wall times add to" in text and f"{describe_cpu()}, " in text
    for path in results:
        if json.loads(path.read_text()).get("format") != FORMAT:
            assert f"[{path.stem.rsplit('-', 1)[0]}]" in text
    unpaired = any(json.loads(p.read_text()).get("format") != FORMAT for p in results)
    assert ("unpaired, rerun needed" in text) == unpaired
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(AlexNetError, match="no '<!-- experiments:begin -->'"):
        write_readme_table(tmp_path / "plain.md", results)
