"""What training measures and where it reports it: the running sums of an epoch, the
log windows, metrics.jsonl, TensorBoard, the console, and the run's summary (TrainResult).

Every rank keeps its sums; rank 0 alone writes and prints. The JSONL records have exactly the keys docs/ARCHITECTURE.md lists (errors
as fractions in [0, 1], ``time`` in seconds since the run started, ``null`` for what was not
measured, e.g. val metrics in an epoch without validation). Epochs are counted from 1
(``"epoch": 3`` is the third), ``step`` is the number of optimizer steps done.

The console shows a tqdm bar with an ETA on a terminal, and plain lines when the output is
not a terminal or ``CI`` is set (logs stay readable, no carriage returns).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from alexnet.data.loader import StoreLoader
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import topk_hits
from alexnet.runtime.outputs import write_text
from alexnet.runtime.run_folder import RunFolder
from alexnet.train import distributed as dist_utils

STEP_KEYS = ("kind", "epoch", "step", "loss", "lr", "train_top1_error", "train_top5_error",
             "images_per_s", "data_wait_fraction", "time")
EPOCH_KEYS = ("kind", "epoch", "step", "lr", "train_loss", "train_top1_error", "train_top5_error",
              "val_loss", "val_top1_error", "val_top5_error", "images_per_s",
              "data_wait_fraction", "time", "lr_reduced")


def use_progress_bar(mode: str, stream: TextIO | None = None) -> bool:
    if mode != "auto":
        return mode == "bar"
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    return (stream or sys.stderr).isatty() and not ci


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    def __init__(self, path: Path, tensorboard_dir: Path | None, resume_step: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif path.exists():
            path.unlink()
        self.file = path.open("a")
        self.writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to ``step``: what a killed run logged after its checkpoint is
        logged again by the resumed run."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by the kill
                continue
        write_text(self.path, "".join(f"{line}\n" for line in kept))  # a kill here loses nothing

    def step(self, **values: Any) -> None:
        self._write({"kind": "step", **values}, STEP_KEYS)
        if self.writer is not None:
            for key in ("loss", "lr", "train_top1_error", "train_top5_error", "images_per_s",
                        "data_wait_fraction"):
                if values.get(key) is not None:
                    self.writer.add_scalar(f"step/{key}", values[key], values["step"])

    def epoch(self, **values: Any) -> None:
        self._write({"kind": "epoch", **values}, EPOCH_KEYS)
        if self.writer is not None:
            for key in EPOCH_KEYS[3:-2]:
                if values.get(key) is not None:
                    self.writer.add_scalar(f"epoch/{key}", values[key], values["epoch"])
            self.writer.flush()

    def _write(self, record: dict[str, Any], keys: tuple[str, ...]) -> None:
        missing = [k for k in keys if k not in record]
        extra = [k for k in record if k not in keys]
        if missing or extra:
            raise ValueError(f"metrics record keys: missing {missing}, unexpected {extra}")
        self.file.write(json.dumps({k: _clean(record[k]) for k in keys}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


class Console:
    """A progress bar per epoch on a terminal; plain lines (a few per epoch) otherwise."""

    def __init__(self, bar: bool, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.bar_enabled, self.enabled, self._stream = bar, enabled, stream
        self.bar: Any = None
        self.total = 0
        self.next_line = 0

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int) -> None:
        if not self.enabled:
            return
        self.total = total
        self.next_line = done + max(1, total // 4)
        if self.bar_enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}/{epochs}", unit="step",
                            dynamic_ncols=True, leave=False, file=self.stream)

    def update(self, done: int, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(done - self.bar.n)
        elif done >= self.next_line and done < self.total:
            self.next_line = done + max(1, self.total // 4)
            self.print(f"  step {done}/{self.total}: {text}")

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: a notebook or test may swap it

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def print(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


# ---- what the loop measures: running sums, log windows, the result -------------------------


class EpochTotals:
    """Running sums of one epoch, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device, loader: StoreLoader,
                 state: dict[str, Any] | None = None) -> None:
        # loss sum, top-1 correct, top-5 correct, images
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        # since the last log line: loss sum, steps, top-1 correct, top-5 correct, images
        self.window = torch.zeros(5, dtype=torch.float64, device=device)
        self.started = time.perf_counter()
        self.loader = loader
        self.elapsed_before = self.wait_before = 0.0
        if state is not None:  # an epoch resumed midway (TrainState.epoch_totals)
            self.sums = state["sums"].to(device)
            self.elapsed_before = float(state["seconds"])
            self.wait_before = float(state["wait_seconds"])
        self.images_before = int(self.sums[3].item())  # trained by an earlier invocation

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "seconds": self.seconds(),
                "wait_seconds": self.wait_seconds()}

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        count = self.sums.new_full((), len(labels))  # a fill kernel: no host-device sync
        hits = topk_hits(logits, labels, 5)  # one topk on the hot path, as before the split
        top1, top5 = hits[:, 0].sum().double(), hits.any(dim=1).sum().double()
        self.sums += torch.stack([loss.double() * count, top1, top5, count])
        self.window += torch.stack([loss.double(), count.new_ones(()), top1, top5, count])

    def window_metrics(self, world: dist_utils.Distributed) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 error since the last call, over all ranks (on the
        augmented training views); stops the run on a NaN / inf loss."""
        window = dist_utils.sum_over_ranks(self.window.clone(), world)
        self.window.zero_()
        loss, top1, top5 = (window[[0, 2, 3]] / window[[1, 4, 4]].clamp_min(1)).tolist()
        if not math.isfinite(loss):
            raise AlexNetError(
                f"the training loss became {loss}: stopped before writing a checkpoint of the "
                "diverged weights (the last good one is intact). Try a lower lr, a longer "
                "warmup_epochs, or precision=fp32 to rule out overflow")
        return loss, 1 - top1, 1 - top5

    def images_seen(self) -> int:
        return int(self.sums[3].item())

    def this_invocation(self) -> tuple[int, float, float]:
        """Images, seconds and data-wait seconds of this process's part of the epoch: a
        resumed epoch's restored part was trained (and timed) by the invocation before."""
        return (self.images_seen() - self.images_before, self.seconds() - self.elapsed_before,
                self.wait_seconds() - self.wait_before)

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def wait_seconds(self) -> float:
        return self.wait_before + self.loader.wait_seconds

    def summary(self, world: dist_utils.Distributed) -> dict[str, float]:
        sums = dist_utils.sum_over_ranks(self.sums, world)
        images = max(1.0, sums[3].item())
        seconds = self.seconds()
        return {"loss": sums[0].item() / images, "top1_error": 1 - sums[1].item() / images,
                "top5_error": 1 - sums[2].item() / images, "images_per_s": images / seconds,
                "data_wait_fraction": self.wait_seconds() / seconds if seconds else 0.0}


class LogWindow:
    """Images/s and the data-wait fraction between two log lines."""

    def __init__(self, step: int, loader: StoreLoader) -> None:
        self.step, self.loader = step, loader
        self.time, self.wait = time.perf_counter(), loader.wait_seconds

    def close(self, step: int, global_batch: int) -> tuple[float, float]:
        now, wait = time.perf_counter(), self.loader.wait_seconds
        seconds = max(now - self.time, 1e-9)
        rates = ((step - self.step) * global_batch / seconds, max(0.0, wait - self.wait) / seconds)
        self.step, self.time, self.wait = step, now, wait
        return rates


class FlatLossCheck:
    """After ``steps`` steps, a loss still at ln(classes) (a uniform guess) is reported once."""

    def __init__(self, steps: int, classes: int, start_step: int) -> None:
        self.steps, self.chance = steps, math.log(max(2, classes))
        self.done = steps == 0 or start_step >= steps

    def check(self, step: int, loss: float) -> str | None:
        if self.done or step < self.steps:
            return None
        self.done = True
        if loss < 0.97 * self.chance:
            return None
        return (f"warning: flat loss - after {step} steps the training loss is {loss:.3f}, no "
                f"better than a uniform guess over the classes (ln K = {self.chance:.3f}). Likely "
                "causes: the paper's init (init=paper: N(0, 0.01), biases 1) is known to stall - "
                "use init=kaiming; lr too high (dead ReLUs) or too low; inputs not normalised "
                "(scale_inputs); labels that do not match the images")


def epoch_record(epoch: int, step: int, lr: float, train: dict[str, float],
                 val: dict[str, float] | None, seconds: float, reduced: bool) -> dict[str, Any]:
    """An epoch's metrics.jsonl record (EPOCH_KEYS, without ``kind``)."""
    return {"epoch": epoch, "step": step, "lr": lr, "train_loss": train["loss"],
            "train_top1_error": train["top1_error"], "train_top5_error": train["top5_error"],
            "val_loss": val and val["loss"], "val_top1_error": val and val["top1_error"],
            "val_top5_error": val and val["top5_error"], "images_per_s": train["images_per_s"],
            "data_wait_fraction": train["data_wait_fraction"], "time": seconds,
            "lr_reduced": reduced}


def epoch_line(epoch: int, epochs: int, train: dict[str, float], val: dict[str, float] | None,
               reduced: bool, lr: float) -> str:
    line = (f"epoch {epoch}/{epochs}: train loss {train['loss']:.3f}, top-1 error "
            f"{train['top1_error']:.1%}")
    if val:
        line += (f"; val loss {val['loss']:.3f}, top-1 error {val['top1_error']:.1%}, top-5 "
                 f"error {val['top5_error']:.1%}")
    line += (f"; lr {lr:.3g}; {train['images_per_s']:.0f} img/s, data wait "
             f"{train['data_wait_fraction']:.1%}")
    return line + (" - val error stopped improving: lr / 10 (§5)" if reduced else "")


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # finished | stopped (signal) | max_steps
    epochs: int  # completed epochs
    steps: int
    seconds: float
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    weights: Path | None
    val: dict[str, float] | None  # centre crop of the best model: loss, top1_error, top5_error
    val_ten_crop: dict[str, float] | None
    train: dict[str, float] | None  # last epoch, on the augmented training views
    images_per_s: float
    data_wait_fraction: float
    summary_lines: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # the signal that stopped it: SIGINT (Ctrl-C) or SIGTERM
    best_epoch: int = 0
    precision: str = "fp32"  # what this invocation computed in: fp32, or bf16 / fp16 autocast
    images_trained: int = 0  # by this invocation (0: the run was already finished)

    def summary(self) -> str:
        return "\n".join(self.summary_lines)

    def lines(self, run: RunFolder) -> list[str]:
        """The summary printed at the end of ``alexnet train``."""
        lines = [f"{self.status}: {self.epochs} epochs, {self.steps} steps in "
                 f"{self.seconds / 60:.1f} min ({self.images_per_s:.0f} images/s, data wait "
                 f"{self.data_wait_fraction:.1%})"]
        if self.train:
            lines.append(f"train (last epoch, augmented): top-1 error "
                         f"{self.train['top1_error']:.1%}, top-5 error {self.train['top5_error']:.1%}")
        if self.val:
            lines.append(f"val (centre crop): top-1 error {self.val['top1_error']:.1%}, "
                         f"top-5 error {self.val['top5_error']:.1%}  (best epoch {self.best_epoch})")
        if self.val_ten_crop:
            lines.append(f"val (10 crops): top-1 error {self.val_ten_crop['top1_error']:.1%}, "
                         f"top-5 error {self.val_ten_crop['top5_error']:.1%}")
        lines.append(f"run folder: {run.root}")
        lines.append(f"  metrics: {run.metrics} (tensorboard --logdir {run.tensorboard})")
        if self.best_checkpoint or self.last_checkpoint:
            names = [str(p) for p in (self.best_checkpoint, self.last_checkpoint) if p]
            lines.append(f"  checkpoints: {', '.join(names)}")
        if self.weights:
            lines.append(f"  weights: {self.weights}")
        lines.append(f"  summary: {run.summary}")
        return lines

    def record(self, run: RunFolder) -> dict[str, Any]:
        """summary.json."""
        def text(path: Path | None) -> str | None:
            return str(path) if path else None

        return {
            "status": self.status, "epochs": self.epochs, "steps": self.steps,
            "seconds": round(self.seconds, 1), "images_per_s": self.images_per_s,
            "data_wait_fraction": self.data_wait_fraction, "best_epoch": self.best_epoch,
            "precision": self.precision,
            "val_center": self.val, "val_ten_crop": self.val_ten_crop, "train": self.train,
            "paths": {"run": str(run.root), "config": str(run.config), "metrics": str(run.metrics),
                      "tensorboard": str(run.tensorboard),
                      "best_checkpoint": text(self.best_checkpoint),
                      "last_checkpoint": text(self.last_checkpoint), "weights": text(self.weights)},
        }
