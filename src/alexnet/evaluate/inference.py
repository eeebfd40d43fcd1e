"""Using a trained model: top-k predictions, fc7 features and nearest neighbours (§6.1).

- ``predict_files``: top-5 classes with probabilities for image files of any size or format
  Pillow reads; an unreadable file gets its own one-line error and the others go on.
- ``extract_features``: the activations of a named layer (default ``fc7``, the last
  4096-d hidden layer, after its ReLU) for every image of a store split or folder.
- ``nearest_neighbors``: the gallery images with the smallest Euclidean distance in that
  feature space (Fig. 4 right); ``alexnet.evaluate.binary_codes`` adds the paper's suggested short
  binary codes for fast retrieval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from alexnet.data.images import BadImageError, load_image
from alexnet.errors import AlexNetError, check_positive
from alexnet.evaluate.inputs import ImageSource
from alexnet.evaluate.scoring import LoadedModel, ScoringModel
from alexnet.runtime.device import resolve_device
from alexnet.runtime.outputs import atomic_write, check_output_file


@dataclass
class Prediction:
    """Top-k of one file: (class id, class name, probability), or why it has none."""

    file: str
    top: list[tuple[str, str, float]] = field(default_factory=list)
    error: str | None = None


def predict_files(
    models: Sequence[LoadedModel],
    files: Sequence[str | os.PathLike[str]],
    topk: int = 5,
    views: str = "center",
    device: str = "auto",
    precision: str = "auto",
) -> list[Prediction]:
    """Top-``topk`` classes per image (softmax averaged over ``models`` and ``views``)."""
    check_positive(top=topk)
    classes = list(models[0].info.classes)
    if any(list(m.info.classes) != classes for m in models):
        raise AlexNetError("the models given have different classes; predict with one at a time")
    scorers = [ScoringModel(m, resolve_device(device), precision) for m in models]
    size = max(s.image_size for s in scorers)
    names = list(models[0].info.class_names)
    predictions: list[Prediction] = []
    for file in files:
        try:
            image = torch.tensor(load_image(file, size)).unsqueeze(0)  # (1, S, S, 3)
        except BadImageError as error:
            predictions.append(Prediction(str(file), error=str(error)))
            continue
        probs = torch.stack([s.probabilities(image, views) for s in scorers]).mean(dim=0)[0]  # (C,)
        values, indices = probs.topk(min(topk, len(classes)))
        top = [(classes[i], names[i], float(v)) for v, i in zip(values, indices.tolist(), strict=True)]
        predictions.append(Prediction(str(file), top))
    return predictions


def feature_module(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output is ``layer``'s activation: ``conv1``..``fc7`` after their ReLU
    (the paper's "feature activations", §6.1), ``fc8`` the logits, any other layer name of
    ``model.named_layers()`` (``pool5``, ``norm1``, ...) that layer's own output."""
    layers = dict(model.named_layers())  # type: ignore[operator]
    number = layer[-1]
    if layer in layers and f"relu{number}" in layers and layer[:-1] in ("conv", "fc"):
        return layers[f"relu{number}"]
    if layer in layers:
        return layers[layer]
    # an int8 ONNX graph (alexnet.evaluate.onnx_model) says which of its outputs are layers
    note = f" ({model.feature_note})" if hasattr(model, "feature_note") else ""
    raise AlexNetError(f"unknown layer {layer!r}; valid: {', '.join(layers)}{note}")


def default_feature_layer(model: nn.Module) -> str:
    """The layer whose activations serve as image features when none is named: ``fc7``
    (the last 4096-d hidden layer, §6.1) where the network has one, else the layer that
    feeds its final classifier (cuda-convnet's CIFAR nets: ``pool3`` or ``relu4``)."""
    layers = list(model.named_layers())  # type: ignore[operator]
    names = [name for name, _ in layers]
    if "fc7" in names:
        return "fc7"
    last_linear = max((i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)), default=len(layers))
    for name, module in reversed(layers[:last_linear]):
        if not isinstance(module, nn.Flatten | nn.Dropout):
            return name
    return names[-1]


@dataclass
class Features:
    """Activations of one layer for a set of images, saved as ``.npz``."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64
    files: list[str]
    classes: list[str]
    class_names: list[str]
    layer: str
    model: str
    indices: np.ndarray  # (N,) position of each image in the source it was read from

    def save(self, path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
        """Write ``path`` (*.npz) atomically; refused where it is one of ``inputs``."""
        path = check_output_file(path, inputs=inputs, flag="--out", suffixes=[".npz"])
        arrays = dict(features=self.features, labels=self.labels, files=np.array(self.files),
                      classes=np.array(self.classes), class_names=np.array(self.class_names),
                      layer=np.array(self.layer), model=np.array(self.model), indices=self.indices)

        def write(temporary: Path) -> None:
            with temporary.open("wb") as f:  # a file, so that numpy adds no ".npz" to the name
                np.savez(f, **arrays)

        return atomic_write(path, write, inputs=inputs, flag="--out")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Features:
        with np.load(path) as data:
            return cls(data["features"], data["labels"], data["files"].tolist(),
                       data["classes"].tolist(), data["class_names"].tolist(),
                       str(data["layer"]), str(data["model"]), data["indices"])


def extract_features(
    loaded: LoadedModel,
    source: ImageSource,
    layer: str | None = "fc7",
    batch_size: int = 128,
    device: str = "auto",
    precision: str = "auto",
    limit: int | None = None,
    progress: bool = True,
) -> Features:
    """``layer``'s activations (flattened) for the centre view of every image of ``source``
    (``None``: ``default_feature_layer``)."""
    check_positive(batch_size=batch_size, limit=limit)
    scorer = ScoringModel(loaded, resolve_device(device), precision)
    layer = layer or default_feature_layer(scorer.model)
    module = feature_module(scorer.model, layer)
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(
        lambda _m, _i, output: captured.append(output.detach().float().flatten(1).cpu().clone())
    )
    chunks: list[torch.Tensor] = []
    labels: list[np.ndarray] = []
    kept: list[int] = []
    total = len(source) if limit is None else min(limit, len(source))
    try:
        with tqdm(total=total, unit="img", desc=f"features {layer}", disable=None if progress else True) as bar:
            for batch in source.batches(batch_size, limit):
                scorer.logits(scorer.views(batch.images, "center"))
                chunks.append(captured.pop())  # (B, D)
                labels.append(batch.labels.numpy())
                kept.extend(batch.indices.tolist())
                bar.update(int(batch.indices[-1]) + 1 - bar.n)
    finally:
        hook.remove()
    if not chunks:
        raise AlexNetError(f"no readable images in {source.name}")
    files = source.files  # a store builds this list on each access: once, not per image
    return Features(torch.cat(chunks).numpy(), np.concatenate(labels), [files[i] for i in kept],
                    list(source.classes), list(source.class_names), layer, loaded.name,
                    np.asarray(kept, dtype=np.int64))


def nearest_neighbors(queries: torch.Tensor, gallery: torch.Tensor, k: int,
                      chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, D) and (N, D) -> Euclidean distances and indices of the k nearest, each (Q, k),
    nearest first. Queries go in chunks so the (chunk, N) distance block stays small."""
    k = min(k, len(gallery))
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        block = torch.cdist(queries[start:start + chunk].float(), gallery.float())  # (q, N)
        values, positions = block.topk(k, dim=1, largest=False)
        distances.append(values)
        indices.append(positions)
    return torch.cat(distances), torch.cat(indices)


@dataclass
class Neighbor:
    file: str
    class_id: str
    distance: float
    index: int  # position in the gallery source


@dataclass
class NeighborResult:
    """For each query image, its k nearest gallery images in feature space (Fig. 4 right)."""

    layer: str
    query_files: list[str]
    query_classes: list[str]
    query_indices: list[int]  # positions in the query source
    neighbors: list[list[Neighbor]]
    same_class_fraction: float | None  # of all neighbours shown; None for unlabelled queries

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def find_neighbors(gallery: Features, queries: Features, k: int = 5) -> NeighborResult:
    """The ``k`` gallery images nearest to each query by Euclidean distance of features."""
    if gallery.layer != queries.layer:
        raise AlexNetError(f"gallery features are {gallery.layer}, queries {queries.layer}; use one layer")
    if k < 1:
        raise AlexNetError(f"--k must be positive, got {k}")
    distances, indices = nearest_neighbors(torch.from_numpy(queries.features),
                                           torch.from_numpy(gallery.features), k)
    query_classes = [queries.classes[label] for label in queries.labels]
    rows = [[Neighbor(gallery.files[j], gallery.classes[gallery.labels[j]], float(d), int(gallery.indices[j]))
             for d, j in zip(ds.tolist(), js.tolist(), strict=True)]
            for ds, js in zip(distances, indices, strict=True)]
    labelled = set(queries.classes) <= set(gallery.classes)
    same = [n.class_id == c for c, row in zip(query_classes, rows, strict=True) for n in row]
    return NeighborResult(gallery.layer, list(queries.files), query_classes, queries.indices.tolist(), rows,
                          float(np.mean(same)) if labelled and same else None)
