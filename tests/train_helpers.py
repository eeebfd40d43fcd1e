"""A tiny prepared store and a tiny training config, shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from alexnet.data.prepare import prepare
from alexnet.train.config import TrainConfig, resolve_config
from data_helpers import image_folder

# 4 classes x 12 training images: 3 steps of 16 an epoch; 64px crops of 72px images are the
# smallest alexnet2012 takes (pool5 needs 3x3 maps), width 1/8 keeps a step ~10 ms.
TRAIN_PER_CLASS, VAL_PER_CLASS, CLASSES = 12, 4, ("ant", "bee", "cat", "dog")


def make_store(root: Path, classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    source = image_folder(root / "images", {
        "train": dict.fromkeys(classes, TRAIN_PER_CLASS),
        "val": dict.fromkeys(classes, VAL_PER_CLASS),
    }, seed=seed, shape=(80, 96))
    store = root / "store"
    prepare(source, store, size=72, workers=1, progress=False)
    return store


def tiny_config(store: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "model": "alexnet2012", "model_options": {"width": 0.125, "init": "kaiming"},
        "data": str(store), "image_size": 72, "crop_size": 64, "batch_size": 16, "epochs": 2,
        "lr": 0.01, "warmup_epochs": 0.0, "schedule": "cosine", "log_every_steps": 1,
        "val_batch_size": 16, "progress": "lines", "out": str(out), "flat_loss_steps": 0,
        "loader_workers": 1,
    }
    values.update(overrides)
    return resolve_config(None, values)


def weights_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs: max {(a[key] - b[key]).abs().max()}"
