"""Fig. 3 as numbers: adjacent-weight correlation (learned structure vs noise) and colour
specificity per tower, with the value at initialisation rebuilt from the run's seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alexnet.report import ReportOptions, build_report
from alexnet.report.kernels import (
    adjacent_correlation,
    colour_specificity,
    conv1_weight,
    initial_conv1,
    kernel_measures,
    tower_difference,
)
from alexnet.train import train
from alexnet.train.loop import _build_model
from train_helpers import make_store, tiny_config


def _smooth_kernels(count: int, size: int = 11) -> torch.Tensor:
    """Oriented Gabor-like kernels (count, 3, size, size), the same in R, G and B."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    kernels = []
    for i in range(count):
        angle = math.pi * i / count
        wave = torch.cos(3.0 * (x * math.cos(angle) + y * math.sin(angle)))
        kernels.append((wave * torch.exp(-(x**2 + y**2) / 0.5)).expand(3, size, size))
    return torch.stack(kernels)


def test_random_weights_have_no_adjacent_correlation_and_smooth_ones_a_large_one() -> None:
    torch.manual_seed(0)
    assert abs(adjacent_correlation(torch.randn(96, 3, 11, 11))) < 0.03
    assert adjacent_correlation(_smooth_kernels(16)) > 0.8
    # a checkerboard: neighbours of opposite sign
    board = ((torch.arange(11)[:, None] + torch.arange(11)[None, :]) % 2 * 2 - 1).float()
    assert adjacent_correlation(board.expand(2, 3, 11, 11)) == pytest.approx(-1.0)


def test_colour_specificity_is_0_for_grey_about_0_82_for_random_and_1_for_opponent() -> None:
    torch.manual_seed(1)
    assert colour_specificity(_smooth_kernels(8)) == pytest.approx(0.0, abs=1e-12)
    assert colour_specificity(torch.randn(400, 3, 11, 11)) == pytest.approx(math.sqrt(2 / 3), abs=0.02)
    blob = _smooth_kernels(4)[:, 0]
    opponent = torch.stack([blob, -blob, torch.zeros_like(blob)], dim=1)  # red-green opponent
    assert colour_specificity(opponent) == pytest.approx(1.0, abs=1e-6)


def test_measures_per_tower_tell_a_grey_tower_from_a_colour_tower() -> None:
    grey = _smooth_kernels(8)
    colour = grey.clone()
    colour[:, 1:] *= -1  # red against green and blue
    measures = kernel_measures(torch.cat([grey, colour]), towers=2, initial=torch.randn(16, 3, 11, 11))
    first, second = measures["towers"]
    assert (first["tower"], first["kernels"], second["kernels"]) == (1, 8, 8)
    assert first["colour_specificity"] < 0.01 < 0.5 < second["colour_specificity"]
    assert abs(measures["initial"]["adjacent_correlation"]) < 0.15
    difference = measures["tower_difference"]
    assert difference["difference"] == pytest.approx(
        second["colour_specificity"] - first["colour_specificity"])
    assert 0.5 < difference["interval"][0] <= difference["difference"] <= difference["interval"][1]


def test_the_tower_difference_interval_covers_0_for_towers_drawn_alike_and_not_for_shifted_ones() -> None:
    torch.manual_seed(2)
    grey = _smooth_kernels(48)
    mixed = grey + 0.6 * torch.randn(96, 3, 11, 11)[:48]  # some colour noise in every kernel
    alike = torch.cat([mixed, grey + 0.6 * torch.randn(48, 3, 11, 11)])
    low, high = tower_difference(alike[:48], alike[48:])["interval"]
    assert low < 0 < high and high - low < 0.2
    more_colour = grey + 1.2 * torch.randn(48, 3, 11, 11)
    shifted = tower_difference(mixed, more_colour)
    assert shifted["interval"][0] > 0
    # the same draws for the same seed: the report is reproducible
    assert tower_difference(mixed, more_colour) == shifted


def test_the_init_rebuilt_from_config_and_seed_is_the_one_training_starts_from(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    config = tiny_config(store, tmp_path / "run", seed=7)
    from alexnet.data.store import open_store

    model = _build_model(config, open_store(store, "train"), None, lambda _: None)
    options = {**config.model_options, "num_classes": 4}
    rebuilt = initial_conv1(config.model, options, config.to_dict())
    assert rebuilt is not None and torch.equal(rebuilt, conv1_weight(model))
    assert initial_conv1(config.model, options, {**config.to_dict(), "init_from": "x.pt"}) is None


def test_report_carries_the_measures_and_the_init_value(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    result = train(tiny_config(store, tmp_path / "run", epochs=1), log=lambda _: None)
    fast = ReportOptions(samples=2, queries=1, k=2, code_bits=0, progress=False)
    page = build_report(result.run_dir, fast)
    measures = json.loads((result.run_dir / "report.json").read_text())["conv1_kernels"]
    assert [t["tower"] for t in measures["towers"]] == [1, 2]
    assert set(measures["initial"]) == {"adjacent_correlation", "colour_specificity"}
    trained = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert measures["adjacent_correlation"] == pytest.approx(
        adjacent_correlation(trained["features.conv1.weight"]))
    html = page.read_text()
    assert 'id="conv1-kernels"' in html and "at initialisation (same seed)" in html
    assert "tower 2 - tower 1" in html and len(measures["tower_difference"]["interval"]) == 2
