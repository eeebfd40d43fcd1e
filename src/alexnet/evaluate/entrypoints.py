"""What ``hubconf.py`` (``torch.hub.load(REPO, "alexnet2012", ...)``) calls: build a
registered model, and load its weights from whatever ``alexnet`` wrote.

``weights`` may be a checkpoint (``best.pt``), a safetensors file (``alexnet export
--format safetensors`` or a run's ``model.safetensors``), a run folder (its best
checkpoint) or a Hugging Face folder (``alexnet export --format hf``). The returned module
is in eval mode and carries the checkpoint's facts (classes, preprocessing) as
``model.checkpoint``, the way torchvision's weights carry their metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint, load_model, load_safetensors
from alexnet.models.hub import from_pretrained, is_hf_folder
from alexnet.models.registry import model_options
from alexnet.runtime.run_folder import RunFolder


def load_weights(path: str | os.PathLike[str]) -> tuple[nn.Module, Checkpoint]:
    """(model in eval mode, its facts) from any weights file or folder ``alexnet`` writes."""
    path = Path(path)
    if not path.exists():
        raise AlexNetError(f"weights not found: {path}")
    if is_hf_folder(path):
        return from_pretrained(path)
    if path.is_dir():
        checkpoint = RunFolder(path).checkpoint()
        if checkpoint is None:
            raise AlexNetError(f"weights={path} is a folder with no checkpoints/best.pt or last.pt and "
                               "no config.json + model.safetensors; give a run folder, a checkpoint or "
                               "a Hugging Face folder")
        return load_model(checkpoint)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    return load_model(path)


def hub_model(name: str, weights: str | os.PathLike[str] | None = None, **options: Any) -> nn.Module:
    """``name`` built with ``options`` (random init), or loaded from ``weights``; options
    given with weights must agree with the ones the weights were trained with."""
    if weights is None:
        return create_model(name, **options)
    model, info = load_weights(weights)
    if info.model_name != name:
        raise AlexNetError(f"weights={weights} hold {info.model_name} weights, not {name}; load them with "
                           f"the {info.model_name!r} entry point")
    valid = model_options(name)
    for key, value in options.items():
        if key not in valid:
            raise AlexNetError(f"unknown option {key!r} for model {name!r}; valid: {', '.join(valid)}")
        trained = info.model_options.get(key, valid[key])
        if trained != value:
            raise AlexNetError(f"weights={weights} were trained with {key}={trained!r}, not {value!r}; "
                               "leave the option out to load them")
    model.checkpoint = info  # type: ignore[assignment]
    return model.eval()
