"""torchvision's IMAGENET1K_V1 AlexNet weights as an ``alexnet2014`` model.

torchvision's ``alexnet`` is Krizhevsky's 2014 single-tower network; ``alexnet2014`` has the
same module layout, so its state_dict loads unchanged (56.5% / 79.1% top-1 / top-5 accuracy,
centre crop, as torchvision publishes). The weights come from torchvision's own weights API
(downloaded once into the torch hub cache) or from a local ``.pth`` file for offline machines.

Class order: ImageNet-1k class ``i`` is the i-th wnid in sorted order (``imagenet_wnids.txt``,
from timm's ``imagenet_synsets.txt``; checked against the Imagenette indices of
../shared/data/README.md in the tests), named by torchvision's ``meta["categories"]``. The
wnids matter: a dataset whose class folders are wnids (Imagenette) is scored against the
right ImageNet outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import AlexNet_Weights

from alexnet.data.classes import imagenet_wnids
from alexnet.errors import AlexNetError, short_reason
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint, safe_load

WEIGHTS_NAME = "IMAGENET1K_V1"


def torchvision_preprocess() -> dict[str, object]:
    """torchvision's evaluation transform for these weights, in checkpoint form (0..255 pixels):
    resize the shorter side to 256, centre 224 crop, per-channel mean/std normalisation."""
    transform = AlexNet_Weights.IMAGENET1K_V1.transforms()
    return {
        "image_size": int(transform.resize_size[0]),
        "crop_size": int(transform.crop_size[0]),
        "normalization": "channel",
        "mean": torch.tensor(transform.mean) * 255.0,  # (3,)
        "std": torch.tensor(transform.std) * 255.0,  # (3,)
    }


def torchvision_state_dict(weights_file: str | os.PathLike[str] | None = None,
                           progress: bool = True) -> dict[str, torch.Tensor]:
    """The IMAGENET1K_V1 state_dict: from ``weights_file`` or downloaded via torchvision."""
    weights = AlexNet_Weights.IMAGENET1K_V1
    if weights_file is None:
        try:
            return weights.get_state_dict(progress=progress, check_hash=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; hash mismatch a RuntimeError
            reason = short_reason(error)
            raise AlexNetError(
                f"cannot download torchvision's AlexNet {WEIGHTS_NAME} weights ({reason}); "
                f"fetch {weights.url} on a machine with network and pass --weights-file PATH"
            ) from error
    path = Path(weights_file)
    state = safe_load(path, what="weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AlexNetError(f"{path} is not a state_dict (a dict of tensors) of torchvision's alexnet")
    return state


def torchvision_alexnet(weights_file: str | os.PathLike[str] | None = None,
                        progress: bool = True) -> tuple[nn.Module, Checkpoint]:
    """``alexnet2014`` with torchvision's IMAGENET1K_V1 weights, in eval mode, and its metadata."""
    state = torchvision_state_dict(weights_file, progress)
    model = create_model("alexnet2014", num_classes=1000)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        source = weights_file or f"torchvision {WEIGHTS_NAME}"
        raise AlexNetError(
            f"{source} does not hold torchvision alexnet weights: {short_reason(error)}"
        ) from error
    info = Checkpoint(
        model_name="alexnet2014",
        model_options={"num_classes": 1000},
        classes=imagenet_wnids(),
        class_names=list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"]),
        preprocess=torchvision_preprocess(),
        path=Path(weights_file) if weights_file else None,
    )
    return model.eval(), info
