"""The paper's figures as matplotlib PNGs (§6.1, Fig. 3 and Fig. 4) and the training curves.

Every function takes plain arrays or result objects, writes one PNG and returns its path.
matplotlib's object API (``Figure``) is used instead of pyplot: no global state, no GUI
backend, safe in threads and in headless CI.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from alexnet.report.kernels import adjacent_correlation, colour_specificity
from alexnet.runtime.outputs import save_figure

TRUE_COLOR = "#d62728"  # the true class's bar, as the paper's red bars in Fig. 4
OTHER_COLOR = "#1f77b4"


def _save(figure: Figure, path: str | os.PathLike[str], dpi: int = 110,
          inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Render to a temporary file beside ``path``, then rename (``alexnet.runtime.outputs``)."""
    return save_figure(figure, path, inputs=inputs, dpi=dpi, bbox_inches="tight")


def kernel_grid(weights: torch.Tensor, columns: int = 8, pad: int = 1) -> np.ndarray:
    """(K, 3, h, w) conv kernels -> one (rows*(h+pad), columns*(w+pad), 3) image in [0, 1].

    Each kernel is scaled by its own largest |weight| around mid-grey, so a zero weight is
    grey in every kernel and colour-agnostic kernels stay grey-ish (what Fig. 3 shows).
    """
    w = weights.detach().float().cpu()
    count, channels, height, width = w.shape
    if channels != 3:  # not RGB input: show the channel mean as grey
        w = w.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    w = (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1).numpy()  # (K, h, w, 3)
    rows = math.ceil(count / columns)
    grid = np.ones((rows * (height + pad) - pad, columns * (width + pad) - pad, 3), dtype=np.float32)
    for i in range(count):
        r, c = divmod(i, columns)
        grid[r * (height + pad):r * (height + pad) + height, c * (width + pad):c * (width + pad) + width] = w[i]
    return grid


def conv1_kernels(model: nn.Module, path: str | os.PathLike[str], towers: int | None = None,
                  initial: torch.Tensor | None = None) -> Path:
    """Fig. 3: the first layer's kernels, one grid per tower, each titled with its
    adjacent-weight correlation and colour specificity (report/kernels.py), and the
    correlation of the ``initial`` weights (the same seed's init) in the heading.

    In the two-tower network conv2 reads the first half of conv1's kernel maps on one GPU
    and the second half on the other (§3.2), so those halves are the towers' kernels.
    """
    layers = dict(model.named_layers())  # type: ignore[operator]
    conv1 = layers["conv1"]
    towers = towers or int(getattr(model, "towers", 1))
    groups = torch.chunk(conv1.weight, towers, dim=0)
    columns = 8 if conv1.weight.shape[0] <= 64 else 12
    grids = [kernel_grid(weights, columns) for weights in groups]
    aspect = grids[0].shape[0] / grids[0].shape[1]
    figure = Figure(figsize=(4.2 * towers, 4.2 * aspect + 0.9))
    for t, (weights, grid) in enumerate(zip(groups, grids, strict=True)):
        axis = figure.add_subplot(1, towers, t + 1)
        axis.imshow(grid, interpolation="nearest")
        title = f"tower {t + 1} ({len(weights)} kernels)" if towers > 1 else f"{len(weights)} kernels"
        title += (f"\nadjacent-weight corr. {adjacent_correlation(weights):.2f}, "
                  f"colour spec. {colour_specificity(weights):.2f}")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    shape = "x".join(str(s) for s in conv1.weight.shape[1:])
    heading = f"conv1 kernels ({shape}), cf. Fig. 3"
    if initial is not None:
        heading += f"; at init: corr. {round(adjacent_correlation(initial), 2) + 0.0:.2f}"  # no "-0.00"
    figure.suptitle(heading, fontsize=11)
    return _save(figure, path)


def top5_bars(images: Sequence[np.ndarray], top: Sequence[Sequence[tuple[str, float]]],
              true_names: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """Fig. 4 left: each image with its top-5 class probabilities; the true class in red.

    ``top[i]`` holds (class name, probability), most probable first.
    """
    count = len(images)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(3.1 * columns, 4.4 * rows))
    grid = figure.add_gridspec(rows * 2, columns, height_ratios=[3, 1.6] * rows, hspace=0.45, wspace=0.5)
    for i, (image, entries, truth) in enumerate(zip(images, top, true_names, strict=True)):
        r, c = divmod(i, columns)
        picture = figure.add_subplot(grid[2 * r, c])
        picture.imshow(image)
        picture.set_title(truth[:28], fontsize=9, color=TRUE_COLOR if entries[0][0] == truth else "black")
        picture.axis("off")
        bars = figure.add_subplot(grid[2 * r + 1, c])
        names = [name for name, _ in entries][::-1]
        values = [p for _, p in entries][::-1]
        colors = [TRUE_COLOR if name == truth else OTHER_COLOR for name in names]
        bars.barh(range(len(values)), values, color=colors)
        bars.set_yticks(range(len(values)), [n[:22] for n in names], fontsize=7)
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
    figure.suptitle("top-5 predictions, true class in red (cf. Fig. 4 left)", fontsize=11)
    return _save(figure, path)


def neighbor_rows(query_images: Sequence[np.ndarray], neighbor_images: Sequence[Sequence[np.ndarray]],
                  query_names: Sequence[str], neighbor_names: Sequence[Sequence[str]],
                  path: str | os.PathLike[str], layer: str = "fc7",
                  inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Fig. 4 right: each row a query image, then its nearest training images in feature space."""
    rows = len(query_images)
    columns = 1 + max((len(row) for row in neighbor_images), default=0)
    figure = Figure(figsize=(1.45 * columns, 1.6 * rows))
    for r in range(rows):
        cells = [(query_images[r], query_names[r]), *zip(neighbor_images[r], neighbor_names[r], strict=True)]
        for c, (image, name) in enumerate(cells):
            axis = figure.add_subplot(rows, columns, r * columns + c + 1)
            axis.imshow(image)
            same = c > 0 and name == query_names[r]
            axis.set_title(name[:16], fontsize=6, color=TRUE_COLOR if c == 0 else ("black" if same else "grey"))
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                for spine in axis.spines.values():
                    spine.set_edgecolor(TRUE_COLOR)
                    spine.set_linewidth(2)
    figure.suptitle(f"query (first column) and nearest training images by {layer} distance "
                    "(cf. Fig. 4 right)", fontsize=9)
    return _save(figure, path, inputs=inputs)


def lr_changes(records: Sequence[dict], x_of: dict[int, float] | None = None,
               factor: float = 1.5) -> list[tuple[float, float]]:
    """(x, new lr) wherever a constant learning rate drops by ``factor`` or more: the
    paper's steps (divide by 10 on a plateau, §5) and step schedules. Smooth schedules
    (warmup, linear, cosine) change the rate at every record and have no steps to mark."""
    changes = []
    rates = [(record, record["lr"]) for record in records if record.get("lr") is not None]
    for i in range(1, len(rates)):
        record, lr = rates[i]
        previous = rates[i - 1][1]
        constant_before = i < 2 or math.isclose(rates[i - 2][1], previous, rel_tol=1e-6)
        if constant_before and lr * factor <= previous:
            changes.append((float(record["epoch"]) if x_of is None else x_of[id(record)], float(lr)))
    return changes


def training_curves(metrics: Sequence[dict], path: str | os.PathLike[str]) -> Path:
    """Loss, top-1/top-5 error and learning rate per epoch; learning-rate steps marked.

    ``metrics`` are metrics.jsonl records (docs/ARCHITECTURE.md): ``kind`` "epoch" rows give
    the per-epoch values; ``kind`` "step" rows, when present, add the step loss and place
    the lr steps exactly (steps are put on the epoch axis between epoch ends).
    """
    epochs = [r for r in metrics if r.get("kind") == "epoch"]
    steps = [r for r in metrics if r.get("kind") == "step"]
    x = [float(r["epoch"]) for r in epochs]
    figure = Figure(figsize=(13, 3.6))
    loss, error, rate = (figure.add_subplot(1, 3, i) for i in (1, 2, 3))
    step_x: dict[int, float] = {}
    if steps and epochs:
        ends = [float(r["step"]) for r in epochs]
        first = x[0] - 1.0 if len(x) < 2 else x[0] - (x[1] - x[0])
        anchors_step, anchors_x = [0.0, *ends], [first, *x]
        step_x = {id(r): float(np.interp(r["step"], anchors_step, anchors_x)) for r in steps}
        loss.plot([step_x[id(r)] for r in steps], [r["loss"] for r in steps], color="0.75", lw=0.8,
                  label="train (step)")
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "val", "--")):
        values = [r.get(key) for r in epochs]
        if any(v is not None for v in values):
            loss.plot(x, values, style, marker="o", ms=3, label=label)
    for key, label, style in (("train_top1_error", "train top-1", "-"), ("val_top1_error", "val top-1", "-"),
                              ("train_top5_error", "train top-5", "--"), ("val_top5_error", "val top-5", "--")):
        values = [r.get(key) for r in epochs]
        if any(v is not None for v in values):
            error.plot(x, [None if v is None else 100 * v for v in values], style, marker="o", ms=3, label=label)
    lr_source = steps if steps else epochs
    lr_x = [step_x[id(r)] for r in steps] if steps else x
    rate.plot(lr_x, [r.get("lr") for r in lr_source], color="black")
    rate.set_yscale("log")
    changes = lr_changes(lr_source, step_x if steps else None)
    for axis in (loss, error, rate):
        for position, _ in changes:
            axis.axvline(position, color=TRUE_COLOR, ls=":", lw=1)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for position, value in changes:
        rate.annotate(f"lr {value:g}", (position, value), fontsize=7, xytext=(3, 5), textcoords="offset points")
    loss.set_title("loss")
    error.set_title("error (%)")
    rate.set_title("learning rate (steps dotted)")
    loss.legend(fontsize=7)
    error.legend(fontsize=7)
    return _save(figure, path)


def confusion_figure(confusion: Sequence[Sequence[int]], row_names: Sequence[str],
                     column_names: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """The confusion matrix as an image, rows normalised to fractions of each true class."""
    counts = np.asarray(confusion, dtype=np.float64)
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.45 * len(column_names))
    figure = Figure(figsize=(size, size * len(row_names) / max(len(column_names), 1) + 0.8))
    axis = figure.add_subplot(1, 1, 1)
    shown = axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    if len(column_names) <= 30:
        axis.set_xticks(range(len(column_names)), [n[:14] for n in column_names], rotation=90, fontsize=7)
        axis.set_yticks(range(len(row_names)), [n[:14] for n in row_names], fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    axis.set_title("confusion matrix (fraction of each true class)", fontsize=10)
    return _save(figure, path)
