"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding plain containers and tensors only:

    format         "alexnet-checkpoint/1"
    model_name     registry name, e.g. "alexnet2012"
    model_options  the create_model options (num_classes, width, ...), so it rebuilds itself
    model          state_dict of the unwrapped, uncompiled model (no "module." / "_orig_mod.")
    classes        class ids in label order (wnids or folder names)
    class_names    human-readable names in the same order
    preprocess     {"image_size": 256, "crop_size": 224, "normalization": "mean_image" |
                    "channel", "mean": float tensor (3, S, S) or (3,), "std": (3,) tensor}
                   (pixel values in 0..255, what the evaluation views need)
    training       anything the trainer needs to resume (optimizer, scheduler, scaler,
                   epoch/step, RNG states, loader position, config, metrics); optional

The write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the destination: a process killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models import create_model

FORMAT = "alexnet-checkpoint/1"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


@dataclass
class Checkpoint:
    """What a checkpoint says about its model (everything but the training state)."""

    model_name: str
    model_options: dict[str, Any]
    classes: list[str]
    class_names: list[str]
    preprocess: dict[str, Any]
    path: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    info: Checkpoint,
    training: dict[str, Any] | None = None,
) -> None:
    atomic_save(
        {
            "format": FORMAT,
            "model_name": info.model_name,
            "model_options": dict(info.model_options),
            "model": unwrap(model).state_dict(),
            "classes": list(info.classes),
            "class_names": list(info.class_names),
            "preprocess": dict(info.preprocess),
            "training": training or {},
        },
        path,
    )


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, with one-line errors for a missing or foreign file."""
    path = Path(path)
    if not path.exists():
        raise AlexNetError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise AlexNetError(f"{path} is a folder; give a checkpoint file (e.g. {path}/best.pt)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, not a torch file, or unsafe pickle content
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AlexNetError(f"cannot read checkpoint {path}: {first_line[:200]}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AlexNetError(f"{path} is not an alexnet checkpoint (no '{FORMAT}' format tag)")
    return data


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint was saved from, weights loaded, in eval mode."""
    data = read_checkpoint(path, map_location)
    info = Checkpoint(
        model_name=data["model_name"],
        model_options=dict(data["model_options"]),
        classes=list(data["classes"]),
        class_names=list(data["class_names"]),
        preprocess=dict(data["preprocess"]),
        path=Path(path),
        training=data.get("training", {}),
    )
    model = create_model(info.model_name, **info.model_options)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as error:
        raise AlexNetError(
            f"checkpoint {path} does not match {info.model_name} with {info.model_options}: "
            f"{str(error).splitlines()[0][:200]}"
        ) from error
    return model.eval(), info
