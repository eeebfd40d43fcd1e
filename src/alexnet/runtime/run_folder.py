"""The run folder: what ``alexnet train --out RUN_DIR`` writes, and the one reader of it.

```
RUN_DIR/config.json        the resolved TrainConfig (+ versions, device, git commit)
RUN_DIR/metrics.jsonl      step and epoch records (rank 0)
RUN_DIR/checkpoints/       step-NNNNNNN.pt (the newest keep_checkpoints), last.pt, best.pt
RUN_DIR/model.safetensors  the best weights, in `alexnet export --format safetensors` layout
RUN_DIR/tensorboard/       event files
RUN_DIR/summary.json       final metrics and paths
```

Training writes it (alexnet/train/checkpointing.py adds the checkpoint writing); the report,
the model card, the experiments, the int8 calibration and torch.hub read it through here.
The store a run trained on: ``alexnet.data.store.data_from_config``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError

STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
# What a run writes in its folder (by name): --fresh removes these and nothing else.
CHECKPOINT_FILE = re.compile(r"^(step-\d+\.pt|last\.pt|best\.pt|\.(step-\d+|last|best)\.pt\..*\.tmp)$")
TENSORBOARD_FILE = re.compile(r"^events\.out\.tfevents\.")
TEMP_FILE = re.compile(r"^\..+\.tmp$")


class RunFolder:
    """The paths of one run folder and what reads them."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.tensorboard = self.root / "tensorboard"
        self.weights = self.root / "model.safetensors"
        self.summary = self.root / "summary.json"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"

    # ---- reading -----------------------------------------------------------------------

    def read_config(self) -> dict[str, Any]:
        """config.json ({} when absent)."""
        return _read_json(self.config)

    def read_summary(self) -> dict[str, Any]:
        """summary.json ({} when absent)."""
        return _read_json(self.summary)

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's records in order ([] when absent). A run killed mid-write leaves
        a partial last line, which is skipped; a damaged line before it is an error."""
        if not self.metrics.is_file():
            return []
        lines = self.metrics.read_text().splitlines()
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number != len(lines):
                    raise AlexNetError(f"{self.metrics}:{number} is not valid JSON") from None
        return records

    def epoch_records(self) -> list[dict[str, Any]]:
        """The epoch records, the last one of each epoch (a resumed run repeats epochs)."""
        by_epoch = {int(r["epoch"]): r for r in self.read_metrics() if r.get("kind") == "epoch"}
        return [by_epoch[e] for e in sorted(by_epoch)]

    def step_files(self) -> list[Path]:
        """step-*.pt, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir()
                 if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def has_checkpoint(self) -> bool:
        return self.last.exists() or bool(self.step_files())

    def checkpoint(self) -> Path | None:
        """The weights to use: checkpoints/best.pt, else last.pt; None when neither exists."""
        return next((path for path in (self.best, self.last) if path.is_file()), None)

    # ---- ownership: what training may write over or --fresh may delete ---------------

    def own_files(self) -> tuple[Path, ...]:
        return (self.config, self.metrics, self.weights, self.summary)

    def check_ours(self) -> None:
        """Refuse a folder holding files a run did not write: training would write over an
        unrelated config.json or summary.json, and --fresh would delete beside them."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise AlexNetError(f"--out {self.root} is a file; give a folder for the run")
        for folder in (self.checkpoints, self.tensorboard):
            if folder.is_symlink():  # --fresh would leave the old run's files, a resume use them
                raise AlexNetError(f"{folder} is a link (to {os.readlink(folder)}); a run keeps "
                                   f"its {folder.name} in its own folder: remove the link or "
                                   "choose another --out")
        if self.config.exists():
            if not _holds_json_keys(self.config, "model", "versions"):
                raise AlexNetError(f"{self.config} is not an alexnet run's config; training "
                                   "would write over it: choose another --out")
            if self.summary.exists() and not _holds_json_keys(self.summary, "status", "paths"):
                raise AlexNetError(f"{self.summary} is not an alexnet run's summary; training "
                                   "would write over it: choose another --out")
            return  # a run folder of ours: anything the user added beside it is left alone
        foreign = [entry.name for entry in self.root.iterdir() if not self._is_ours(entry)]
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise AlexNetError(f"--out {self.root} is not empty and is not a run folder (it "
                               f"holds {foreign[0]!r}{more}); choose a new or empty folder")

    def _is_ours(self, entry: Path) -> bool:
        if entry.name in {p.name for p in self.own_files()} or TEMP_FILE.match(entry.name):
            return entry.name != self.summary.name or _holds_json_keys(entry, "status", "paths")
        pattern = {self.checkpoints.name: CHECKPOINT_FILE,
                   self.tensorboard.name: TENSORBOARD_FILE}.get(entry.name)
        return (pattern is not None and entry.is_dir() and not entry.is_symlink()
                and all(pattern.match(p.name) for p in entry.iterdir()))

    def clear(self) -> None:
        """--fresh: remove what an earlier run wrote here, by name; never other files (a
        folder the user put files in is left with them)."""
        # config.json stays: the new run writes its own over it, and until then it marks the
        # folder as a run's, so a launch that fails after this is not locked out of it
        for path in self.own_files():
            if path != self.config and (path.is_file() or path.is_symlink()):
                path.unlink()
        for folder, pattern in ((self.checkpoints, CHECKPOINT_FILE),
                                (self.tensorboard, TENSORBOARD_FILE)):
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                if pattern.match(path.name) and path.is_file() and not path.is_symlink():
                    path.unlink()
            with contextlib.suppress(OSError):  # not empty: it holds the user's files
                folder.rmdir()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as error:
        raise AlexNetError(f"{path} is not valid JSON: {error}") from error


def _holds_json_keys(path: Path, *keys: str) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)
