"""Validation during training is `alexnet evaluate`: summary.json's centre-crop and 10-crop
errors equal what `alexnet evaluate best.pt` reports on the same split, and its loss what
the checkpoint alone gives (its own preprocessing, scaled inputs included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.cli.main import main
from alexnet.evaluate.accuracy import split_totals
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import ScoringModel, load_models
from alexnet.train import train
from train_helpers import make_store, tiny_config


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("validation-store"))


@pytest.mark.parametrize("normalization, scale_inputs", [("mean_image", True), ("channel", False)])
def test_summary_errors_equal_alexnet_evaluate_of_best_pt(
        store: Path, tmp_path: Path, normalization: str, scale_inputs: bool) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, normalization=normalization, scale_inputs=scale_inputs,
                      ten_crop_final=True, epochs=3), log=lambda _line: None)
    summary = json.loads((run / "summary.json").read_text())
    for views, key in (("center", "val_center"), ("10crop", "val_ten_crop")):
        out = tmp_path / f"{views}.json"
        assert main(["evaluate", str(run / "checkpoints" / "best.pt"), "--data", str(store),
                     "--split", "val", "--views", views, "--json", str(out), "--no-progress",
                     "--batch-size", "7"]) == 0
        evaluated = json.loads(out.read_text())
        assert evaluated["n_images"] > 0
        assert evaluated["top1_error"] == pytest.approx(summary[key]["top1_error"], abs=1e-12), views
        assert evaluated["top5_error"] == pytest.approx(summary[key]["top5_error"], abs=1e-12), views

    # the loss too (top-1 of a ReLU net barely moves when its inputs are scaled wrongly):
    # the checkpoint alone, scored by evaluate's code, gives the loss training logged
    scorer = ScoringModel(load_models([run / "checkpoints" / "best.pt"])[0], torch.device("cpu"))
    batches = ((b.images, b.labels) for b in open_images(store, "val").batches(5))
    sums = split_totals(scorer, batches)
    assert (sums[0] / sums[3]).item() == pytest.approx(summary["val_center"]["loss"], rel=1e-5)
