"""The training data of a run: a prepared store, prepared here first if given a folder.

``config.data`` may be a store written by ``alexnet prepare``, an image folder (ImageFolder
tree with train/ and val/), or ``torchvision:NAME``; the latter two are prepared once at
``config.image_size`` into ``config.store_dir/<name>-<size>`` (rank 0 prepares, the other
ranks wait), and reused by every later run.

Input units. The paper subtracts the mean image from raw 0..255 pixels (§2) and initialises
every weight with std 0.01 (§5), which together set the scale of every activation. The
presets' He (kaiming) initialisation assumes unit-variance inputs instead, so with
``scale_inputs`` the mean-subtracted pixels are also divided by one number, the training
set's pixel standard deviation (about 60 grey levels): a change of units, the same for all
three channels, so colour ratios and the PCA lighting of §4.1 are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.data.augment import TrainAugment
from alexnet.data.prepare import prepare
from alexnet.data.store import MANIFEST, ImageStore, is_store_folder, open_store, store_path
from alexnet.errors import AlexNetError
from alexnet.train import distributed as dist_utils
from alexnet.train.config import TrainConfig


@dataclass
class TrainingData:
    train: ImageStore
    val: ImageStore | None
    input_scale: float  # multiply the normalised pixels by this (1 / pixel std, or 1)

    def preprocess(self, augment: TrainAugment) -> dict[str, Any]:
        """The checkpoint ``preprocess``: what evaluation must do to match training."""
        pre = augment.preprocess(self.train.size)
        if self.input_scale != 1.0:
            pre["std"] = pre["std"] / self.input_scale  # (x - mean) / std, std in 0..255 units
        return pre


def open_training_data(config: TrainConfig, world: dist_utils.Distributed,
                       say: Callable[[str], None]) -> TrainingData:
    root = store_root(config, world, say)
    train = open_store(root, config.train_split)
    if config.crop_size > train.size:
        raise AlexNetError(f"crop_size {config.crop_size} is larger than the {train.size}px images "
                           f"of {root}; lower crop_size or prepare the store at a larger size")
    if train.size != config.image_size:
        say(f"note: {root} holds {train.size}px images (config image_size {config.image_size}); "
            f"training on {config.crop_size}px crops of them")
    val = None
    try:
        val = open_store(root, config.val_split)
    except AlexNetError as error:
        say(f"warning: no validation split ({error}); the best checkpoint is the last one")
    scale = 1.0
    if config.scale_inputs and config.normalization == "mean_image":
        scale = 1.0 / max(pixel_std(train.stats), 1e-3)
    return TrainingData(train, val, scale)


def store_root(config: TrainConfig, world: dist_utils.Distributed | None = None,
               say: Callable[[str], None] = print) -> Path:
    """The store to train from, preparing ``config.data`` into one when it is not a store
    (once, on the main process: ``store_path`` says where)."""
    data = config.data
    if not data.startswith("torchvision:"):
        if is_store_folder(data):
            return Path(data)
        check_data_path(Path(data))
    world = world or dist_utils.Distributed()
    dest = store_path(data, config.store_dir, config.image_size)
    if world.is_main:  # prepare is idempotent: a finished store is only checked, not redone

        fresh = not (dest / MANIFEST).is_file()
        if fresh:
            say(f"preparing {data} into {dest} ({config.image_size}px, once; alexnet prepare)")
        report = prepare(data, dest, size=config.image_size,
                         download=data.startswith("torchvision:"), progress=False)
        if fresh:
            say(report.summary())
    dist_utils.barrier(world)
    return dest


def check_data_path(path: Path) -> None:
    """A one-line error unless ``path`` is a folder (a store or an image folder)."""
    if not path.exists():
        raise AlexNetError(f"training data not found: {path} (give a store made by "
                           "alexnet prepare, an image folder, or torchvision:imagenette)")
    if not path.is_dir():
        raise AlexNetError(f"training data {path} is a file; give a folder or a store")


def pixel_std(stats: Any) -> float:
    """The training set's pixel standard deviation, over all three channels (0..255 units)."""
    return math.sqrt(float(torch.as_tensor(stats.channel_std).double().pow(2).mean()))
