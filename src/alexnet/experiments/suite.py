"""``alexnet experiment all``: every experiment in turn, resumable, then the README table.

``run_all(scale, out)`` runs the experiments in their registry order. One whose result
(``out/NAME-SCALE.json``) is current - written in this format, with the same definition
digest (runner.definition_key: every run's config, the regime, the metric, the comparisons)
and seeds - is skipped; any other is run, and ``run_experiment`` resumes its unfinished
training runs and re-scores its finished ones. An interruption (Ctrl-C, a stopped run) ends
the suite; the same command resumes it where it stopped. At the end the README's table is
rewritten from every result in ``out`` (report.write_readme_table).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.experiments import EXPERIMENTS
from alexnet.experiments.registry import seeds_for
from alexnet.experiments.report import (
    FORMAT,
    check_readme,
    matches_definition,
    write,
    write_readme_table,
)
from alexnet.experiments.runner import run_experiment


@dataclass
class SuiteResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # current results, not run again
    verdicts: dict[str, str] = field(default_factory=dict)
    readme: Path | None = None


def is_current(path: Path, name: str, scale: str, seeds: int | None, data: str | None) -> bool:
    """Does ``path`` hold a finished result of this experiment as it is defined now?"""
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    experiment = EXPERIMENTS[name]
    seed_list = seeds_for(experiment, scale, seeds)
    return (record.get("format") == FORMAT and record.get("experiment") == name
            and record.get("scale") == scale
            and record.get("seeds") == seed_list and matches_definition(record, data))


def seeds_of(name: str, scale: str, seeds: int | None) -> int:
    """``seeds`` (or the scale's default), raised to what the experiment needs (the
    ensemble's two members), so that one --seeds serves every experiment."""
    experiment = EXPERIMENTS[name]
    return max(experiment.scale(scale).seeds if seeds is None else seeds, experiment.min_seeds)


def run_all(scale: str, out: str | Path, runs_root: str | Path | None = None,
            seeds: int | None = None, data: str | None = None, fresh: bool = False,
            readme: str | Path | None = None, log: Callable[[str], None] = print,
            command: str = "", names: list[str] | None = None) -> SuiteResult:
    """Run (or skip, when current) every experiment at ``scale``; rewrite ``readme``'s table."""
    out = Path(out)
    root = Path(runs_root) if runs_root is not None else Path("runs") / "experiments"
    chosen = names or list(EXPERIMENTS)
    if readme is not None:  # refuse a bad --readme before any work
        check_readme(readme)
    suite = SuiteResult()
    for name in chosen:
        experiment = EXPERIMENTS[name]
        count = seeds_of(name, scale, seeds)
        path = out / f"{name}-{scale}.json"
        if not fresh and is_current(path, name, scale, count, data):
            log(f"[all] {name}: {path} is current; skipped")
            suite.skipped.append(name)
            suite.verdicts[name] = json.loads(path.read_text())["verdict"]
            continue
        log(f"[all] {name}: running")
        result = run_experiment(experiment, scale, seeds=count, runs_dir=root / f"{name}-{scale}",
                                data=data, fresh=fresh, log=log, command=command)
        write(result, out)
        suite.ran.append(name)
        suite.verdicts[name] = result.verdict
        log(f"[all] {name}: {result.verdict}")
    if readme is not None:
        results = [out / f"{name}-{scale}.json" for name in EXPERIMENTS
                   if (out / f"{name}-{scale}.json").is_file()]
        suite.readme = write_readme_table(readme, results, command)
    return suite
