"""The paper's claims as runnable experiments: ``alexnet experiment NAME``.

- ``registry``: Experiment / Variant / Comparison / Scale, and configs built from them
- ``definitions``: the ten experiments, with the paper's numbers and per-scale settings
- ``measure``: metrics of a finished run, effects with standard errors, the verdict rule
- ``runner``: ``run_experiment(experiment, scale)`` trains, scores and judges
- ``report``: markdown + JSON tables and a plot
"""

from __future__ import annotations

from alexnet.errors import unknown_choice
from alexnet.experiments.definitions import EXPERIMENTS_LIST
from alexnet.experiments.registry import SCALES, Experiment, check_experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in EXPERIMENTS_LIST}
for _experiment in EXPERIMENTS_LIST:
    check_experiment(_experiment)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise unknown_choice("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "SCALES", "Experiment", "get_experiment"]
