"""Where training reports itself: metrics.jsonl, TensorBoard, and the console.

Rank 0 only. The JSONL records have exactly the keys docs/ARCHITECTURE.md lists (errors
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
from pathlib import Path
from typing import Any, TextIO

from alexnet.runtime.outputs import write_text

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
