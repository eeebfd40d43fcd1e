"""The experiment registry, the verdict rule and the table / plot writer (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.errors import AlexNetError
from alexnet.experiments import EXPERIMENTS, get_experiment
from alexnet.experiments.measure import (
    METRICS,
    ImageOutcomes,
    RunOutcome,
    Summary,
    Value,
    compare,
    overall,
)
from alexnet.experiments.paired import Rule
from alexnet.experiments.registry import Comparison, Experiment, Scale, Variant, check_experiment
from alexnet.experiments.report import to_markdown, write
from alexnet.experiments.runner import ExperimentResult, VariantResult
from alexnet.models import create_model

THE_TEN = ("relu-vs-tanh", "lrn", "overlapping-pooling", "dropout", "pca-lighting", "depth",
           "two-towers", "ten-crop", "ensemble", "cifar10-18pct")


def test_the_issue_s_ten_experiments_are_registered() -> None:
    assert tuple(EXPERIMENTS) == THE_TEN


@pytest.mark.parametrize("name", THE_TEN)
def test_every_experiment_states_its_claim_and_the_paper_s_numbers(name: str) -> None:
    experiment = get_experiment(name)
    assert len(experiment.claim) > 40 and experiment.section
    assert any(ch.isdigit() for ch in experiment.paper_numbers) or "no number" in experiment.paper_numbers.lower()
    assert experiment.metric in METRICS and experiment.threshold > 0 and experiment.threshold_reason
    assert experiment.comparisons and len(experiment.variants) >= 1
    check_experiment(experiment)
    for comparison in experiment.comparisons:
        assert comparison.paper_text
        if comparison.paper is not None and experiment.effect == "difference":
            # the threshold is never above the paper's own effect
            assert experiment.threshold <= abs(comparison.paper)


@pytest.mark.parametrize("name", THE_TEN)
@pytest.mark.parametrize("scale", ["small", "paper", "test"])
def test_every_variant_builds_a_valid_config_at_every_scale(name: str, scale: str) -> None:
    experiment = get_experiment(name)
    configs = {v.name: experiment.config(v, scale, seed=3) for v in experiment.variants}
    for variant in experiment.variants:
        config = configs[variant.name]
        assert config.seed == 3 and config.data
        for key, value in variant.model_options().items():
            assert config.model_options[key] == value, (variant.name, key)
        for key, value in variant.overrides.items():
            if key != "model_options":
                assert getattr(config, key) == value, (variant.name, key)
    # arms with different overrides really train different things; arms that differ only in
    # how they are scored (10-crop, ensemble) share one config, hence one run per seed
    arms = {json.dumps(v.overrides, sort_keys=True) for v in experiment.variants}
    dumps = {json.dumps(c.to_dict(), sort_keys=True) for c in configs.values()}
    assert len(dumps) == len(arms)


@pytest.mark.parametrize("name", THE_TEN)
def test_small_scale_models_run_at_their_crop_size(name: str) -> None:
    """Catches a variant whose network cannot take the small scale's images (e.g. pooling)."""
    experiment = get_experiment(name)
    for variant in experiment.training_variants():
        config = experiment.config(variant, "small")
        model = create_model(config.model, **{**config.model_options, "num_classes": 10}).eval()
        with torch.no_grad():
            logits = model(torch.randn(2, 3, config.crop_size, config.crop_size))
        assert logits.shape == (2, 10)


def test_the_small_relu_vs_tanh_scale_is_fig1_without_regularisation() -> None:
    experiment = get_experiment("relu-vs-tanh")
    relu, tanh = (experiment.config(v, "small") for v in ("relu", "tanh"))
    assert relu.model == tanh.model == "cifar_fig1" and relu.weight_decay == 0.0
    assert relu.model_options["activation"] == "relu" and tanh.model_options["activation"] == "tanh"
    assert relu.pca_lighting == 0 and not relu.flip and relu.crop_size == 32
    # each run trains until it reaches 25% training error (Fig. 1's measure), in chunks
    regime = experiment.scale("small").regime
    assert regime is not None and regime.target == 0.25 and relu.schedule == "step"


def test_the_small_lrn_scale_is_the_net_of_the_paper_s_footnote() -> None:
    experiment = get_experiment("lrn")
    with_norm, without = (experiment.config(v, "small") for v in ("lrn", "no-lrn"))
    assert with_norm.model == without.model == "cifar_conv_local"
    assert with_norm.model_options["lrn"] and not without.model_options["lrn"]
    # layer-params-conv-local-13pct.cfg: wc 0 on conv1 / conv2, 0.004 elsewhere; 24 px crops
    assert with_norm.weight_decay == 0.004 and with_norm.layer_weight_decay == {
        "features.conv1.weight": 0.0, "features.conv2.weight": 0.0}
    assert (with_norm.crop_size, with_norm.image_size, with_norm.flip) == (24, 32, True)
    assert with_norm.lr == 0.001 and with_norm.bias_lr_factor == 2.0


@pytest.mark.parametrize(("name", "baseline"), [("dropout", "dropout-0.5"),
                                                ("pca-lighting", "pca-lighting"),
                                                ("depth", "full")])
def test_overfitting_claims_train_until_the_baseline_stops_improving(name: str, baseline: str) -> None:
    experiment = get_experiment(name)
    regime = experiment.scale("small").regime
    assert regime is not None and regime.variant == baseline and regime.patience > 0
    config = experiment.config(baseline, "small")
    assert config.schedule == "plateau" and config.val_every_epochs == 1
    assert config.epochs == regime.max_epochs


def test_the_paper_scale_is_imagenet_sized() -> None:
    config = get_experiment("lrn").config("no-lrn", "paper")
    assert (config.model, config.crop_size, config.image_size, config.epochs) == ("alexnet2012", 224, 256, 90)
    assert config.model_options["lrn"] is False and config.batch_size == 128


def test_unknown_names_and_too_few_seeds_are_user_errors() -> None:
    with pytest.raises(AlexNetError, match="unknown experiment 'relu'"):
        get_experiment("relu")
    with pytest.raises(AlexNetError, match="unknown scale"):
        get_experiment("lrn").config("lrn", "huge")
    from alexnet.experiments.registry import seeds_for

    with pytest.raises(AlexNetError, match="at least 2 seeds"):
        seeds_for(get_experiment("ensemble"), "small", 1)
    assert seeds_for(get_experiment("lrn"), "small", 3) == [0, 1, 2]


def test_a_broken_definition_is_caught() -> None:
    scales = {s: Scale("x", None, {"data": "d"}) for s in ("small", "paper", "test")}
    broken = Experiment("x", "claim", "§0", "1%", "top1_error", "difference", 1.0, "why",
                        (Variant("a"),), (Comparison("a", "b", 1.0, "t"),), scales)
    with pytest.raises(ValueError, match="unknown variant 'b'"):
        check_experiment(broken)


# ---- metrics and the verdict rule ---------------------------------------------------------------

def _summary(*values: float | None, n_images: int = 0, bound: bool = False) -> Summary:
    return Summary([Value(v, lower_bound=bound) for v in values], n_images)


def test_epochs_to_25pct_training_error_is_the_first_epoch_at_or_below_it() -> None:
    measure = METRICS["epochs_to_25pct_train_error"].measure
    records = [{"epoch": e, "train_top1_error": err} for e, err in ((1, 0.6), (2, 0.3), (3, 0.25), (4, 0.2))]
    assert measure(RunOutcome(records, None, None, 0, 0.0)) == Value(3.0)
    assert measure(RunOutcome(records[:2], None, None, 0, 0.0)) == Value(2.0, lower_bound=True)
    assert measure(RunOutcome([], None, None, 0, 0.0)).value is None


# ---- the table and the plot ---------------------------------------------------------------------

def _per_image(error_percent: float, n: int = 1000) -> ImageOutcomes:
    wrong = round(error_percent * n / 100)
    correct = np.arange(n) >= wrong
    return ImageOutcomes(np.arange(n), np.arange(n) % 10, correct, np.ones(n, dtype=bool))


def _fake_result(name: str, values: dict[str, list[float]]) -> ExperimentResult:
    from alexnet.experiments.measure import Effect

    experiment = get_experiment(name)
    metric = METRICS[experiment.metric]
    variants = {}
    for variant_name, numbers in values.items():
        outcomes = [RunOutcome([{"epoch": e, "train_top1_error": 0.5 / e, "val_top1_error": 0.6 / e}
                                for e in (1, 2, 3)], v / 100, v / 200, 1000, 12.0, seed,
                               _per_image(v))
                    for seed, v in enumerate(numbers)]
        if metric.name == "epochs_to_25pct_train_error":
            summary = Summary([Value(v) for v in numbers], 1000)
        else:
            summary = Summary([metric.measure(o) for o in outcomes], 1000)
        run_dirs = [f"runs/{variant_name}-seed{seed}" for seed in range(len(numbers))]
        variants[variant_name] = VariantResult(variant_name, "center", False, run_dirs, outcomes,
                                               summary, {"model": "m"})
    comparison = experiment.comparisons[0]
    paired = compare(Rule(experiment.effect, comparison.paper, experiment.threshold),
                     variants[comparison.baseline].outcomes, variants[comparison.variant].outcomes,
                     metric)
    effects = [Effect(comparison.baseline, comparison.variant, comparison.paper,
                      comparison.paper_text, paired)]
    return ExperimentResult(experiment, "small", [0, 1], variants, effects,
                            overall([paired.verdict]), 65.0,
                            "abc123", "2 CPU cores", {"torch": torch.__version__}, "2026-01-01 00:00 UTC",
                            f"alexnet experiment {name}")


def test_the_writer_produces_markdown_json_and_a_png(tmp_path: Path) -> None:
    result = _fake_result("lrn", {"lrn": [20.0, 21.0], "no-lrn": [25.0, 26.0]})
    paths = write(result, tmp_path / "results")
    markdown = paths["markdown"].read_text()
    assert markdown.startswith(f"# lrn (small scale): {result.verdict}")
    assert "| lrn | 20.50 ± 0.71 (sd, 2 seeds) | [" in markdown and "| 20.00, 21.00 |" in markdown
    # every no-lrn image wrong is wrong for lrn too: 50 discordant images per seed, one way
    assert "| no-lrn vs lrn | 5.00 | [" in markdown and "1.4" in markdown
    assert "McNemar p = " in markdown and "(100 vs 0 discordant images, 2 seeds)" in markdown
    assert "**Regime**:" in markdown and "- machine: 2 CPU cores" in markdown
    assert "- commit: abc123" in markdown and "- wall time: 1.1 min (this invocation)" in markdown
    assert "over all invocations: 0.8 min" in markdown  # 4 runs x 12 s
    assert "![lrn](lrn-small.png)" in markdown
    record = json.loads(paths["json"].read_text())
    assert record["verdict"] == result.verdict and record["commit"] == "abc123"
    assert record["variants"]["no-lrn"]["mean"] == pytest.approx(25.5)
    assert record["effects"][0]["value"] == pytest.approx(5.0)
    assert record["effects"][0]["verdict"] == "reproduced" and len(record["effects"][0]["interval"]) == 2
    saved = record["variants"]["no-lrn"]["outcomes"][1]["per_image"]
    assert ImageOutcomes.from_json(saved).top1_correct.sum() == 1000 - 260
    assert record["format"] == "alexnet-experiment/2" and record["definition"] == ""
    assert record["paper_numbers"] == get_experiment("lrn").paper_numbers
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_lower_bounds_and_missing_values_are_written_as_such() -> None:
    result = _fake_result("relu-vs-tanh", {"relu": [5.0], "tanh": [20.0]})
    result.variants["tanh"].summary = Summary([Value(20.0, lower_bound=True)], 1000)
    markdown = to_markdown(result)
    assert "| tanh | >= 20.00 | - | >=20.00 |" in markdown
    result.variants["relu"].summary = Summary([Value(None)], 1000)
    assert "| relu | n/a | - | n/a |" in to_markdown(result)


def test_imagenette_claims_use_one_init_rule_not_the_demos_conv1() -> None:
    from alexnet.experiments import EXPERIMENTS

    for name, experiment in EXPERIMENTS.items():
        for variant in experiment.variants:
            config = experiment.config(variant, "small", seed=0)
            if config.model == "alexnet2012":
                assert config.model_options.get("conv1_init_std") is None, (name, variant.name)


def test_pca_lighting_is_measured_in_both_readings_of_the_eigenvalues() -> None:
    # issue 14: fb.resnet.torch's units and the 2012 code's (convdata_jpeg.py), each against
    # the same run without colour noise
    experiment = get_experiment("pca-lighting")
    units = {v: experiment.config(v, "small") for v in ("pca-lighting", "pca-lighting-2012",
                                                        "no-pca-lighting")}
    assert units["pca-lighting"].lighting_units == "fb_resnet"
    assert units["pca-lighting-2012"].lighting_units == "cuda_convnet"
    assert units["pca-lighting-2012"].pca_lighting == units["pca-lighting"].pca_lighting == 0.1
    assert units["no-pca-lighting"].pca_lighting == 0.0
    assert {(c.baseline, c.variant) for c in experiment.comparisons} == {
        ("pca-lighting", "no-pca-lighting"), ("pca-lighting-2012", "no-pca-lighting")}


def test_the_verdict_rule_is_stated_for_the_kind_of_claim() -> None:
    absolute = to_markdown(_fake_result("cifar10-18pct", {"cifar_18pct": [21.0]}))
    assert "upper end is at most the paper's number + 1 (our CIFAR-10" in absolute
    assert "paper's side" not in absolute and "**inconclusive**" in absolute  # [18.5, 23.5] holds 19
    difference = to_markdown(_fake_result("lrn", {"lrn": [20.0], "no-lrn": [25.0]}))
    assert "lies on the paper's side and the effect reaches 0.7" in difference
    assert "upper end" not in difference
