"""The evaluate / predict / features / neighbors / export commands, and their bad input:
a one-line error that says what and where, exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from alexnet.cli import main
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint, save_checkpoint
from alexnet.runtime.device import autocast_dtype
from evaluate_helpers import CLASSES, channel_preprocess, make_checkpoint, make_folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {"data": make_folder(root / "data", per_class=2),
            "a": make_checkpoint(root / "a.pt", seed=0), "b": make_checkpoint(root / "b.pt", seed=1),
            "root": root}


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_ensemble_ten_crop_json(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    target = setup["root"] / "eval.json"
    code, out, _ = run(capsys, "evaluate", setup["a"], setup["b"], "--data", setup["data"],
                       "--views", "10crop", "--json", target, "--no-progress")
    assert code == 0
    assert "2 CNNs (softmax averaged)" in out and "1 CNN: a.pt" in out and "per-class" in out
    result = json.loads(target.read_text())
    assert result["n_images"] == 8 and result["views"] == "ten_crop" and len(result["members"]) == 2
    assert len(result["confusion"]) == len(CLASSES) and 0 <= result["top1_error"] <= 1


def test_predict_features_neighbors_export(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    image = next((setup["data"] / "val" / "ant").iterdir())
    code, out, _ = run(capsys, "predict", setup["a"], image, "--top", "2", "--json", "-")
    assert code == 0
    predictions = json.loads(out)
    assert predictions[0]["file"] == str(image) and len(predictions[0]["top"]) == 2

    features = setup["root"] / "features.npz"
    code, out, _ = run(capsys, "features", setup["a"], "--data", setup["data"], "--out", features,
                       "--no-progress")
    assert code == 0 and "8 x 512 fc7 features" in out
    with np.load(features) as saved:
        assert saved["features"].shape == (8, 512) and str(saved["layer"]) == "fc7"

    figure = setup["root"] / "neighbors.png"
    report = setup["root"] / "neighbors.json"
    code, out, _ = run(capsys, "neighbors", setup["a"], "--data", setup["data"], "--queries", "2",
                       "--k", "3", "--code-bits", "8", "--code-steps", "20", "--figure", figure, "--json", report, "--no-progress")
    assert code == 0 and figure.stat().st_size > 1000 and "8-bit codes" in out
    payload = json.loads(report.read_text())
    assert len(payload["neighbors"]["neighbors"]) == 2 and payload["codes"]["bits"] == 8

    code, out, _ = run(capsys, "export", setup["a"], "--format", "safetensors",
                       "--out", setup["root"] / "a.safetensors")
    assert code == 0 and "max |exported - PyTorch| = 0" in out


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_checkpoint(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    missing = setup["root"] / "nope.pt"
    assert_one_line_error(*run(capsys, "evaluate", missing, "--data", setup["data"])[::2],
                          "checkpoint not found", str(missing))


def test_checkpoint_of_another_model(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = setup["root"]
    torchvision_pth = root / "alexnet-owt.pth"
    torch.save(torchvision.models.alexnet().state_dict(), torchvision_pth)
    assert_one_line_error(*run(capsys, "evaluate", torchvision_pth, "--data", setup["data"])[::2],
                          str(torchvision_pth), "not an alexnet checkpoint", "--weights torchvision")
    # an alexnet checkpoint whose weights belong to another architecture
    info = Checkpoint("alexnet2014", {"num_classes": 4, "width": 0.125}, list(CLASSES), list(CLASSES),
                      channel_preprocess())
    mismatched = root / "mismatched.pt"
    save_checkpoint(mismatched, create_model("alexnet2012", num_classes=4, width=0.125), info)
    assert_one_line_error(*run(capsys, "evaluate", mismatched, "--data", setup["data"])[::2],
                          str(mismatched), "does not match alexnet2014")
    renamed = root / "renamed.pt"
    data = torch.load(setup["a"], weights_only=True)
    data["model_name"] = "resnet50"
    torch.save(data, renamed)
    assert_one_line_error(*run(capsys, "evaluate", renamed, "--data", setup["data"])[::2],
                          str(renamed), "unknown model 'resnet50'")


def test_wrong_number_of_classes(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    three = make_checkpoint(setup["root"] / "three.pt", classes=("ant", "bee", "cat"))
    assert_one_line_error(*run(capsys, "evaluate", three, "--data", setup["data"])[::2],
                          "three.pt has 3 classes", "has 4", "'dog'")


def test_empty_data_folder_and_data_that_is_a_file(setup: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "val" / "ant").mkdir(parents=True)
    assert_one_line_error(*run(capsys, "evaluate", setup["a"], "--data", empty)[::2], str(empty))
    (tmp_path / "flat").mkdir()
    assert_one_line_error(*run(capsys, "evaluate", setup["a"], "--data", tmp_path / "flat")[::2],
                          str(tmp_path / "flat"))
    file = tmp_path / "list.txt"
    file.write_text("x")
    assert_one_line_error(*run(capsys, "evaluate", setup["a"], "--data", file)[::2], str(file), "is a file")


def test_non_image_file(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    image = next((setup["data"] / "val" / "bee").iterdir())
    code, out, err = run(capsys, "predict", setup["a"], text, image)
    assert_one_line_error(code, err, str(text), "not an image")
    assert str(image) in out  # the readable one is still predicted


def test_bench_evaluate_prints_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bench", "evaluate", "--models", "alexnet2014", "--batch-size", "2",
                       "--rounds", "1", "--batches", "1", "--no-int8")  # int8: tests/test_int8.py
    assert code == 0 and "torchvision alexnet (fp32, eager, NCHW)" in out
    assert "alexnet2014 (fp32, eager, NCHW)" in out and out.rstrip().endswith("x the peer")
    peer = "bf16" if autocast_dtype(torch.device("cpu"), "auto") else "fp32"
    assert f"torchvision alexnet ({peer}, channels_last)" in out
    assert "the strongest plain-PyTorch peer" in out and " cores: " in out  # the CPU named
