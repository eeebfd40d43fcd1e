"""The learning rate of every optimizer step: an optional linear warmup, then one schedule.

- ``plateau`` (§5): "divide the learning rate by 10 when the validation error rate stopped
  improving with the current learning rate", at most ``max_lr_reductions`` times (three in
  the paper: 0.01 -> 0.001 -> 1e-4 -> 1e-5). Decided at epoch ends from the val error.
- ``step``: multiply by ``lr_factor`` at each of ``lr_milestones`` (torchvision: 30, 60).
- ``cosine`` / ``linear``: a fixed-length decay from ``lr`` to ``lr * final_lr_factor``
  over the steps after the warmup (the short presets: a known end, no val-driven waiting).
- ``epochs``: the rate of ``lr_epochs`` {first epoch: rate} in force at each epoch (``lr``
  before the first): the 2012 code's rates as its log records them (layer-params-145.cfg).

Per parameter group (:meth:`LearningRate.group_lr`): ``layer_lr_epochs`` rates override
everything from their epoch on (the 2012 run cut conv1's rate late, then froze it), and
``bias_lr`` fixes the biases' rate (epsB 0.02 kept while epsW fell); otherwise a group
trains at the schedule's rate times its ``lr_scale`` (``bias_lr_factor``).

Everything is a function of the step and a little state (the plateau's reductions), saved
in checkpoints, so a resumed run gets exactly the learning rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from alexnet.train.config import TrainConfig, epoch_number, names_match


def value_at_epoch(table: Mapping[str, float], epoch: int, default: float | None) -> float | None:
    """The value of ``table`` {first epoch: value} in force at ``epoch`` (1 = the first)."""
    value, since = default, 0
    for key, entry in table.items():
        start = epoch_number("epoch table", key)
        if since < start <= epoch:
            value, since = entry, start
    return value


def layer_lr_epochs(config: TrainConfig, parameter: str) -> dict[str, float]:
    """{first epoch: rate} of ``config.layer_lr_epochs`` for the parameter named
    ``parameter``; where several prefixes match one epoch, the longest wins."""
    found: dict[str, tuple[int, float]] = {}
    for key, rate in config.layer_lr_epochs.items():
        prefix, _, epoch = key.rpartition("@")
        if names_match(parameter, prefix) and len(prefix) >= found.get(epoch, (-1, 0.0))[0]:
            found[epoch] = (len(prefix), rate)
    return {epoch: rate for epoch, (_, rate) in sorted(found.items(), key=lambda e: int(e[0]))}


def parameter_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], config: TrainConfig
                     ) -> list[dict[str, Any]]:
    """The optimizer's param groups: weight decay on weights, not biases (cuda-convnet's wc
    applies to weights; its biases get none, src/layer.cu), ``layer_weight_decay`` by
    parameter or layer name (a layer's includes its bias); each group's rate as
    :meth:`LearningRate.group_lr` computes it from ``lr_scale``, ``fixed_lr`` (``bias_lr``)
    and ``lr_epochs`` (``layer_lr_epochs``). Without
    the 2012 fields the groups are exactly the plain ones (decay, lr_scale)."""
    groups: dict[tuple[Any, ...], list[nn.Parameter]] = {}
    for name, parameter in named_parameters:
        is_bias = parameter.dim() == 1
        decay = 0.0 if is_bias else config.weight_decay
        matching = [p for p in config.layer_weight_decay if names_match(name, p)]
        if matching:  # the longest name wins, as in layer_lr_epochs
            decay = config.layer_weight_decay[max(matching, key=len)]
        lr_scale = config.bias_lr_factor if is_bias else 1.0
        fixed = config.bias_lr if is_bias and config.bias_lr > 0 else None
        overrides = tuple(layer_lr_epochs(config, name).items())
        groups.setdefault((decay, lr_scale, fixed, overrides), []).append(parameter)
    return [{"params": params, "weight_decay": decay, "lr_scale": lr_scale,
             **({"fixed_lr": fixed} if fixed is not None else {}),
             **({"lr_epochs": dict(overrides)} if overrides else {})}
            for (decay, lr_scale, fixed, overrides), params in groups.items()]


def lighting_at(config: TrainConfig, epoch: int) -> float:
    """The PCA lighting std at ``epoch`` (1 = the first): ``lighting_epochs`` or pca_lighting."""
    value = value_at_epoch(config.lighting_epochs, epoch, config.pca_lighting)
    return float(config.pca_lighting if value is None else value)


class LearningRate:
    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = config.epochs * steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)
        # plateau state
        self.reductions = 0
        self.best_error = math.inf
        self.epochs_without_improvement = 0

    def at(self, step: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based, counted over all epochs)."""
        c = self.config
        if c.schedule == "plateau":
            lr = c.lr * c.lr_factor**self.reductions
        elif c.schedule == "epochs":
            lr = value_at_epoch(c.lr_epochs, step // self.steps_per_epoch + 1, c.lr) or 0.0
        elif c.schedule == "step":
            epoch = step // self.steps_per_epoch
            lr = c.lr * c.lr_factor ** sum(epoch >= m for m in c.lr_milestones)
        else:  # cosine / linear from the end of the warmup to the last step
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            shape = 0.5 * (1 + math.cos(math.pi * progress)) if c.schedule == "cosine" else 1 - progress
            lr = c.lr * (c.final_lr_factor + (1 - c.final_lr_factor) * shape)
        if step < self.warmup_steps:
            ramp = (step + 1) / self.warmup_steps
            lr *= c.warmup_start_factor + (1 - c.warmup_start_factor) * ramp
        return lr

    def group_lr(self, group: Mapping[str, Any], lr: float, step: int) -> float:
        """The rate of one optimizer param group at ``step``, given the schedule's ``lr``."""
        overrides = group.get("lr_epochs")
        if overrides:
            value = value_at_epoch(overrides, step // self.steps_per_epoch + 1, None)
            if value is not None:
                return value
        fixed = group.get("fixed_lr")
        return lr * group["lr_scale"] if fixed is None else fixed

    def end_epoch(self, val_error: float | None) -> bool:
        """Plateau bookkeeping after validation; True when the learning rate was reduced."""
        c = self.config
        if c.schedule != "plateau" or val_error is None:
            return False
        if val_error < self.best_error - c.plateau_threshold:
            self.best_error = val_error
            self.epochs_without_improvement = 0
            return False
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= c.plateau_patience and self.reductions < c.max_lr_reductions:
            self.reductions += 1
            self.epochs_without_improvement = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"reductions": self.reductions, "best_error": self.best_error,
                "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reductions = int(state["reductions"])
        self.best_error = float(state["best_error"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
