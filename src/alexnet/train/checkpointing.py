"""The run folder (docs/ARCHITECTURE.md) and the checkpoints in it.

```
RUN_DIR/config.json        the resolved TrainConfig (+ versions, device, git commit)
RUN_DIR/metrics.jsonl      step and epoch records (rank 0)
RUN_DIR/checkpoints/       step-NNNNNNN.pt (the newest keep_checkpoints), last.pt, best.pt
RUN_DIR/model.safetensors  the best weights, in `alexnet export --format safetensors` layout
RUN_DIR/tensorboard/       event files
RUN_DIR/summary.json       final metrics and paths
```

Every checkpoint is first written whole to its own step file (temp file, fsync, rename:
``alexnet.checkpoint.atomic_save``), and only then is ``last.pt`` pointed at it, by a hard
link renamed over the old one - so a process killed at any moment leaves ``last.pt`` either
the previous complete checkpoint or the new complete one. Resuming still verifies what it
reads and falls back to the newest step file that loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.checkpoint import Checkpoint, read_checkpoint, save_checkpoint, unwrap
from alexnet.errors import AlexNetError
from alexnet.outputs import atomic_write, write_json

STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
# What a run writes in its folder (by name): --fresh removes these and nothing else.
CHECKPOINT_FILE = re.compile(r"^(step-\d+\.pt|last\.pt|best\.pt|\.(step-\d+|last|best)\.pt\..*\.tmp)$")
TENSORBOARD_FILE = re.compile(r"^events\.out\.tfevents\.")
TEMP_FILE = re.compile(r"^\..+\.tmp$")


class RunFolder:
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

    # ---- finding what to resume from ---------------------------------------------------

    def step_files(self) -> list[Path]:
        """step-*.pt, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir()
                 if (m := STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def has_checkpoint(self) -> bool:
        return self.last.exists() or bool(self.step_files())

    def newest_valid(self) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint with the highest step that reads completely, with its contents.

        last.pt is read first, but a step file newer than it wins: a kill between writing
        step-N.pt and re-linking last.pt to it must not lose step N.
        """
        problems: list[str] = []

        def read(path: Path) -> dict[str, Any] | None:
            try:
                data = read_checkpoint(path)
            except AlexNetError as error:  # truncated or foreign: try the next older one
                problems.append(str(error))
                return None
            if "training" in data and data["training"].get("step") is not None:
                return data
            problems.append(f"{path} has no training state")
            return None

        last = read(self.last) if self.last.exists() else None
        last_step = last["training"]["step"] if last is not None else -1
        for path in reversed(self.step_files()):
            if int(STEP_FILE.match(path.name).group(1)) <= last_step:  # type: ignore[union-attr]
                break
            if (data := read(path)) is not None:
                return path, data
        if last is not None:
            return self.last, last
        if problems:
            raise AlexNetError(f"no usable checkpoint in {self.checkpoints}: {problems[0]}; "
                               "start over with --fresh")
        return None

    def point_at(self, path: Path, data: dict[str, Any]) -> None:
        """Re-link last.pt (and best.pt, if ``path`` was saved as the best) to ``path``, the
        checkpoint a resume starts from: a kill after step-N.pt was written but before the
        links were leaves them at an older step, and the final weights come from best.pt."""
        if path == self.last:
            return
        targets = [self.last, *([self.best] if data["training"].get("best") else [])]
        for target in targets:
            if not (target.exists() and os.path.samefile(path, target)):
                _link_over(path, target)

    # ---- writing -----------------------------------------------------------------------

    def save(self, model: nn.Module, info: Checkpoint, training: dict[str, Any], step: int,
             keep: int, best: bool) -> Path:
        """Write step-NNNNNNN.pt, point last.pt (and best.pt) at it, drop old step files."""
        path = self.checkpoints / f"step-{step:07d}.pt"
        save_checkpoint(path, model, info, {**training, "best": best})
        _link_over(path, self.last)
        if best:
            _link_over(path, self.best)
        for old in self.step_files()[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def save_weights(self, model: nn.Module, info: Checkpoint) -> None:
        """model.safetensors in the layout `alexnet export` writes and ``load_safetensors`` reads."""
        from safetensors.torch import save_file

        from alexnet.export import metadata

        tensors = {name: t.detach().cpu().contiguous() for name, t in unwrap(model).state_dict().items()}
        for key, value in info.preprocess.items():
            if isinstance(value, torch.Tensor):
                tensors[f"preprocess.{key}"] = value.float().contiguous()
        atomic_write(self.weights, lambda temporary: save_file(tensors, str(temporary), metadata=metadata(info)))

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        """Atomically write ``data`` as indented JSON."""
        write_json(path, data)

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


def _holds_json_keys(path: Path, *keys: str) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)


def _link_over(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source`` atomically (a copy where links fail)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # file systems without hard links
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


# ---- fine-tuning: start from other weights ------------------------------------------------


def load_matching_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str
                          ) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``state`` whose name and shape match into ``model``.

    Returns (loaded, not loaded) layer names. A classifier head with another class count
    (e.g. ImageNet's 1000 -> Imagenette's 10) keeps its fresh initialisation.
    """
    own = unwrap(model).state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matching:
        raise AlexNetError(f"no weight of {source} fits the model (different architecture?)")
    unwrap(model).load_state_dict(matching, strict=False)
    layers = list(dict.fromkeys(key.rsplit(".", 1)[0] for key in own))  # forward order
    loaded_keys = {key.rsplit(".", 1)[0] for key in matching}
    # a layer counts as loaded only when all its tensors (weight and bias) were
    partly = {key.rsplit(".", 1)[0] for key in own if key not in matching}
    loaded = [name for name in layers if name in loaded_keys and name not in partly]
    return loaded, [name for name in layers if name not in loaded]


def starting_weights(init_from: str | None, weights: str | None, weights_file: str | None
                     ) -> tuple[dict[str, torch.Tensor], str] | None:
    """The state_dict to fine-tune from and a name for messages, or None for a fresh start."""
    if init_from is not None:
        data = read_checkpoint(init_from)
        return dict(data["model"]), f"checkpoint {init_from}"
    if weights == "torchvision":
        from alexnet.pretrained import WEIGHTS_NAME, torchvision_state_dict

        return torchvision_state_dict(weights_file), f"torchvision {WEIGHTS_NAME}"
    return None
