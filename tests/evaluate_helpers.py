"""Tiny checkpoints and image folders for the evaluation, inference and report tests."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint, save_checkpoint
from data_helpers import image_folder

CLASSES = ("ant", "bee", "cat", "dog")
IMAGE_SIZE, CROP_SIZE = 72, 64  # the smallest alexnet2012 takes (pool5 needs 3x3 maps)


def channel_preprocess(image_size: int = IMAGE_SIZE, crop_size: int = CROP_SIZE) -> dict[str, object]:
    return {"image_size": image_size, "crop_size": crop_size, "normalization": "channel",
            "mean": torch.tensor([124.0, 116.0, 104.0]), "std": torch.tensor([58.0, 57.0, 57.5])}


def mean_image_preprocess(image_size: int = IMAGE_SIZE, crop_size: int = CROP_SIZE,
                          seed: int = 0) -> dict[str, object]:
    generator = torch.Generator().manual_seed(seed)
    return {"image_size": image_size, "crop_size": crop_size, "normalization": "mean_image",
            "mean": torch.rand(3, image_size, image_size, generator=generator) * 255,
            "std": torch.full((3,), 60.0)}


def make_checkpoint(path: Path, classes: tuple[str, ...] | list[str] = CLASSES, *, seed: int = 0,
                    model: str = "alexnet2012", width: float = 0.125,
                    preprocess: dict[str, object] | None = None) -> Path:
    """A randomly initialised model saved as an alexnet checkpoint."""
    torch.manual_seed(seed)
    options = {"num_classes": len(classes), "width": width}
    network = create_model(model, **options)
    info = Checkpoint(model, options, list(classes), [c.upper() for c in classes],
                      preprocess or channel_preprocess())
    save_checkpoint(path, network, info)
    return path


def make_folder(root: Path, per_class: int = 3, classes: tuple[str, ...] = CLASSES,
                seed: int = 0) -> Path:
    """root/{train,val}/<class>/*.JPEG with random images of varied sizes."""
    return image_folder(root, {"train": dict.fromkeys(classes, per_class + 2),
                               "val": dict.fromkeys(classes, per_class)}, seed=seed, shape=(80, 96))
