"""The paper's figures as PNGs: Fig. 3 kernels per tower, Fig. 4 bars and neighbour rows,
training curves with the learning-rate steps, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.models import create_model
from alexnet.report import figures


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_kernel_grid_scales_each_kernel_around_grey() -> None:
    weights = torch.zeros(3, 3, 2, 2)
    weights[0, 0, 0, 0] = 2.0  # kernel 0: one red pixel at its maximum
    weights[1] = -0.5  # kernel 1: uniformly negative -> black
    grid = figures.kernel_grid(weights, columns=2, pad=1)
    assert grid.shape == (2 * 3 - 1, 2 * 3 - 1, 3)
    assert np.allclose(grid[0, 0], [1.0, 0.5, 0.5]) and np.allclose(grid[1, 1], 0.5)
    assert np.allclose(grid[0:2, 3:5], 0.0)
    assert np.allclose(grid[3:5, 0:2], 0.5)  # an all-zero kernel is grey
    assert np.allclose(grid[2, :], 1.0)  # padding is white


def test_conv1_kernels_one_grid_per_tower(tmp_path: Path) -> None:
    two = figures.conv1_kernels(create_model("alexnet2012", num_classes=4), tmp_path / "two.png")
    one = figures.conv1_kernels(create_model("alexnet2012", num_classes=4, towers=1), tmp_path / "one.png")
    single = figures.conv1_kernels(create_model("alexnet2014", num_classes=4), tmp_path / "2014.png")
    assert png_size(two)[0] > 1.6 * png_size(one)[0]  # two grids side by side
    assert png_size(single)[0] < png_size(two)[0]


def test_lr_changes_are_found_in_epoch_and_step_records() -> None:
    records = [{"epoch": e, "lr": lr} for e, lr in ((1, 0.01), (2, 0.01), (3, 0.001), (4, 0.001), (5, 1e-4))]
    assert figures.lr_changes(records) == [(3.0, 0.001), (5.0, 1e-4)]
    assert figures.lr_changes([{"epoch": 1, "lr": 0.1}]) == []
    # warmup then linear decay: the rate changes at every record, but there is no step
    smooth = [{"epoch": e, "lr": lr} for e, lr in enumerate([0.002, 0.01, 0.008, 0.005, 0.002, 0.0003])]
    assert figures.lr_changes(smooth) == []


def metrics(steps: bool) -> list[dict]:
    rows: list[dict] = []
    step = 0
    for epoch in range(1, 5):
        lr = 0.01 if epoch < 3 else 0.001
        for _ in range(4):
            step += 1
            if steps:
                rows.append({"kind": "step", "epoch": epoch, "step": step, "loss": 2.0 / epoch, "lr": lr})
        rows.append({"kind": "epoch", "epoch": epoch, "step": step, "lr": lr, "train_loss": 2 / epoch,
                     "val_loss": 2.2 / epoch, "train_top1_error": 0.8 / epoch, "val_top1_error": 0.9 / epoch,
                     "train_top5_error": 0.3 / epoch, "val_top5_error": None, "lr_reduced": epoch == 3})
    return rows


def test_training_curves_with_and_without_step_records(tmp_path: Path) -> None:
    for with_steps in (True, False):
        path = figures.training_curves(metrics(with_steps), tmp_path / f"curves-{with_steps}.png")
        width, height = png_size(path)
        assert width > 2 * height


def test_top5_bars_neighbor_rows_and_confusion(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    top = [[("cat", 0.6), ("dog", 0.2), ("ant", 0.1), ("bee", 0.05), ("eel", 0.05)]] * 5
    bars = figures.top5_bars(images, top, ["cat", "dog", "eel", "cow", "cat"], tmp_path / "top5.png")
    rows = figures.neighbor_rows(images[:2], [images[1:4], images[2:5]], ["cat", "dog"],
                                 [["cat", "dog", "cat"], ["dog", "dog", "ant"]], tmp_path / "nn.png")
    confusion = figures.confusion_figure([[3, 1, 0], [0, 4, 1]], ["cat", "dog"], ["cat", "dog", "other"],
                                         tmp_path / "confusion.png")
    for path in (bars, rows, confusion):
        assert min(png_size(path)) > 100
    assert png_size(rows)[0] > png_size(rows)[1]  # query + 3 neighbours per row, 2 rows
