"""The Hugging Face Hub layout: ``config.json`` + ``model.safetensors`` + ``README.md``.

``huggingface_hub``'s ``PyTorchModelHubMixin`` does the writing and reading: ``AlexNetHub``
wraps the registered network (``create_model``) and is an ``nn.Module`` with the same
forward, so ``AlexNetHub.from_pretrained(DIR)`` gives the same logits as the checkpoint it
was exported from. Its ``__init__`` arguments are the checkpoint's facts (model name and
options, class ids and names, the non-tensor preprocessing and the shapes of its tensors);
the mixin stores them as ``config.json``. The weights and the preprocessing tensors (mean
image or channel mean, std: what the evaluation views need, §2) are the module's state,
stored by the mixin as ``model.safetensors``. ``README.md`` is the model card
(``alexnet.report.card``, written by ``alexnet export RUN --format hf DIR``).

Loading never needs the network: ``from_pretrained(DIR)`` reads a local folder (or a hub
repository id, where the user has asked for one), strict about every tensor.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint

HF_FORMAT = "alexnet-hf/1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"


class AlexNetHub(nn.Module, PyTorchModelHubMixin, library_name="alexnet", license="mit",
                 pipeline_tag="image-classification", tags=["alexnet", "image-classification"]):
    """A registered network plus its preprocessing, saved and loaded by the hub mixin."""

    def __init__(self, model_name: str = "alexnet2012", model_options: dict[str, Any] | None = None,
                 classes: list[str] | None = None, class_names: list[str] | None = None,
                 preprocess: dict[str, Any] | None = None,
                 preprocess_shapes: dict[str, list[int]] | None = None,
                 format: str = HF_FORMAT) -> None:
        super().__init__()
        if format != HF_FORMAT:
            raise AlexNetError(f"config.json format {format!r} is not {HF_FORMAT!r}; not an alexnet export")
        self.model_name = model_name
        self.model_options = dict(model_options or {})
        self.classes = list(classes or [])
        self.class_names = list(class_names or self.classes)
        self.preprocess = dict(preprocess or {})
        self.network = create_model(model_name, **self.model_options)
        # (3, S, S) mean image or (3,) channel mean, (3,) std: filled by the state dict
        for key, shape in (preprocess_shapes or {}).items():
            self.register_buffer(f"preprocess_{key}", torch.zeros(shape))

    @classmethod
    def from_checkpoint(cls, model: nn.Module, info: Checkpoint) -> AlexNetHub:
        tensors = {k: v for k, v in info.preprocess.items() if isinstance(v, torch.Tensor)}
        plain = {k: v for k, v in info.preprocess.items() if not isinstance(v, torch.Tensor)}
        hub = cls(info.model_name, dict(info.model_options), list(info.classes), list(info.class_names),
                  plain, {k: list(v.shape) for k, v in tensors.items()})
        hub.network.load_state_dict(model.state_dict())
        for key, value in tensors.items():
            getattr(hub, f"preprocess_{key}").copy_(value.float())
        return hub.eval()

    def checkpoint(self, path: Path | None = None) -> Checkpoint:
        """The facts a ``.pt`` checkpoint would carry (``alexnet.models.checkpoint.Checkpoint``)."""
        preprocess = dict(self.preprocess)
        for name, buffer in self.named_buffers(recurse=False):
            preprocess[name.removeprefix("preprocess_")] = buffer.detach().clone()
        return Checkpoint(self.model_name, dict(self.model_options), list(self.classes),
                          list(self.class_names), preprocess, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)  # (B, 3, crop, crop) normalised -> (B, num_classes) logits


def is_hf_folder(path: str | os.PathLike[str]) -> bool:
    """A folder ``save_pretrained`` wrote (a run folder also has config.json and
    model.safetensors, so the config's format tag decides)."""
    path = Path(path)
    if not (path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()):
        return False
    try:
        return json.loads((path / CONFIG).read_text()).get("format") == HF_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_pretrained(model: nn.Module, info: Checkpoint, directory: str | os.PathLike[str]) -> Path:
    """config.json + model.safetensors in ``directory`` (the mixin's layout); no card."""
    directory = Path(directory)
    AlexNetHub.from_checkpoint(model, info).save_pretrained(directory)
    return directory


def from_pretrained(path: str | os.PathLike[str], **options: Any) -> tuple[nn.Module, Checkpoint]:
    """(network in eval mode, its Checkpoint facts) from a folder ``save_pretrained`` wrote.

    ``options`` go to ``PyTorchModelHubMixin.from_pretrained`` (e.g. ``revision``); loading
    is strict: a missing or unexpected tensor is an error, not a silently random layer.
    """
    local = Path(path)
    if local.exists() and not is_hf_folder(local):
        raise AlexNetError(f"{local} is not a Hugging Face model folder (no {CONFIG} + {WEIGHTS}); "
                           "write one with alexnet export RUN --format hf DIR")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints where it loads from
            hub = AlexNetHub.from_pretrained(path, strict=True, **options)
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise AlexNetError(f"cannot load {path} as an alexnet model: {first}") from error
    info = hub.checkpoint(local if local.exists() else None)
    return hub.network.eval(), info
