"""The learning rate of every optimizer step: an optional linear warmup, then one schedule.

- ``plateau`` (§5): "divide the learning rate by 10 when the validation error rate stopped
  improving with the current learning rate", at most ``max_lr_reductions`` times (three in
  the paper: 0.01 -> 0.001 -> 1e-4 -> 1e-5). Decided at epoch ends from the val error.
- ``step``: multiply by ``lr_factor`` at each of ``lr_milestones`` (torchvision: 30, 60).
- ``cosine`` / ``linear``: a fixed-length decay from ``lr`` to ``lr * final_lr_factor``
  over the steps after the warmup (the short presets: a known end, no val-driven waiting).

Everything is a function of the step and a little state (the plateau's reductions), saved
in checkpoints, so a resumed run gets exactly the learning rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

from alexnet.train.config import TrainConfig


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
