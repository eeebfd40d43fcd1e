"""Where a training run is: what a checkpoint saves and what a resume restores, in one place.

``TrainState`` holds the counters (steps, completed epochs, the best validation error so
far) beside the objects whose state a checkpoint carries (model, optimizer, schedule,
gradient scaler, loader position). ``save`` writes exactly what ``restore`` reads, so the
two cannot drift apart. The checkpoint's ``training`` record:

    step, epoch, best_error, best_epoch   the counters
    optimizer, schedule, scaler, loader   their state_dicts
    epoch_totals                          the running sums of an epoch stopped midway, or None
    rng                                   torch's generators (re-seeded every step anyway)
    config                                the TrainConfig as run (checked by ``check_same_run``)
    metrics                               the metrics.jsonl record of the epoch it ends, or None
    best                                  whether it was written as best.pt too
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.data.loader import StoreLoader
from alexnet.errors import AlexNetError
from alexnet.models.checkpoint import Checkpoint, unwrap
from alexnet.train import distributed as dist_utils
from alexnet.train.checkpointing import TrainingRun
from alexnet.train.config import TrainConfig
from alexnet.train.schedule import LearningRate
from alexnet.train.step import load_optimizer_state

# Config fields that fix what a checkpoint is: resuming with other values would silently
# train something else, so they must match (the schedule and logging may change).
IDENTITY_FIELDS = ("model", "model_options", "data", "train_split", "crop_size", "batch_size",
                   "seed", "normalization", "scale_inputs", "towers_on_devices")


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LearningRate
    scaler: torch.amp.GradScaler
    loader: StoreLoader  # the training loader: its epoch and position in it
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    best_error: float = math.inf  # the best validation top-1 error so far
    best_epoch: int = 0
    epoch_totals: dict[str, Any] | None = None  # an epoch checkpointed midway: its sums

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint`` (read by TrainingRun.newest_valid)."""
        training = checkpoint["training"]
        unwrap(self.model).load_state_dict(checkpoint["model"])
        load_optimizer_state(self.optimizer, training["optimizer"])
        self.schedule.load_state_dict(training["schedule"])
        self.scaler.load_state_dict(training["scaler"])
        self.loader.load_state_dict(training["loader"])
        self.step, self.epoch = int(training["step"]), int(training["epoch"])
        self.best_error, self.best_epoch = float(training["best_error"]), int(training["best_epoch"])
        self.epoch_totals = training.get("epoch_totals")
        _restore_rng(training.get("rng"))

    def take_epoch_totals(self) -> dict[str, Any] | None:
        """The sums a resumed epoch continues from, once (later epochs start at zero)."""
        totals, self.epoch_totals = self.epoch_totals, None
        return totals

    def save(self, run: TrainingRun, info: Checkpoint, config: TrainConfig,
             world: dist_utils.Distributed, *, best: bool,
             epoch_totals: dict[str, Any] | None = None,
             epoch_record: dict[str, Any] | None = None) -> Path | None:
        """Write a checkpoint of this state (rank 0 writes; the others wait, so that nobody
        runs ahead of it) and return last.pt. A new best is also written as
        model.safetensors (weights only), so a stopped run has one too."""
        if not all(bool(torch.isfinite(p).all()) for p in unwrap(self.model).parameters()):
            raise AlexNetError("the weights became nan/inf: stopped before writing a checkpoint "
                               "of them (the last good one is intact). Try a lower lr or a "
                               "longer warmup_epochs")
        path = None
        if world.is_main:
            training = {
                "step": self.step, "epoch": self.epoch, "best_error": self.best_error,
                "best_epoch": self.best_epoch, "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "loader": self.loader.state_dict(), "epoch_totals": epoch_totals,
                "rng": _rng_state(), "config": config.to_dict(), "metrics": epoch_record,
            }
            path = run.save(self.model, info, training, self.step, config.keep_checkpoints, best)
            if best:
                run.save_weights(self.model, info)
        dist_utils.barrier(world)
        return run.last if path is not None else None


def check_same_run(config: TrainConfig, checkpoint: dict[str, Any], path: Path) -> None:
    """A one-line error when ``config`` would train something else than ``checkpoint`` did."""
    saved = checkpoint["training"].get("config", {})
    for name in IDENTITY_FIELDS:
        ours = getattr(config, name)
        theirs = saved.get(name, ours)
        if name == "data":
            ours, theirs = str(Path(ours).resolve()), str(Path(theirs).resolve())
        if ours != theirs:
            raise AlexNetError(f"{path} was trained with {name}={theirs!r}, not {ours!r}: resume "
                               "with the same settings, or start over with --fresh / another --out")


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any] | None) -> None:
    """Also re-seeded every step (alexnet/train/loop.py's module doc); restored for completeness."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
