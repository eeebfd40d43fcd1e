"""The checkpoints of a run folder (alexnet/runtime/run_folder.py): writing and resuming.

Every checkpoint is first written whole to its own step file (temp file, fsync, rename:
``alexnet.models.checkpoint.atomic_save``), and only then is ``last.pt`` pointed at it, by a hard
link renamed over the old one - so a process killed at any moment leaves ``last.pt`` either
the previous complete checkpoint or the new complete one. Resuming still verifies what it
reads and falls back to the newest step file that loads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.checkpoint import (
    Checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_safetensors,
    unwrap,
)
from alexnet.models.pretrained import WEIGHTS_NAME, torchvision_state_dict
from alexnet.runtime.outputs import atomic_write, write_json
from alexnet.runtime.run_folder import STEP_FILE, RunFolder


class TrainingRun(RunFolder):
    """A run folder as training writes it: step checkpoints, last.pt / best.pt, weights."""

    # ---- finding what to resume from ---------------------------------------------------

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
        atomic_write(self.weights, lambda temporary: save_safetensors(temporary, model, info))

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        """Atomically write ``data`` as indented JSON."""
        write_json(path, data)


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
        return torchvision_state_dict(weights_file), f"torchvision {WEIGHTS_NAME}"
    return None
