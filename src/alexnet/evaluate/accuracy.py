"""Evaluation as in §6: top-1 and top-5 error, centre crop or the 10-patch views, ensembles.

``evaluate(models, source)`` scores every image of a store split or image folder with one
model or several; several are an ensemble whose softmax outputs are averaged (Table 2's
"5 CNNs" and "7 CNNs" rows), and each member is scored alone too. The result holds the
errors, per-class accuracy and the confusion matrix, as JSON (``to_json``) and as a
Table-2-style text table (``format_table``).

Streaming: only per-image predictions are kept, never the (N, C) probabilities, so
ImageNet's 50,000 x 1000 validation scores do not need to fit in memory.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from alexnet.errors import AlexNetError, check_positive
from alexnet.evaluate.inputs import ImageSource
from alexnet.evaluate.scoring import (
    LoadedModel,
    ScoringModel,
    canonical_view,
    map_classes,
)
from alexnet.runtime.device import resolve_device

# Table 2 of the paper (ILSVRC-2012 validation; error rates in %), for comparison rows.
PAPER_TABLE2 = (
    ("1 CNN", 40.7, 18.2),
    ("5 CNNs", 38.1, 16.4),
    ("1 CNN* (pre-trained on Fall 2011)", 39.0, 16.6),
    ("7 CNNs*", 36.7, 15.4),
)


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) scores, (N,) labels -> (N, k) bool: column j marks the label at rank j, so
    ``[:, 0]`` is top-1 and ``.any(1)`` top-k from one topk call."""
    k = min(k, scores.shape[1])
    return scores.topk(k, dim=1).indices == labels.unsqueeze(1)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) scores, (N,) labels -> (N,) bool: the label is among the k highest scores."""
    return topk_hits(scores, labels, k).any(dim=1)


def split_totals(scorer: ScoringModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 views: str = "center") -> torch.Tensor:
    """Sums over (uint8 images, labels) batches of the loss of the view-averaged softmax,
    top-1 correct, top-5 correct and images: float64 (4,) on the CPU, sums so that ranks
    can add theirs. Validation during training scores this way, with the same scorer as
    ``evaluate`` (the model's own preprocessing and views)."""
    sums = torch.zeros(4, dtype=torch.float64)
    for images, labels in batches:
        if len(labels) == 0:
            continue
        probabilities = scorer.probabilities(images, views)  # (B, K) float32, CPU
        labels = labels.cpu()
        loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), labels, reduction="sum")
        sums += torch.stack([loss.double(), topk_correct(probabilities, labels, 1).sum().double(),
                             topk_correct(probabilities, labels, 5).sum().double(),
                             sums.new_full((), len(labels))])
    return sums


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int,
                     other_column: bool = False) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class; with ``other_column``
    a last column counts predictions outside the K classes (marked -1)."""
    columns = num_classes + int(other_column)
    predictions = torch.where(predictions < 0, torch.full_like(predictions, num_classes), predictions)
    flat = labels * columns + predictions
    return torch.bincount(flat, minlength=num_classes * columns).view(num_classes, columns)


@dataclass
class ModelScore:
    name: str
    top1_error: float
    top5_error: float


@dataclass
class PerImage:
    """What the (averaged) scores got right, image by image: the pairing key of
    alexnet.experiments' paired statistics. (N,) numpy arrays in scoring order."""

    indices: np.ndarray  # int64 position of each scored image in the source
    labels: np.ndarray  # int64 data labels
    top1_correct: np.ndarray  # bool
    topk_correct: np.ndarray  # bool, the top-``k`` of the result


@dataclass
class EvalResult:
    """Errors are fractions in [0, 1]; ``confusion[i][j]`` counts class i predicted as j."""

    data: str
    views: str
    label_space: str
    precision: str
    device: str
    n_images: int
    top1_error: float
    top5_error: float
    k: int  # the "top-5" k (fewer when there are fewer classes)
    members: list[ModelScore]
    classes: list[str]
    class_names: list[str]
    per_class_accuracy: list[float | None]  # None for a class with no images
    per_class_count: list[int]
    confusion: list[list[int]]
    confusion_columns: list[str]
    seconds: float
    images_per_s: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    per_image: PerImage | None = field(default=None, repr=False)  # not in to_json

    @property
    def name(self) -> str:
        return self.members[0].name if len(self.members) == 1 else f"{len(self.members)} CNNs averaged"

    def to_json(self) -> dict[str, object]:
        record = asdict(dataclasses.replace(self, per_image=None))
        record.pop("per_image")
        return record


class _Tally:
    """Per-image outcomes collected batch by batch."""

    def __init__(self, members: int) -> None:
        self.top1: list[list[torch.Tensor]] = [[] for _ in range(members)]
        self.top5: list[list[torch.Tensor]] = [[] for _ in range(members)]
        self.ensemble_top1: list[torch.Tensor] = []
        self.ensemble_top5: list[torch.Tensor] = []
        self.data_labels: list[torch.Tensor] = []
        self.data_predictions: list[torch.Tensor] = []
        self.indices: list[np.ndarray] = []

    @staticmethod
    def error(outcomes: list[torch.Tensor]) -> float:
        return 1.0 - torch.cat(outcomes).float().mean().item()


def evaluate(
    models: Sequence[LoadedModel],
    source: ImageSource,
    views: str = "center",
    label_space: str = "data",
    batch_size: int = 128,
    device: str = "auto",
    precision: str = "auto",
    limit: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score every image of ``source`` (up to ``limit``) with ``models`` (averaged softmax)."""
    check_positive(batch_size=batch_size, limit=limit)
    views = canonical_view(views)
    torch_device = resolve_device(device)
    mappings = [map_classes(m, source.classes, source.name, label_space) for m in models]
    if label_space == "model" and any(m.model_classes != mappings[0].model_classes for m in mappings):
        raise AlexNetError("ensemble members have different classes; score them with --label-space data")
    scorers = [ScoringModel(m, torch_device, precision) for m in models]
    mapping = mappings[0]
    space_size = len(mapping.model_classes) if label_space == "model" else len(source.classes)
    k = min(5, space_size)
    tally = _Tally(len(models))
    total = len(source) if limit is None else min(limit, len(source))
    start = time.perf_counter()
    with tqdm(total=total, unit="img", desc="evaluate", disable=None if progress else True) as bar:
        for batch in source.batches(batch_size, limit):
            labels = mapping.labels(batch.labels)  # (B,) in the label space
            member_scores = [mp.scores(s.probabilities(batch.images, views))
                             for s, mp in zip(scorers, mappings, strict=True)]
            for i, scores in enumerate(member_scores):
                tally.top1[i].append(topk_correct(scores, labels, 1))
                tally.top5[i].append(topk_correct(scores, labels, k))
            ensemble = torch.stack(member_scores).mean(dim=0)  # (B, K): Table 2's averaging
            tally.ensemble_top1.append(topk_correct(ensemble, labels, 1))
            tally.ensemble_top5.append(topk_correct(ensemble, labels, k))
            tally.data_labels.append(batch.labels)
            tally.data_predictions.append(mapping.data_class_of(ensemble.argmax(dim=1)))
            tally.indices.append(np.asarray(batch.indices, dtype=np.int64))
            bar.update(int(batch.indices[-1]) + 1 - bar.n)  # skipped files count as done
    seconds = time.perf_counter() - start
    if not tally.data_labels:
        raise AlexNetError(f"no readable images in {source.name} ({len(source.skipped)} files skipped)")
    return _result(models, source, tally, views, label_space, scorers[0], k, seconds)


def _result(models: Sequence[LoadedModel], source: ImageSource, tally: _Tally, views: str,
            label_space: str, scorer: ScoringModel, k: int, seconds: float) -> EvalResult:
    labels = torch.cat(tally.data_labels)
    predictions = torch.cat(tally.data_predictions)
    num_classes = len(source.classes)
    other = label_space == "model" and len(models[0].info.classes) > num_classes
    confusion = confusion_matrix(labels, predictions, num_classes, other_column=other)
    counts = confusion.sum(dim=1)
    per_class = [None if counts[i] == 0 else confusion[i, i].item() / counts[i].item()
                 for i in range(num_classes)]
    members = [ModelScore(m.name, _Tally.error(tally.top1[i]), _Tally.error(tally.top5[i]))
               for i, m in enumerate(models)]
    n_images = len(labels)
    return EvalResult(
        data=source.name, views=views, label_space=label_space, precision=scorer.precision,
        device=str(scorer.device), n_images=n_images,
        top1_error=_Tally.error(tally.ensemble_top1), top5_error=_Tally.error(tally.ensemble_top5),
        k=k, members=members, classes=list(source.classes), class_names=list(source.class_names),
        per_class_accuracy=per_class, per_class_count=counts.tolist(),
        confusion=confusion.tolist(),
        confusion_columns=list(source.classes) + (["other"] if other else []),
        seconds=seconds, images_per_s=n_images / seconds if seconds > 0 else math.inf,
        skipped=list(source.skipped),
        per_image=PerImage(np.concatenate(tally.indices), labels.cpu().numpy(),
                           torch.cat(tally.ensemble_top1).cpu().numpy(),
                           torch.cat(tally.ensemble_top5).cpu().numpy()),
    )


def format_table(result: EvalResult, paper_rows: bool = True) -> str:
    """The paper's Table 2 layout: one row per model, the ensemble, then the paper's rows."""
    top5 = f"Top-{result.k}"
    header = f"{'Model':<44} {'Top-1 error':>12} {top5 + ' error':>12}"
    lines = [f"{result.data}, {result.n_images} images, views: {result.views}, "
             f"label space: {result.label_space}, {result.precision} on {result.device}",
             header, "-" * len(header)]
    for member in result.members:
        lines.append(f"{'1 CNN: ' + member.name:<44} {member.top1_error:>12.2%} {member.top5_error:>12.2%}")
    if len(result.members) > 1:
        label = f"{len(result.members)} CNNs (softmax averaged)"
        lines.append(f"{label:<44} {result.top1_error:>12.2%} {result.top5_error:>12.2%}")
    if paper_rows:
        lines.append(f"{'paper, ILSVRC-2012 val (Table 2):':<44}")
        for name, top1, top5_error in PAPER_TABLE2:
            lines.append(f"{'  ' + name:<44} {top1:>11.1f}% {top5_error:>11.1f}%")
    return "\n".join(lines)


def format_per_class(result: EvalResult, limit: int = 20) -> str:
    """Per-class top-1 accuracy; with more than ``limit`` classes only the worst ``limit``."""
    rows = [(acc, result.classes[i], result.class_names[i], result.per_class_count[i])
            for i, acc in enumerate(result.per_class_accuracy) if acc is not None]
    title = "per-class top-1 accuracy"
    if len(rows) > limit:
        rows = sorted(rows)[:limit]
        title += f" (the {limit} worst of {len(result.classes)})"
    width = max(len(f"{c} {n}") for _, c, n, _ in rows) if rows else 10
    lines = [title]
    for acc, cls, name, count in rows:
        label = cls if cls == name else f"{cls} {name}"
        lines.append(f"  {label:<{width}} {acc:>7.1%}  ({count} images)")
    return "\n".join(lines)
