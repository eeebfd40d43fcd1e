"""What an experiment is: a claim of the paper, the variants that test it, and how to judge it.

An ``Experiment`` names the claim (text, section, the paper's numbers), the ``Variant``s to
train (TrainConfig overrides, model options under ``model_options``), the ``Comparison``s
between them (the effect the paper reports, in the metric's units) and one ``Scale`` per
size: ``small`` runs on a 2-core CPU in at most about 90 minutes, ``paper`` is the ImageNet-sized
definition for a GPU machine, ``test`` is a few steps on a handful of images for the tests.

Configs are built with ``resolve_config(scale.preset, scale.overrides | variant.overrides)``,
so a definition is checked by the same validation as ``alexnet train``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError, unknown_choice
from alexnet.train.config import PRESETS, TrainConfig, resolve_config

SCALES = ("small", "paper", "test")
EFFECT_KINDS = ("difference", "ratio", "absolute")


def shared_data(name: str) -> str:
    """``../shared/data/NAME`` beside the checkout (``ALEXNET_SHARED_DATA`` overrides it)."""
    root = os.environ.get("ALEXNET_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return str(base / name)


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: what to train and which views / models to score."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys; merged over the scale's
    views: str = "center"  # center | 10crop (evaluate.py); 10crop is the paper's 10 patches (§4.1)
    ensemble: bool = False  # score the softmax average of every seed's model (Table 2)

    def model_options(self) -> dict[str, Any]:
        return dict(self.overrides.get("model_options", {}))


@dataclass(frozen=True)
class Comparison:
    """``variant`` against ``baseline``; ``paper`` is the effect the paper reports.

    difference: metric(variant) - metric(baseline), in percentage points when the metric is
    an error; ratio: metric(variant) / metric(baseline); absolute: metric(variant) itself.
    """

    baseline: str
    variant: str
    paper: float | None  # None: the paper gives no number
    paper_text: str


@dataclass(frozen=True)
class Plateau:
    """The claim's regime: how long every run of the experiment trains, found on one run.

    ``variant``'s seed-0 run trains in chunks of ``chunk`` epochs until its validation top-1
    error has not improved by ``min_delta`` (a fraction) for ``patience`` epochs - it stopped
    improving or started rising - or ``max_epochs`` are done; every run of the experiment then
    trains for the epochs that took (recorded in the result). Needs a schedule that does not
    depend on the number of epochs (plateau or step) and validation every epoch.
    """

    variant: str
    patience: int = 6
    min_delta: float = 0.002
    max_epochs: int = 60
    chunk: int = 5


@dataclass(frozen=True)
class UntilTrainError:
    """Each run trains in chunks of ``chunk`` epochs until its training top-1 error over an
    epoch is at most ``target`` (Fig. 1's 25%), at most ``max_epochs`` (then the epoch count
    is a lower bound). Needs a schedule that does not depend on the number of epochs."""

    target: float = 0.25
    max_epochs: int = 90
    chunk: int = 5


Regime = Plateau | UntilTrainError


@dataclass(frozen=True)
class Sweep:
    """Before the experiment's runs, each training variant picks its own ``key`` (e.g. its
    learning rate, as the paper chose each net's for Fig. 1) from ``values``: seed 0 trains
    ``epochs`` epochs at each value, and the value with the lowest training loss over its
    last epoch wins (the fastest training: the loss, because a few epochs' error rates are
    noisy and a value that blows up can still guess right by chance; a value whose loss
    becomes NaN loses; ties go to the first). Kept in runs_dir/sweep.json and the result."""

    key: str
    values: tuple[Any, ...]
    epochs: int


@dataclass(frozen=True)
class Scale:
    description: str
    preset: str | None
    overrides: dict[str, Any]  # applied to every variant (before the variant's own overrides)
    seeds: int = 1  # default number of seeds (--seeds overrides it)
    minutes: float | None = None  # the time budget this scale is sized for, on its machine
    machine: str = "2-core CPU"
    # variant name -> overrides at this scale only (e.g. a shorter run for the faster arm)
    variant_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    regime: Regime | None = None  # None: every run trains for its config's epochs
    sweep: Sweep | None = None  # None: every variant keeps its config's values
    # train and score on the first N images of each class only, prepared once into the
    # experiment's own runs folder (the test scale: seconds, and nothing written elsewhere);
    # a prepared store given with --data is used as it is
    per_class: int | None = None
    # train on the first N images of each class of the training split only, validating and
    # scoring on the whole test split: an overfitting regime that is cheap to reach (dropout)
    train_per_class: int | None = None

    def __post_init__(self) -> None:
        if self.per_class is not None and self.train_per_class is not None:
            raise ValueError("a Scale cuts both splits (per_class) or the training split "
                             "(train_per_class), not both")


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str
    section: str
    paper_numbers: str  # as /work/shared/docs/PAPER_FACTS.md states them
    metric: str  # a key of alexnet.experiments.measure.METRICS
    effect: str  # difference | ratio | absolute
    threshold: float  # the smallest effect (metric units) that counts as reproduced
    threshold_reason: str
    variants: tuple[Variant, ...]
    comparisons: tuple[Comparison, ...]
    scales: dict[str, Scale]
    notes: str = ""
    min_seeds: int = 1
    plot: str = "bars"  # bars: one per variant with its error bar; curves: error per epoch (Fig. 1)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise unknown_choice(f"variant of {self.name}", name, [v.name for v in self.variants])

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise unknown_choice(f"scale for experiment {self.name}", name, self.scales)
        return self.scales[name]

    def config(self, variant: Variant | str, scale: str, seed: int = 0, out: str = "runs/x",
               data: str | None = None, epochs: int | None = None,
               picked: dict[str, Any] | None = None) -> TrainConfig:
        """The validated TrainConfig of ``variant`` at ``scale`` (``data`` replaces the data,
        ``epochs`` the number of epochs, e.g. the one a regime found; ``picked``: values a
        sweep picked for this variant, e.g. its learning rate)."""
        chosen = self.variant(variant) if isinstance(variant, str) else variant
        settings = self.scale(scale)
        at_scale = settings.variant_overrides.get(chosen.name, {})
        values: dict[str, Any] = {**settings.overrides, **chosen.overrides, **at_scale}
        options = {**settings.overrides.get("model_options", {}), **chosen.model_options(),
                   **at_scale.get("model_options", {})}
        if options or "model_options" in values:
            values["model_options"] = options
        values.update(seed=seed, out=out)
        if epochs is not None:
            values["epochs"] = epochs
        values.update(picked or {})
        if data is not None:
            values["data"] = data
        if settings.preset is not None and "model" in values and "model_options" in values:
            # a preset's options belong to its model; keep them unless the model changes
            preset_values = PRESETS[settings.preset].values
            if values["model"] == preset_values.get("model"):
                values["model_options"] = {**preset_values.get("model_options", {}), **options}
        return resolve_config(settings.preset, values)

    def training_variants(self) -> list[Variant]:
        """Variants that need their own training run (others re-score a shared model)."""
        return [v for v in self.variants if not v.ensemble]


def check_experiment(experiment: Experiment) -> None:
    """Consistency of a definition; a broken one is a programming error, caught by the tests."""
    names = [v.name for v in experiment.variants]
    if len(set(names)) != len(names):
        raise ValueError(f"{experiment.name}: duplicate variant names {names}")
    if experiment.plot not in ("bars", "curves"):
        raise ValueError(f"{experiment.name}: plot {experiment.plot!r} not in (bars, curves)")
    if experiment.effect not in EFFECT_KINDS:
        raise ValueError(f"{experiment.name}: effect {experiment.effect!r} not in {EFFECT_KINDS}")
    for comparison in experiment.comparisons:
        for name in (comparison.baseline, comparison.variant):
            if name not in names:
                raise ValueError(f"{experiment.name}: comparison names unknown variant {name!r}")
    for scale, settings in experiment.scales.items():
        for name in settings.variant_overrides:
            if name not in names:
                raise ValueError(f"{experiment.name}: {scale} overrides unknown variant {name!r}")
    for scale in ("small", "paper", "test"):
        if scale not in experiment.scales:
            raise ValueError(f"{experiment.name}: no {scale!r} scale")
    for scale, settings in experiment.scales.items():
        if settings.sweep is not None and (len(settings.sweep.values) < 2 or settings.sweep.epochs < 1):
            raise ValueError(f"{experiment.name}: {scale}'s sweep needs two values and an epoch")
        regime = settings.regime
        if isinstance(regime, Plateau) and regime.variant not in names:
            raise ValueError(f"{experiment.name}: {scale} regime names unknown variant {regime.variant!r}")
        if regime is not None:
            for variant in experiment.training_variants():
                config = experiment.config(variant, scale)
                if config.schedule not in ("plateau", "step"):
                    raise ValueError(f"{experiment.name}: {scale}'s regime trains in chunks; "
                                     f"schedule {config.schedule!r} depends on the epoch count")
                if isinstance(regime, Plateau) and config.val_every_epochs != 1:
                    raise ValueError(f"{experiment.name}: {scale}'s plateau rule needs "
                                     "val_every_epochs=1")


def seeds_for(experiment: Experiment, scale: str, seeds: int | None) -> list[int]:
    count = experiment.scale(scale).seeds if seeds is None else seeds
    if count < experiment.min_seeds:
        raise AlexNetError(f"{experiment.name} needs at least {experiment.min_seeds} seeds "
                           f"(--seeds {experiment.min_seeds}), got {count}")
    return list(range(count))
