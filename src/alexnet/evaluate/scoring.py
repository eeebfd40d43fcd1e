"""Models ready to score uint8 image batches: preprocessing, test views, precision, classes.

Shared by evaluation and inference. A ``ScoringModel`` takes the uint8 ``(B, S, S, 3)``
batches that stores and image folders yield, applies the checkpoint's own preprocessing
(mean image or per-channel normalisation, §2), cuts the test views (centre crop, or the
paper's 10 patches of §4.1: four corners + centre and their reflections) and averages the
softmax over them.

Fast path: channels_last and bf16 autocast on GPUs and on CPUs with AMX / AVX-512-bf16
(``precision="auto"``); logits are cast back to float32 before the softmax so averaging and
top-k run in full precision. ``precision="fp32"`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.augment import VIEWS, EvalTransform
from alexnet.errors import AlexNetError, unknown_choice
from alexnet.evaluate.onnx_model import is_onnx, load_onnx
from alexnet.models.checkpoint import Checkpoint, load_model
from alexnet.models.hub import from_pretrained, is_hf_folder
from alexnet.models.pretrained import WEIGHTS_NAME, torchvision_alexnet
from alexnet.runtime.device import PRECISION_NAMES, PRECISIONS, autocast_dtype

VIEW_ALIASES = {"10crop": "ten_crop"}
LABEL_SPACES = ("data", "model")


@dataclass
class LoadedModel:
    """A model in eval mode with its checkpoint metadata and a name for tables."""

    model: nn.Module
    info: Checkpoint
    name: str


def load_models(
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    weights: str | None = None,
    weights_file: str | os.PathLike[str] | None = None,
) -> list[LoadedModel]:
    """Checkpoints (several = an ensemble), plus torchvision's weights when ``weights`` says so."""
    if weights not in (None, "torchvision"):
        raise unknown_choice("--weights", weights, ["torchvision"])
    if weights_file is not None and weights is None:
        raise AlexNetError("--weights-file needs --weights torchvision")
    loaded: list[LoadedModel] = []
    for path in checkpoints:
        try:
            # an int8 graph or a Hugging Face folder of `alexnet export` scores like a checkpoint
            if is_onnx(path):
                model, info = load_onnx(path)
            elif is_hf_folder(path):
                model, info = from_pretrained(path)
            else:
                model, info = load_model(path)
        except AlexNetError as error:
            hint = ("; torchvision .pth weights are read with --weights torchvision --weights-file PATH"
                    if "not an alexnet checkpoint" in str(error) else "")
            message = str(error) if str(path) in str(error) else f"checkpoint {path}: {error}"
            raise AlexNetError(message + hint) from error
        loaded.append(LoadedModel(model, info, Path(path).name))
    if weights == "torchvision":
        model, info = torchvision_alexnet(weights_file)
        loaded.append(LoadedModel(model, info, f"torchvision {WEIGHTS_NAME}"))
    if not loaded:
        raise AlexNetError("no model given: pass checkpoint files or --weights torchvision")
    return loaded


def canonical_view(views: str) -> str:
    """``center`` or ``ten_crop``; ``10crop`` is accepted for the latter."""
    name = VIEW_ALIASES.get(views, views)
    if name not in VIEWS:
        raise unknown_choice("views", views, [*VIEWS, *VIEW_ALIASES])
    return name


class ScoringModel:
    """A model on its device, channels_last, with the data package's evaluation views."""

    def __init__(self, loaded: LoadedModel, device: torch.device, precision: str = "auto", *,
                 in_place: bool = False) -> None:
        """``in_place``: score the model where and as it is - the model being trained, which
        may span two devices (§3.2 towers) and whose mode the caller sets - instead of
        moving it to ``device`` in eval mode, channels_last."""
        self.name = loaded.name
        self.info = loaded.info
        if precision not in PRECISIONS:
            raise unknown_choice("precision", precision, PRECISIONS)
        # an int8 graph (alexnet.evaluate.onnx_model) has its own arithmetic: no autocast, and it runs
        # in onnxruntime on the CPU whatever the device (its views are cut there too)
        self.int8 = getattr(loaded.model, "precision", None) == "int8"
        self.device = torch.device("cpu") if self.int8 else device
        self.autocast = None if self.int8 else autocast_dtype(device, precision)
        self.model = loaded.model
        if not in_place:
            self.model = self.model.eval().to(self.device, memory_format=torch.channels_last)
        pre = loaded.info.preprocess
        missing = [key for key in ("image_size", "crop_size", "mean") if key not in pre]
        if missing:
            raise AlexNetError(f"checkpoint {loaded.name} has no preprocess {missing[0]!r}; re-save it with alexnet")
        outputs = loaded.info.model_options.get("num_classes")
        if outputs is not None and int(outputs) != len(loaded.info.classes):
            raise AlexNetError(f"checkpoint {loaded.name} has {outputs} outputs but "
                               f"{len(loaded.info.classes)} class names; it is inconsistent")
        self.image_size = int(pre["image_size"])
        self.crop_size = int(pre["crop_size"])
        # (x - mean) / std with the checkpoint's mean (image or per channel) and std, cropped
        # and mirrored with each view (a scaled-input checkpoint's std included)
        self.transforms = {view: EvalTransform.from_preprocess(pre, view) for view in VIEWS}

    @property
    def precision(self) -> str:
        if self.int8:
            return "int8"
        return PRECISION_NAMES[self.autocast]

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> uint8 (B, image_size, image_size, 3) on the model's device;
        only a store prepared at another size than the checkpoint's needs the resize."""
        images = images.to(self.device, non_blocking=True)
        if images.shape[1] == self.image_size:
            return images
        x = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(self.image_size, self.image_size),
                          mode="bilinear", antialias=True, align_corners=False)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def views(self, images: torch.Tensor, views: str = "center") -> torch.Tensor:
        """The test views of a uint8 batch: (B * V, 3, crop, crop) float channels_last,
        image-major (rows V b .. V b + V - 1 are image b's views, §4.1)."""
        return self.transforms[canonical_view(views)](self.resize(images))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, crop, crop) -> float32 (B, num_classes)."""
        with torch.inference_mode(), torch.autocast(self.device.type, self.autocast or torch.float32,
                                                    enabled=self.autocast is not None):
            return self.model(x).float()

    def probabilities(self, images: torch.Tensor, views: str = "center") -> torch.Tensor:
        """Softmax averaged over the views (§4.1): (B, num_classes) float32 on the CPU.

        The 10 views go through the model a tenth of the batch at a time, so a 10-crop pass
        holds no more float pixels than a centre-crop pass of the same batch.
        """
        count = 10 if canonical_view(views) == "ten_crop" else 1
        chunk = max(1, len(images) // count)
        parts = []
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            probs = self.logits(self.views(part, views)).softmax(dim=1)  # (b * V, C)
            parts.append(probs.view(len(part), count, -1).mean(dim=1).cpu())
        return torch.cat(parts)


@dataclass
class ClassMapping:
    """How a model's output columns relate to a dataset's classes.

    ``columns[j]`` is the model output of data class j. In the ``data`` label space the
    scores are the model's probabilities of the dataset's classes, renormalised (the softmax
    restricted to those classes); in the ``model`` space all outputs stay (e.g. 1000-way
    ImageNet), and a prediction outside the dataset's classes is simply wrong.
    """

    columns: torch.Tensor  # (K_data,) int64
    model_classes: list[str]
    label_space: str

    def scores(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(B, C_model) -> (B, K) in the label space."""
        if self.label_space == "model":
            return probabilities
        restricted = probabilities[:, self.columns]
        return restricted / restricted.sum(dim=1, keepdim=True).clamp_min(1e-30)

    def labels(self, data_labels: torch.Tensor) -> torch.Tensor:
        """Data labels -> indices in the label space."""
        return self.columns[data_labels] if self.label_space == "model" else data_labels

    def data_class_of(self, predictions: torch.Tensor) -> torch.Tensor:
        """Predicted label-space indices -> data class index, or -1 when not a data class."""
        if self.label_space == "data":
            return predictions
        lookup = torch.full((len(self.model_classes),), -1, dtype=torch.int64)
        lookup[self.columns] = torch.arange(len(self.columns))
        return lookup[predictions]


def map_classes(model: LoadedModel, data_classes: Sequence[str], data_name: str,
                label_space: str = "data") -> ClassMapping:
    """Match a dataset's classes to a model's outputs by name (e.g. Imagenette's wnids to
    their ImageNet-1k indices); a dataset class the model does not know is an error."""
    if label_space not in LABEL_SPACES:
        raise unknown_choice("label space", label_space, LABEL_SPACES)
    model_classes = list(model.info.classes)
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [name for name in data_classes if name not in index]
    if unknown:
        raise AlexNetError(
            f"{model.info.path or model.name} has {len(model_classes)} classes but {data_name} has "
            f"{len(data_classes)}, "
            f"{len(unknown)} of them unknown to the model (e.g. {unknown[0]!r}); "
            f"evaluate on data with the classes the model was trained on"
        )
    columns = torch.tensor([index[name] for name in data_classes], dtype=torch.int64)
    return ClassMapping(columns, model_classes, label_space)
