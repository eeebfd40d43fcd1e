"""An experiment's result as a markdown table, a JSON record and a matplotlib plot.

``write(result, out_dir)`` writes ``NAME-SCALE.md``, ``NAME-SCALE.json`` and
``NAME-SCALE.png`` side by side: the paper's claim, our value per variant (mean and spread
over seeds), each comparison with its effect, standard error and verdict, the setup, the
wall time, the commit and the machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alexnet.experiments.measure import METRICS, Summary
from alexnet.experiments.runner import ExperimentResult


def write(result: ExperimentResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.experiment.name}-{result.scale}"
    paths = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json", "plot": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(to_json(result), indent=2) + "\n")
    plot(result, paths["plot"])
    paths["markdown"].write_text(to_markdown(result, paths["plot"].name))
    return paths


def to_json(result: ExperimentResult) -> dict[str, Any]:
    experiment = result.experiment
    metric = METRICS[experiment.metric]
    return {
        "experiment": experiment.name, "scale": result.scale, "claim": experiment.claim,
        "section": experiment.section, "paper_numbers": experiment.paper_numbers,
        "metric": metric.name, "unit": metric.unit, "effect_kind": experiment.effect,
        "threshold": experiment.threshold, "threshold_reason": experiment.threshold_reason,
        "setup": experiment.scale(result.scale).description, "seeds": result.seeds,
        "variants": {
            name: {"views": v.views, "ensemble": v.ensemble, "run_dirs": v.run_dirs,
                   "values": [asdict(x) for x in v.summary.values], "mean": v.summary.mean,
                   "std": v.summary.std, "n_images": v.summary.n_images,
                   "outcomes": [{"seed": o.seed, "top1_error": o.top1_error,
                                 "top5_error": o.top5_error, "n_images": o.n_images,
                                 "train_seconds": round(o.seconds, 1),
                                 "epochs": o.epochs} for o in v.outcomes],
                   "config": v.config}
            for name, v in result.variants.items()},
        "effects": [asdict(e) for e in result.effects],
        "verdict": result.verdict, "wall_seconds": round(result.wall_seconds, 1),
        "commit": result.commit, "machine": result.machine, "versions": result.versions,
        "date": result.date, "command": result.command,
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
        f"| variant | {metric.unit} | per seed |",
        "|---|---|---|",
    ]
    for name, variant in result.variants.items():
        per_seed = ", ".join("n/a" if v.value is None else
                             f"{'>=' if v.lower_bound else ''}{v.value:.2f}"
                             for v in variant.summary.values)
        label = name + (" (softmax average of the seeds' models)" if variant.ensemble else "")
        lines.append(f"| {label} | {_value(variant.summary)} | {per_seed} |")
    kind = {"difference": "variant - baseline", "ratio": "variant / baseline",
            "absolute": "value"}[experiment.effect]
    lines += ["", f"| comparison | ours ({kind}) | standard error | paper | verdict |",
              "|---|---|---|---|---|"]
    for effect in result.effects:
        ours = _number(effect.value)
        if effect.lower_bound and effect.value is not None:
            ours = ">= " + ours
        paper = "no number" if effect.paper is None else f"{effect.paper:g}"
        name = effect.variant if experiment.effect == "absolute" else \
            f"{effect.variant} vs {effect.baseline}"
        lines.append(f"| {name} | {ours} | {_number(effect.standard_error)} | {paper} "
                     f"({effect.paper_text}) | **{effect.verdict}**: {effect.reason} |")
    lines += [
        "",
        f"Verdict rule: reproduced when the effect points the paper's way, is at least "
        f"{experiment.threshold:g} ({experiment.threshold_reason}) and exceeds twice its standard "
        "error; not reproduced when even the effect plus twice its standard error stays below "
        "that; not measurable at this scale otherwise (a missing value, or too noisy to tell). "
        "See docs/experiments.md.",
    ]
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
        f"- versions: {', '.join(f'{k} {v}' for k, v in result.versions.items())}",
        f"- date: {result.date}",
        "",
    ]
    return "\n".join(lines)


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
    figure.savefig(path, dpi=110)
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
    names, means, spreads = [], [], []
    for name, variant in result.variants.items():
        names.append(name)
        means.append(variant.summary.mean if variant.summary.mean is not None else 0.0)
        spreads.append(variant.summary.standard_error(metric.is_error_rate))
    axis.bar(range(len(names)), means, yerr=spreads, color=[f"C{i}" for i in range(len(names))],
             capsize=4)
    axis.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axis.set_ylabel(metric.unit)
    if result.experiment.effect == "absolute" and result.effects and result.effects[0].paper:
        axis.axhline(result.effects[0].paper, color="black", linestyle="--", linewidth=0.8,
                     label="paper")
        axis.legend(fontsize=8)
