"""Run an experiment: train every variant over seeds, evaluate, compare, judge.

``run_experiment(get("lrn"), "small")`` validates every config first, trains each distinct
config once per seed with ``alexnet.train.train`` (variants that differ only in how they are
scored - 10-crop, ensembles - share a run), scores the FINAL weights of each run with
``alexnet.evaluate.accuracy.evaluate`` (not the best epoch's: picking the best on the test split
would flatter every variant), and returns an ``ExperimentResult`` for ``report.write``.

Training runs live in ``runs_dir/<variant>-seed<N>``; running the same command again
resumes unfinished runs and re-scores finished ones instead of training them again.

A scale's ``regime`` (registry.py) decides how long the runs train: ``Plateau`` trains one
variant's seed-0 run in chunks until its validation error stops improving and gives every
run that many epochs (the decision is kept in ``runs_dir/regime.json``, so an interrupted
experiment resumes it); ``UntilTrainError`` extends each run until its training error
reaches the target. Each outcome records the regime it trained under.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.data.prepare import prepare
from alexnet.data.store import is_store_folder
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import evaluate
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import LoadedModel
from alexnet.experiments.measure import (
    METRICS,
    Effect,
    ImageOutcomes,
    RunOutcome,
    Summary,
    compare,
    overall,
)
from alexnet.experiments.paired import Rule
from alexnet.experiments.registry import (
    Experiment,
    Plateau,
    Sweep,
    UntilTrainError,
    Variant,
    seeds_for,
)
from alexnet.models.checkpoint import load_model
from alexnet.runtime import provenance
from alexnet.runtime.outputs import write_text
from alexnet.runtime.run_folder import RunFolder
from alexnet.train import train
from alexnet.train.config import TrainConfig
from alexnet.train.data import store_root


@dataclass
class VariantResult:
    name: str
    views: str
    ensemble: bool
    run_dirs: list[str]
    outcomes: list[RunOutcome]
    summary: Summary
    config: dict[str, Any]  # the resolved TrainConfig of seed 0 (without out / seed)


@dataclass
class ExperimentResult:
    experiment: Experiment
    scale: str
    seeds: list[int]
    variants: dict[str, VariantResult]
    effects: list[Effect]
    verdict: str
    wall_seconds: float
    commit: str | None
    machine: str
    versions: dict[str, str]
    date: str
    command: str
    extra: dict[str, Any] = field(default_factory=dict)
    regime: dict[str, Any] = field(default_factory=dict)  # the scale's regime and what it decided
    definition: str = ""  # digest of every run's config: a result is current when it matches
    sweep: dict[str, Any] = field(default_factory=dict)  # what each variant's sweep chose
    precision: str = ""  # what the runs trained in (e.g. bf16 autocast where a CPU is fast in it)


def run_experiment(experiment: Experiment, scale: str, seeds: int | None = None,
                   runs_dir: str | os.PathLike[str] | None = None, data: str | None = None,
                   fresh: bool = False, log: Callable[[str], None] = print,
                   command: str = "") -> ExperimentResult:
    """Train and score every variant of ``experiment`` at ``scale``; see the module doc."""
    start = time.time()
    commit = provenance.git_commit()  # the code that runs, recorded before the (long) training
    seed_list = seeds_for(experiment, scale, seeds)
    runs = Path(runs_dir or Path("runs") / "experiments" / f"{experiment.name}-{scale}")
    metric = METRICS[experiment.metric]
    regime, sweep = experiment.scale(scale).regime, experiment.scale(scale).sweep
    plans = _plans(experiment, scale, seed_list, runs, data)  # validated before any work
    data = _subset_store(experiment, scale, runs, data, log)
    plans = _plans(experiment, scale, seed_list, runs, data)
    definition = definition_key(experiment, scale, seed_list, data)
    trained: dict[Path, float] = {}

    def train_run(variant: Variant, config: TrainConfig, run_dir: Path, first: bool) -> None:
        log(f"[{experiment.name}] training {run_dir.name} to epoch {config.epochs} "
            f"({_describe(variant)})")
        began = time.time()

        result = train(config, fresh=fresh and first, log=lambda line: log(f"  {line}"))
        if result.status not in ("finished", "max_steps"):
            raise AlexNetError(f"{run_dir}: training {result.status}; run the same command "
                               "again to resume")
        # a finished run is only re-scored: it adds no precision (it may be another machine)
        precision = result.precision if result.images_trained else None
        trained[run_dir] = _add_training(run_dir, time.time() - began, precision, fresh and first)

    # 1. a sweep picks each variant's own value (e.g. its learning rate) on short runs
    sweep_record: dict[str, Any] = {}
    chosen: dict[str, dict[str, Any]] = {}
    if sweep is not None:
        sweep_record = _sweep(experiment, scale, sweep, runs, data, train_run, log)
        chosen = {name: {sweep.key: entry["chosen"]}
                  for name, entry in sweep_record["variants"].items()}
        plans = _plans(experiment, scale, seed_list, runs, data, chosen=chosen)

    # 2. the regime: a plateau rule fixes every run's epochs from one run first
    regime_record: dict[str, Any] = {}
    if isinstance(regime, Plateau):
        regime_record = _calibrate(experiment, regime, plans, runs, fresh, train_run)
        plans = _plans(experiment, scale, seed_list, runs, data, epochs=regime_record["epochs"],
                       chosen=chosen)
    elif isinstance(regime, UntilTrainError):
        regime_record = {"rule": "until_train_error", **dataclasses.asdict(regime)}

    # 3. train each distinct run once (an until-train-error run in chunks until it gets there)
    run_regimes: dict[Path, dict[str, Any]] = {}
    for variant in experiment.training_variants():
        for config, run_dir in plans[variant.name].values():
            if isinstance(regime, Plateau):  # the calibrated run included
                run_regimes[run_dir] = {"rule": "plateau", "epochs": config.epochs}
            if run_dir in trained:
                continue
            if isinstance(regime, UntilTrainError):
                run_regimes[run_dir] = _until_train_error(variant, regime, config, run_dir,
                                                          fresh, train_run)
            else:
                train_run(variant, config, run_dir, first=True)

    # 4. score: each run on its variant's views; ensembles on all seeds' models together
    variants: dict[str, VariantResult] = {}
    for variant in experiment.variants:
        plan = plans[variant.name]
        first_config = plan[seed_list[0]][0]
        source = _test_images(first_config)
        run_dirs = [run_dir for _, run_dir in plan.values()]
        if variant.ensemble:
            outcomes = [_score(run_dirs, source, variant, None, sum(_train_seconds(r, trained)
                                                                    for r in run_dirs))]
        else:
            outcomes = [_score([run_dir], source, variant, seed, _train_seconds(run_dir, trained))
                        for seed, (_, run_dir) in plan.items()]
            for outcome, run_dir in zip(outcomes, run_dirs, strict=True):
                outcome.regime = run_regimes.get(run_dir, {})
        values = [metric.measure(outcome) for outcome in outcomes]
        config_record = {k: v for k, v in first_config.to_dict().items() if k not in ("out", "seed")}
        variants[variant.name] = VariantResult(
            variant.name, variant.views, variant.ensemble, [str(r) for r in run_dirs], outcomes,
            Summary(values, outcomes[0].n_images), config_record)
        log(f"[{experiment.name}] {variant.name}: {metric.name} = "
            f"{', '.join(_format_value(v.value, v.lower_bound) for v in values)}")

    # 5. effects (paired, with their 95% intervals) and the verdict
    effects = []
    for comparison in experiment.comparisons:
        rule = Rule(experiment.effect, comparison.paper, experiment.threshold)
        paired = compare(rule, variants[comparison.baseline].outcomes,
                         variants[comparison.variant].outcomes, metric)
        effects.append(Effect(comparison.baseline, comparison.variant, comparison.paper,
                              comparison.paper_text, paired))
    return ExperimentResult(
        experiment=experiment, scale=scale, seeds=seed_list, variants=variants, effects=effects,
        verdict=overall([e.verdict for e in effects]), wall_seconds=time.time() - start,
        commit=commit, machine=provenance.machine(), versions=provenance.versions(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=command,
        regime=regime_record, definition=definition, sweep=sweep_record,
        precision=_precision(sorted({r for v in variants.values() for r in v.run_dirs})))


def _subset_store(experiment: Experiment, scale: str, runs: Path, data: str | None,
                  log: Callable[[str], None]) -> str | None:
    """A scale with ``per_class`` trains and scores on a store of that many images of each
    class; one with ``train_per_class`` cuts the training split only and scores on the whole
    test split. Prepared once inside ``runs`` (never the shared ./runs/stores); a store given
    as ``data`` is used as it is for ``per_class`` and refused for ``train_per_class`` (its
    regime needs the small training split)."""
    settings = experiment.scale(scale)
    count = settings.per_class or settings.train_per_class
    if count is None:
        return data
    config = experiment.config(experiment.variants[0], scale, seed=0, data=data)
    if is_store_folder(config.data):
        if settings.train_per_class is not None:
            raise AlexNetError(f"{experiment.name} at scale {scale} trains on {count} images of "
                               f"each class: give --data an image folder, not the prepared "
                               f"store {config.data}")
        return data
    name = config.data.split(":", 1)[1] if config.data.startswith("torchvision:") else \
        Path(config.data).resolve().name
    cut = "train-" if settings.train_per_class is not None else ""
    dest = runs / "stores" / f"{name}-{config.image_size}-{cut}{count}-per-class"
    if settings.per_class is not None:
        log(f"[{experiment.name}] {count} images of each class of {config.data} -> {dest}")
        prepare(config.data, dest, size=config.image_size, per_class=count, progress=False)
        return str(dest)
    log(f"[{experiment.name}] {count} training images of each class of {config.data}, and "
        f"its whole {config.val_split} split -> {dest}")
    prepare(config.data, dest, size=config.image_size, splits=[config.train_split],
            per_class=count, progress=False)
    prepare(config.data, dest, size=config.image_size, splits=[config.val_split],
            progress=False)
    return str(dest)


def definition_key(experiment: Experiment, scale: str, seeds: list[int], data: str | None) -> str:
    """A digest of what an experiment trains and how it judges (configs without their
    output folders and data location, the regime, the metric and the comparisons): equal
    digests mean an existing result answers the same question."""
    import hashlib

    settings = experiment.scale(scale)
    configs = []
    for variant in experiment.variants:
        for seed in seeds:
            values = experiment.config(variant, scale, seed=seed, data=data).to_dict()
            for key in ("out", "data", "store_dir"):
                values.pop(key)
            configs.append([variant.name, variant.views, variant.ensemble, values])
    described = {"configs": configs, "regime": repr(settings.regime),
                 "sweep": repr(settings.sweep), "metric": experiment.metric,
                 "effect": experiment.effect, "threshold": experiment.threshold,
                 "comparisons": [repr(c) for c in experiment.comparisons]}
    if settings.train_per_class is not None:  # only when set: older digests stay valid
        described["train_per_class"] = settings.train_per_class
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


Plans = dict[str, dict[int, tuple[TrainConfig, Path]]]


def _plans(experiment: Experiment, scale: str, seeds: list[int], runs: Path, data: str | None,
           epochs: int | None = None, chosen: dict[str, dict[str, Any]] | None = None) -> Plans:
    """Every variant's config and run folder per seed; variants scored alike share one run.
    Under a regime the epoch count is not part of a run's identity (runs grow in chunks)."""
    regime = experiment.scale(scale).regime
    plans: Plans = {}
    by_key: dict[str, str] = {}
    for variant in experiment.variants:
        plans[variant.name] = {}
        picked = (chosen or {}).get(variant.name)
        for seed in seeds:
            config = experiment.config(variant, scale, seed=seed, data=data, epochs=epochs,
                                       picked=picked)
            key = _config_key(config, with_epochs=regime is None)
            owner = by_key.setdefault(key, variant.name)
            run_dir = runs / f"{owner}-seed{seed}"
            plans[variant.name][seed] = (experiment.config(variant, scale, seed=seed,
                                                           out=str(run_dir), data=data,
                                                           epochs=epochs, picked=picked), run_dir)
    return plans


def _is_divergence(error: AlexNetError) -> bool:
    """The training loop's one-line errors for a NaN / inf loss or weights (train/loop.py)."""
    text = str(error)
    return "training loss became" in text or "weights became nan/inf" in text


def _sweep(experiment: Experiment, scale: str, sweep: Sweep, runs: Path, data: str | None,
           train_run: TrainRun, log: Callable[[str], None]) -> dict[str, Any]:
    """Each training variant's seed 0 for ``sweep.epochs`` epochs at every value; the lowest
    training loss over the last epoch chooses (a diverged value gives none). Runs live in
    runs/sweep/ (resumable)."""
    by_key: dict[str, Path] = {}
    variants: dict[str, Any] = {}
    for variant in experiment.training_variants():
        results: dict[str, float | None] = {}
        for value in sweep.values:
            config = experiment.config(variant, scale, seed=0, data=data, epochs=sweep.epochs,
                                       picked={sweep.key: value})
            run_dir = by_key.setdefault(_config_key(config),
                                        runs / "sweep" / f"{variant.name}-{sweep.key}{value}")
            records = RunFolder(run_dir).epoch_records()
            diverged = run_dir / "diverged.txt"
            if len(records) < sweep.epochs and not diverged.is_file():
                try:
                    train_run(variant, dataclasses.replace(config, out=str(run_dir)), run_dir, True)
                except AlexNetError as error:
                    if not _is_divergence(error):
                        raise
                    # a value too large for this net: it loses the sweep, and is not retried
                    log(f"[{experiment.name}] {run_dir.name} diverged: {error}")
                    write_text(diverged, f"{error}\n")
                records = RunFolder(run_dir).epoch_records()
            done = records and len(records) >= sweep.epochs and not diverged.is_file()
            results[str(value)] = records[-1]["train_loss"] if done else None
        known = [(error, i) for i, error in enumerate(results.values()) if error is not None]
        best = sweep.values[min(known)[1]] if known else sweep.values[0]
        variants[variant.name] = {"train_loss": results, "chosen": best}
    record = {"key": sweep.key, "values": list(sweep.values), "epochs": sweep.epochs,
              "variants": variants}
    runs.mkdir(parents=True, exist_ok=True)
    write_text(runs / "sweep.json", json.dumps(record, indent=1) + "\n")
    return record


TrainRun = Callable[[Variant, TrainConfig, Path, bool], None]


def _calibrate(experiment: Experiment, rule: Plateau, plans: Plans, runs: Path, fresh: bool,
               train_run: TrainRun) -> dict[str, Any]:
    """Train ``rule.variant``'s first seed in chunks until its validation error has not
    improved for ``rule.patience`` epochs; the decision is kept in runs/regime.json."""
    path = runs / "regime.json"
    if path.is_file() and not fresh:
        record = json.loads(path.read_text())
        if record.get("rule") == "plateau" and record.get("decided"):
            return record
    variant = experiment.variant(rule.variant)
    config, run_dir = next(iter(plans[variant.name].values()))
    epochs, first = 0, True
    while True:
        done = len(RunFolder(run_dir).epoch_records()) if not (fresh and first) else 0
        decision = plateau_decision(RunFolder(run_dir).epoch_records() if done else [], rule)
        if decision["decided"]:
            break
        epochs = min(rule.max_epochs, (done // rule.chunk + 1) * rule.chunk)
        train_run(variant, dataclasses.replace(config, epochs=epochs), run_dir, first)
        first = False
    record = {"rule": "plateau", **dataclasses.asdict(rule), **decision, "run": run_dir.name}
    runs.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def plateau_decision(records: list[dict[str, Any]], rule: Plateau) -> dict[str, Any]:
    """Has the validation top-1 error stopped improving? ``epochs``: the run's length when
    it has (or ``max_epochs`` was reached); ``stopped_at``: the first epoch the rule held."""
    curve = [(int(r["epoch"]), r["val_top1_error"]) for r in records
             if r.get("val_top1_error") is not None]
    best, best_epoch = float("inf"), 0
    for epoch, error in curve:
        if error < best - rule.min_delta:
            best, best_epoch = error, epoch
        if epoch - best_epoch >= rule.patience:
            return {"decided": True, "why": "plateau", "stopped_at": epoch,
                    "epochs": len(records), "best_epoch": best_epoch, "best_val_top1_error": best,
                    "val_curve": [e for _, e in curve]}
    if len(records) >= rule.max_epochs:
        return {"decided": True, "why": "max_epochs", "stopped_at": None, "epochs": len(records),
                "best_epoch": best_epoch, "best_val_top1_error": best,
                "val_curve": [e for _, e in curve]}
    return {"decided": False}


def _until_train_error(variant: Variant, rule: UntilTrainError, config: TrainConfig,
                       run_dir: Path, fresh: bool, train_run: TrainRun) -> dict[str, Any]:
    first = True
    while True:
        records = [] if fresh and first else RunFolder(run_dir).epoch_records()
        reached = next((int(r["epoch"]) for r in records
                        if r["train_top1_error"] <= rule.target), None)
        if reached is not None or len(records) >= rule.max_epochs:
            return {"rule": "until_train_error", "target": rule.target, "epochs": len(records),
                    "reached_at": reached, "max_epochs": rule.max_epochs}
        epochs = min(rule.max_epochs, (len(records) // rule.chunk + 1) * rule.chunk)
        train_run(variant, dataclasses.replace(config, epochs=epochs), run_dir, first)
        first = False


def _run_record(run_dir: Path) -> dict[str, Any]:
    """run_dir/experiment.json: the seconds spent training the run over every invocation
    and the precisions they computed in ({} before its first training)."""
    path = run_dir / "experiment.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _train_seconds(run_dir: Path, trained: dict[Path, float]) -> float:
    """This invocation's figure, or the one kept from earlier invocations."""
    if run_dir in trained:
        return trained[run_dir]
    return float(_run_record(run_dir).get("train_seconds", 0.0))


def _add_training(run_dir: Path, seconds: float, precision: str | None, fresh: bool) -> float:
    """Add one invocation's training to run_dir/experiment.json (a resumed or re-scored run
    keeps the time and precision of the ones before); the total seconds."""
    before = {} if fresh else _run_record(run_dir)
    total = float(before.get("train_seconds", 0.0)) + seconds
    precisions = sorted({*before.get("precisions", []), *([precision] if precision else [])})
    write_text(run_dir / "experiment.json",
               json.dumps({"train_seconds": round(total, 1), "precisions": precisions}) + "\n")
    return total


def _precision(run_dirs: list[str]) -> str:
    """What the runs were trained in (precision auto picks by machine, runtime/device.py), e.g.
    'bf16'; runs trained before it was recorded say so."""
    names: set[str] = set()
    unrecorded = 0
    for run_dir in run_dirs:
        recorded = _run_record(Path(run_dir)).get("precisions")
        names.update(recorded or [])
        unrecorded += not recorded
    text = ", ".join(sorted(names)) or "not recorded"
    return text + (f" ({unrecorded} of {len(run_dirs)} runs: not recorded)"
                   if names and unrecorded else "")


def _score(run_dirs: list[Path], source: Any, variant: Variant, seed: int | None,
           seconds: float) -> RunOutcome:
    models = []
    for run_dir in run_dirs:
        checkpoint = RunFolder(run_dir).last
        if not checkpoint.is_file():
            raise AlexNetError(f"{checkpoint} is missing: the run did not finish; run the same "
                               "command again to resume it")
        model, info = load_model(checkpoint)
        models.append(LoadedModel(model, info, run_dir.name))
    result = evaluate(models, source, views=variant.views, progress=False)
    epochs = [] if variant.ensemble else RunFolder(run_dirs[0]).epoch_records()
    per_image = None if result.per_image is None else ImageOutcomes.from_evaluation(result.per_image)
    return RunOutcome(epochs, result.top1_error, result.top5_error, result.n_images, seconds, seed,
                      per_image)


def _test_images(config: TrainConfig) -> Any:
    """The split the runs were validated on, from the store training read."""
    root = store_root(config, say=lambda _line: None)
    return open_images(root, config.val_split)


def _config_key(config: TrainConfig, with_epochs: bool = True) -> str:
    values = config.to_dict()
    values.pop("out")
    if not with_epochs:
        values.pop("epochs")
    return json.dumps(values, sort_keys=True, default=str)


def _describe(variant: Variant) -> str:
    return json.dumps(variant.overrides, sort_keys=True) if variant.overrides else "the baseline"


def _format_value(value: float | None, lower_bound: bool) -> str:
    if value is None:
        return "n/a"
    return f"{'>=' if lower_bound else ''}{value:.2f}"
