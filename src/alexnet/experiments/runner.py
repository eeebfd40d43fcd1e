"""Run an experiment: train every variant over seeds, evaluate, compare, judge.

``run_experiment(get("lrn"), "small")`` validates every config first, trains each distinct
config once per seed with ``alexnet.train.train`` (variants that differ only in how they are
scored - 10-crop, ensembles - share a run), scores the FINAL weights of each run with
``alexnet.evaluate.evaluate`` (not the best epoch's: picking the best on the test split
would flatter every variant), and returns an ``ExperimentResult`` for ``report.write``.

Training runs live in ``runs_dir/<variant>-seed<N>``; running the same command again
resumes unfinished runs and re-scores finished ones instead of training them again.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import AlexNetError
from alexnet.experiments.measure import (
    METRICS,
    Effect,
    RunOutcome,
    Summary,
    compare,
    overall,
    verdict,
)
from alexnet.experiments.registry import Experiment, Variant, seeds_for
from alexnet.train.config import TrainConfig


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


def run_experiment(experiment: Experiment, scale: str, seeds: int | None = None,
                   runs_dir: str | os.PathLike[str] | None = None, data: str | None = None,
                   fresh: bool = False, log: Callable[[str], None] = print,
                   command: str = "") -> ExperimentResult:
    """Train and score every variant of ``experiment`` at ``scale``; see the module doc."""
    start = time.time()
    commit = git_commit()  # the code that runs, recorded before the (long) training
    seed_list = seeds_for(experiment, scale, seeds)
    runs = Path(runs_dir or Path("runs") / "experiments" / f"{experiment.name}-{scale}")
    metric = METRICS[experiment.metric]

    # 1. every config, validated before any work; variants scored alike share one run
    plans: dict[str, dict[int, tuple[TrainConfig, Path]]] = {}
    by_key: dict[str, str] = {}
    for variant in experiment.variants:
        plans[variant.name] = {}
        for seed in seed_list:
            config = experiment.config(variant, scale, seed=seed, data=data)
            key = _config_key(config)
            owner = by_key.setdefault(key, variant.name)
            run_dir = runs / f"{owner}-seed{seed}"
            plans[variant.name][seed] = (experiment.config(variant, scale, seed=seed,
                                                           out=str(run_dir), data=data), run_dir)

    # 2. train each distinct run once
    trained: dict[Path, float] = {}
    for variant in experiment.training_variants():
        for config, run_dir in plans[variant.name].values():
            if run_dir in trained:
                continue
            log(f"[{experiment.name}] training {run_dir.name} ({_describe(variant)})")
            began = time.time()
            from alexnet.train import train

            result = train(config, fresh=fresh, log=lambda line: log(f"  {line}"))
            if result.status not in ("finished", "max_steps"):
                raise AlexNetError(f"{run_dir}: training {result.status}; run the same command "
                                   "again to resume")
            trained[run_dir] = _add_train_seconds(run_dir, time.time() - began, fresh)

    # 3. score: each run on its variant's views; ensembles on all seeds' models together
    variants: dict[str, VariantResult] = {}
    for variant in experiment.variants:
        plan = plans[variant.name]
        first_config = plan[seed_list[0]][0]
        source = _test_images(first_config)
        if variant.ensemble:
            run_dirs = [run_dir for _, run_dir in plan.values()]
            outcomes = [_score(run_dirs, source, variant, None, sum(trained.get(r, 0.0)
                                                                    for r in run_dirs))]
        else:
            run_dirs = [run_dir for _, run_dir in plan.values()]
            outcomes = [_score([run_dir], source, variant, seed, trained.get(run_dir, 0.0))
                        for seed, (_, run_dir) in plan.items()]
        values = [metric.measure(outcome) for outcome in outcomes]
        config_record = {k: v for k, v in first_config.to_dict().items() if k not in ("out", "seed")}
        variants[variant.name] = VariantResult(
            variant.name, variant.views, variant.ensemble, [str(r) for r in run_dirs], outcomes,
            Summary(values, outcomes[0].n_images), config_record)
        log(f"[{experiment.name}] {variant.name}: {metric.name} = "
            f"{', '.join(_format_value(v.value, v.lower_bound) for v in values)}")

    # 4. effects and the verdict
    effects = []
    for comparison in experiment.comparisons:
        value, standard_error, bound = compare(experiment.effect, variants[comparison.baseline].summary,
                                               variants[comparison.variant].summary, metric)
        word, reason = verdict(experiment.effect, value, standard_error, bound, comparison.paper,
                               experiment.threshold)
        effects.append(Effect(comparison.baseline, comparison.variant, value, standard_error, bound,
                              comparison.paper, comparison.paper_text, word, reason))
    return ExperimentResult(
        experiment=experiment, scale=scale, seeds=seed_list, variants=variants, effects=effects,
        verdict=overall([e.verdict for e in effects]), wall_seconds=time.time() - start,
        commit=commit, machine=machine_description(), versions=_versions(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=command)


def _add_train_seconds(run_dir: Path, seconds: float, fresh: bool) -> float:
    """Seconds spent training ``run_dir`` over every invocation (a resumed or re-scored run
    keeps the time of the ones before), kept in run_dir/experiment.json."""
    path = run_dir / "experiment.json"
    before = 0.0 if fresh or not path.is_file() else float(json.loads(path.read_text())["train_seconds"])
    total = before + seconds
    path.write_text(json.dumps({"train_seconds": round(total, 1)}) + "\n")
    return total


def _score(run_dirs: list[Path], source: Any, variant: Variant, seed: int | None,
           seconds: float) -> RunOutcome:
    from alexnet.checkpoint import load_model
    from alexnet.evaluate import evaluate
    from alexnet.scoring import LoadedModel

    models = []
    for run_dir in run_dirs:
        checkpoint = run_dir / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            raise AlexNetError(f"{checkpoint} is missing: the run did not finish; run the same "
                               "command again to resume it")
        model, info = load_model(checkpoint)
        models.append(LoadedModel(model, info, run_dir.name))
    result = evaluate(models, source, views=variant.views, progress=False)
    epochs = [] if variant.ensemble else _epoch_records(run_dirs[0])
    return RunOutcome(epochs, result.top1_error, result.top5_error, result.n_images, seconds, seed)


def _test_images(config: TrainConfig) -> Any:
    """The split the runs were validated on, from the store training read."""
    from alexnet.inputs import open_images
    from alexnet.train.data import store_root
    from alexnet.train.distributed import Distributed

    root = store_root(config, Distributed(), lambda _line: None)
    return open_images(root, config.val_split)


def _epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch records, the last one of each epoch (a resumed run repeats)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("kind") == "epoch":
                records[int(record["epoch"])] = record
    return [records[e] for e in sorted(records)]


def _config_key(config: TrainConfig) -> str:
    values = config.to_dict()
    values.pop("out")
    return json.dumps(values, sort_keys=True, default=str)


def _describe(variant: Variant) -> str:
    return json.dumps(variant.overrides, sort_keys=True) if variant.overrides else "the baseline"


def _format_value(value: float | None, lower_bound: bool) -> str:
    if value is None:
        return "n/a"
    return f"{'>=' if lower_bound else ''}{value:.2f}"


def git_commit() -> str | None:
    """HEAD of the checkout this package runs from, with '+dirty' for uncommitted changes."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "src"], capture_output=True, text=True, timeout=5,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'+dirty' if dirty else ''}" if head else None


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return text


def _versions() -> dict[str, str]:
    import alexnet

    return {"alexnet": alexnet.__version__, "torch": torch.__version__,
            "python": platform.python_version()}
