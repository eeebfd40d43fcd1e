"""An experiment's result as a markdown table, a JSON record and a matplotlib plot.

``write(result, out_dir)`` writes ``NAME-SCALE.md``, ``NAME-SCALE.json`` and
``NAME-SCALE.png`` side by side: the paper's claim, our value per variant (mean and spread
over seeds, with its 95% interval), each comparison with its paired effect, 95% interval,
McNemar p and verdict, the regime the runs trained under, the wall time, the command, the
commit, the machine (CPU model) and the versions. The JSON keeps every run's per-image
outcomes (which test images it got right, top-1 and top-k, with the images' identity).

``readme_rows(paths)`` / ``write_readme_table(readme, paths)`` turn result JSON files into
the README's experiment table (paper, ours with its interval, verdict), between the
markers ``<!-- experiments:begin -->`` and ``<!-- experiments:end -->``. A JSON file written
before per-image outcomes were kept is shown as "unpaired, rerun needed" with its old
numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError
from alexnet.experiments import EXPERIMENTS
from alexnet.experiments.measure import METRICS, RunOutcome, Summary
from alexnet.experiments.paired import bootstrap
from alexnet.experiments.registry import Experiment
from alexnet.experiments.runner import ExperimentResult, definition_key
from alexnet.runtime import provenance
from alexnet.runtime.outputs import save_figure, write_text

FORMAT = "alexnet-experiment/2"  # /2: paired effects with intervals, per-image outcomes
README_BEGIN = "<!-- experiments:begin -->"
README_END = "<!-- experiments:end -->"


def write(result: ExperimentResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.experiment.name}-{result.scale}"
    paths = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json", "plot": out / f"{stem}.png"}

    write_text(paths["json"], json.dumps(to_json(result), indent=1) + "\n")
    plot(result, paths["plot"])
    write_text(paths["markdown"], to_markdown(result, paths["plot"].name))
    return paths


def variant_interval(outcomes: list[RunOutcome], metric_name: str) -> tuple[float, float] | None:
    """95% interval of a variant's error rate (points), resampling its images and seeds."""
    import numpy as np

    top = METRICS[metric_name].per_image
    if top is None or not outcomes or any(o.per_image is None for o in outcomes):
        return None
    table = 100.0 * np.stack([o.per_image.errors(top) for o in outcomes  # type: ignore[union-attr]
                              ])
    return bootstrap(table)


def _outcome_json(outcome: RunOutcome) -> dict[str, Any]:
    return {"seed": outcome.seed, "top1_error": outcome.top1_error,
            "top5_error": outcome.top5_error, "n_images": outcome.n_images,
            "train_seconds": round(outcome.seconds, 1), "regime": outcome.regime,
            "epochs": outcome.epochs,
            "per_image": None if outcome.per_image is None else outcome.per_image.to_json()}


def to_json(result: ExperimentResult) -> dict[str, Any]:
    experiment = result.experiment
    metric = METRICS[experiment.metric]
    return {
        "format": FORMAT,
        "experiment": experiment.name, "scale": result.scale, "claim": experiment.claim,
        "section": experiment.section, "paper_numbers": experiment.paper_numbers,
        "metric": metric.name, "unit": metric.unit, "effect_kind": experiment.effect,
        "threshold": experiment.threshold, "threshold_reason": experiment.threshold_reason,
        "setup": experiment.scale(result.scale).description, "seeds": result.seeds,
        "variants": {
            name: {"views": v.views, "ensemble": v.ensemble, "run_dirs": v.run_dirs,
                   "values": [asdict(x) for x in v.summary.values], "mean": v.summary.mean,
                   "std": v.summary.std, "n_images": v.summary.n_images,
                   "interval": variant_interval(v.outcomes, metric.name),
                   "outcomes": [_outcome_json(o) for o in v.outcomes],
                   "config": v.config}
            for name, v in result.variants.items()},
        "effects": [e.to_json() for e in result.effects],
        "regime": result.regime, "sweep": result.sweep,
        "verdict": result.verdict, "wall_seconds": round(result.wall_seconds, 1),
        "definition": result.definition,
        "commit": result.commit, "machine": result.machine, "precision": result.precision,
        "versions": result.versions, "date": result.date, "command": result.command,
    }


def _value(summary: Summary) -> str:
    if summary.mean is None:
        known = [v.value for v in summary.values]
        return "n/a" if all(v is None for v in known) else ", ".join(
            "n/a" if v is None else f"{v:.2f}" for v in known)
    prefix = ">= " if summary.lower_bound else ""
    text = f"{prefix}{summary.mean:.2f}"
    if summary.std is not None:
        text += f" ± {summary.std:.2f} (sd, {len(summary.known)} seeds)"
    return text


def _number(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isinf(value)) else f"{value:.2f}"


def _interval(interval: Any) -> str:
    return "-" if not interval else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def _sweep_text(sweep: dict[str, Any]) -> str:
    parts = []
    for name, entry in sweep["variants"].items():
        tried = ", ".join(f"{value}: {'diverged' if loss is None else f'{loss:.3g}'}"
                          for value, loss in entry["train_loss"].items())
        parts.append(f"{name} chose {sweep['key']} {entry['chosen']} ({tried})")
    return (f"each variant's {sweep['key']} from {sweep['values']} by its training loss after "
            f"{sweep['epochs']} epochs (seed 0): " + "; ".join(parts))


def _regime_text(regime: dict[str, Any]) -> str:
    if not regime:
        return "every run trains for its config's epochs"
    if regime.get("rule") == "plateau":
        patience = regime["patience"]
        why = ("its validation error had not improved by "
               f"{100 * regime['min_delta']:g} points for {patience} epoch{'s' if patience != 1 else ''}"
               if regime.get("why") == "plateau" else f"it reached max_epochs {regime['max_epochs']}")
        return (f"plateau rule: {regime['variant']} (seed 0) trained in chunks of "
                f"{regime['chunk']} epochs until {why} (best epoch {regime.get('best_epoch')}); "
                f"every run then trained {regime.get('epochs')} epochs")
    return (f"each run trained in chunks of {regime['chunk']} epochs until its training error "
            f"was at most {100 * regime['target']:g}% (at most {regime['max_epochs']} epochs)")


def to_markdown(result: ExperimentResult, plot_name: str | None = None) -> str:
    experiment = result.experiment
    metric = METRICS[experiment.metric]
    lines = [
        f"# {experiment.name} ({result.scale} scale): {result.verdict}",
        "",
        f"**Claim** ({experiment.section}): {experiment.claim}",
        "",
        f"**Paper**: {experiment.paper_numbers}",
        "",
        f"**Setup**: {experiment.scale(result.scale).description}; seeds {result.seeds}.",
        "",
        f"**Regime**: {_regime_text(result.regime)}.",
        "",
        *([f"**Sweep**: {_sweep_text(result.sweep)}.", ""] if result.sweep else []),
        f"| variant | {metric.unit} | 95% interval | per seed |",
        "|---|---|---|---|",
    ]
    for name, variant in result.variants.items():
        per_seed = ", ".join("n/a" if v.value is None else
                             f"{'>=' if v.lower_bound else ''}{v.value:.2f}"
                             for v in variant.summary.values)
        label = name + (" (softmax average of the seeds' models)" if variant.ensemble else "")
        interval = _interval(variant_interval(variant.outcomes, metric.name))
        lines.append(f"| {label} | {_value(variant.summary)} | {interval} | {per_seed} |")
    kind = {"difference": "variant - baseline", "ratio": "variant / baseline",
            "absolute": "value"}[experiment.effect]
    lines += ["", f"| comparison | ours ({kind}) | 95% interval | paired test | paper | verdict |",
              "|---|---|---|---|---|---|"]
    for effect in result.effects:
        paired = effect.paired
        ours = _number(effect.value)
        if paired.lower_bound and effect.value is not None:
            ours = ">= " + ours
        paper = "no number" if effect.paper is None else f"{effect.paper:g}"
        name = effect.variant if experiment.effect == "absolute" else \
            f"{effect.variant} vs {effect.baseline}"
        test = _paired_test(paired.mcnemar_p, paired.discordant, paired.method, paired.n_seeds)
        decide = f" {paired.seeds_note}." if paired.seeds_note else ""
        lines.append(f"| {name} | {ours} | {_interval(paired.interval)} | {test} | {paper} "
                     f"({effect.paper_text}) | **{effect.verdict}**: {effect.reason}.{decide} |")
    lines += ["", _verdict_rule(experiment)]
    if experiment.notes:
        lines += ["", f"Notes: {experiment.notes}"]
    if plot_name:
        lines += ["", f"![{experiment.name}]({plot_name})"]
    lines += [
        "",
        f"- command: `{result.command}`" if result.command else "- command: (Python API)",
        f"- wall time: {result.wall_seconds / 60:.1f} min (this invocation); training time of the "
        f"runs over all invocations: {_train_minutes(result):.1f} min",
        f"- commit: {result.commit}",
        f"- machine: {result.machine}",
        f"- precision of the training runs: {result.precision or 'not recorded'}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in result.versions.items())}",
        f"- date: {result.date}",
        "",
    ]
    return "\n".join(lines)


def _paired_test(p: float | None, discordant: Any, method: str, seeds: int) -> str:
    if p is None:
        return f"{method}, {seeds} seed{'s' if seeds != 1 else ''}"
    only_variant, only_baseline = discordant or (0, 0)
    return (f"McNemar p = {p:.2g} ({only_variant} vs {only_baseline} discordant images, "
            f"{seeds} seed{'s' if seeds != 1 else ''})")


def _train_minutes(result: ExperimentResult) -> float:
    seconds = {run: o.seconds for v in result.variants.values() if not v.ensemble
               for run, o in zip(v.run_dirs, v.outcomes, strict=True)}
    return sum(seconds.values()) / 60


def plot(result: ExperimentResult, path: Path) -> None:
    """Curves (training and test error per epoch, Fig. 1 style) when the experiment asks for
    them, otherwise a bar per variant with its standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = result.experiment
    curves = experiment.plot == "curves" and any(o.epochs for v in result.variants.values()
                                                  for o in v.outcomes)
    figure, axes = plt.subplots(1, 2 if curves else 1, figsize=(11 if curves else 6, 4),
                                squeeze=False)
    if curves:
        _plot_curves(axes[0][0], result, "train_top1_error", "training error (over each epoch's batches)")
        _plot_curves(axes[0][1], result, "val_top1_error", "test / validation error (centre)")
        if experiment.metric == "epochs_to_25pct_train_error":
            axes[0][0].axhline(0.25, color="black", linestyle="--", linewidth=0.8)
    else:
        _plot_bars(axes[0][0], result)
    figure.suptitle(f"{experiment.name} ({result.scale}): {result.verdict}", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)  # temp file + rename, as every output
    plt.close(figure)


def _plot_curves(axis: Any, result: ExperimentResult, key: str, title: str) -> None:
    styles = ["-", "--", ":", "-."]
    for index, (name, variant) in enumerate(result.variants.items()):
        if variant.ensemble:
            continue
        for outcome in variant.outcomes:
            points = [(r["epoch"], r[key]) for r in outcome.epochs if r.get(key) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                axis.plot(epochs, values, styles[index % len(styles)], color=f"C{index}",
                          label=f"{name} (seed {outcome.seed})")
    axis.set_xlabel("epochs")
    axis.set_ylabel("top-1 error")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)


def _plot_bars(axis: Any, result: ExperimentResult) -> None:
    metric = METRICS[result.experiment.metric]
    names, means, below, above = [], [], [], []
    for name, variant in result.variants.items():
        names.append(name)
        mean = variant.summary.mean if variant.summary.mean is not None else 0.0
        means.append(mean)
        interval = variant_interval(variant.outcomes, metric.name) or (mean, mean)
        below.append(max(mean - interval[0], 0.0))
        above.append(max(interval[1] - mean, 0.0))
    axis.bar(range(len(names)), means, yerr=[below, above],
             color=[f"C{i}" for i in range(len(names))], capsize=4)
    axis.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axis.set_ylabel(metric.unit)
    if result.experiment.effect == "absolute" and result.effects and result.effects[0].paper:
        axis.axhline(result.effects[0].paper, color="black", linestyle="--", linewidth=0.8,
                     label="paper")
        axis.legend(fontsize=8)


# ---- the README's experiment table ------------------------------------------------------------

def _effect_text(effect: dict[str, Any], kind: str, label: str | None) -> str:
    value = effect.get("value")
    if value is None:
        text = "n/a"
    else:
        text = f"{'>= ' if effect.get('lower_bound') else ''}{value:+.2f}" if kind == "difference" \
            else f"{'>= ' if effect.get('lower_bound') else ''}{value:.2f}"
        text += "%" if kind == "absolute" else ("x" if kind == "ratio" else "")
    if "interval" in effect:
        text += f" {_interval(effect['interval'])}" if effect["interval"] else " (no interval)"
    elif effect.get("standard_error") is not None:
        text += f" (SE {effect['standard_error']:.2f})"
    return f"{label}: {text}" if label else text


def matches_definition(record: dict[str, Any], data: str | None = None) -> bool:
    """Was ``record`` made by its experiment as it is defined now (same runs, same rule)?"""
    experiment = EXPERIMENTS.get(record.get("experiment", ""))
    scale, seeds = record.get("scale"), record.get("seeds")
    if experiment is None or scale not in experiment.scales or not seeds:
        return False
    return record.get("definition") == definition_key(experiment, scale, list(seeds), data)


def readme_row(record: dict[str, Any], link: str) -> str:
    """One row: experiment (linked to its table), paper, ours with its interval, verdict."""
    kind = record.get("effect_kind", "difference")
    effects = record.get("effects", [])
    # several comparisons are told apart by their variant, or by variant and baseline where
    # one variant is compared with two (pca-lighting: no noise vs each reading of it)
    names = [e["variant"] for e in effects]
    labels = [None if len(effects) == 1 else e["variant"] if names.count(e["variant"]) == 1
              else f"{e['variant']} vs {e['baseline']}" for e in effects]
    ours = "; ".join(_effect_text(e, kind, label) for e, label in zip(effects, labels,
                                                                      strict=True)) or "n/a"
    verdict = f"**{record['verdict']}**" if record["verdict"] == "reproduced" else record["verdict"]
    if record.get("format") != FORMAT:
        verdict = f"unpaired, rerun needed (was: {record['verdict']})"
    elif not matches_definition(record):
        verdict = f"earlier setting, rerun needed (was: {record['verdict']})"
    seeds = len(record.get("seeds", []))
    return (f"| [{record['experiment']}]({link}) | {record['paper_numbers']} | {ours} "
            f"({record['scale']}, {seeds} seed{'s' if seeds != 1 else ''}) | {verdict} |")


def readme_table(paths: list[Path], readme: Path, command: str = "") -> str:
    """The table, then one line of provenance: every row's own table (linked) names its
    command, commit, CPU, versions and wall time; this line the rewrite's and their sum."""
    import os
    import time

    rows = ["| experiment | paper | ours: effect [95% interval] (scale, seeds) | verdict |",
            "|---|---|---|---|"]
    minutes = 0.0
    for path in paths:
        record = json.loads(path.read_text())
        markdown = path.with_suffix(".md")
        link = os.path.relpath(markdown, readme.resolve().parent)
        rows.append(readme_row(record, Path(link).as_posix()))
        minutes += float(record.get("wall_seconds") or 0.0) / 60
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows += ["", f"Rewritten by `{command or 'alexnet.experiments.report.write_readme_table'}` "
                 f"at {provenance.git_commit()} on {provenance.machine()}, {written}, from {len(paths)} "
                 f"results (their wall times add to {minutes:.1f} min; each linked table names "
                 "its own command, commit, CPU, versions and wall time)."]
    return "\n".join(rows)


def check_readme(readme: str | Path) -> str:
    """``readme``'s text, when it has the table markers (checked before any long work)."""
    readme = Path(readme)
    if not readme.is_file():
        raise AlexNetError(f"--readme {readme}: no such file; give the README to rewrite")
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise AlexNetError(f"--readme {readme}: no '{README_BEGIN}' ... '{README_END}' markers; "
                           "put them around the experiment table")
    return text


def write_readme_table(readme: str | Path, paths: list[Path], command: str = "") -> Path:
    """Replace the table between README_BEGIN and README_END in ``readme``."""
    readme = Path(readme)
    text = check_readme(readme)
    begin, end = text.find(README_BEGIN), text.find(README_END)
    table = readme_table(paths, readme, command)
    new = text[:begin + len(README_BEGIN)] + "\n" + table + "\n" + text[end:]
    write_text(readme, new)
    return readme


def _verdict_rule(experiment: Experiment) -> str:
    """paired.Rule.decide in words: an absolute claim (an error rate) has its own rule."""
    if experiment.effect == "absolute":
        rule = (f"reproduced when the 95% interval's upper end is at most the paper's number + "
                f"{experiment.threshold:g} ({experiment.threshold_reason}); contradicted when "
                "its lower end is above that; inconclusive otherwise. The interval resamples "
                "test images and seeds together.")
    else:
        rule = ("reproduced when the 95% interval lies on the paper's side and the effect "
                f"reaches {experiment.threshold:g} ({experiment.threshold_reason}); contradicted "
                "when the interval excludes the paper's effect (a claim without a number: the "
                "threshold); inconclusive otherwise. The interval resamples test images and "
                "seeds together (the variants are scored on the same images: a paired "
                "comparison).")
    return f"Verdict rule (docs/experiments.md): {rule}"
