"""int8 inference: the quantised ONNX graph agrees with the float model, scores through
evaluate / predict / features like a checkpoint, and the export refuses what it cannot do."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.errors import AlexNetError
from alexnet.evaluate.inference import Features
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.quantize import QuantizeConfig, compare, quantize_model
from alexnet.evaluate.scoring import LoadedModel, ScoringModel, load_models
from alexnet.models.checkpoint import load_model, save_checkpoint
from evaluate_helpers import IMAGE_SIZE, make_checkpoint, make_folder, mean_image_preprocess

# a random tiny network's logits differ little between images (std ~0.03), so int8 noise of
# ~0.01 can swap its top two classes; a trained network's margins are wider (docs/evaluation.md)
MOST = 0.75


def spread_classes(checkpoint: Path, folder: Path) -> Path:
    """Shift fc8's bias by the mean logits over the training images: a random network then
    predicts every class about equally often (instead of one class for ~all images), so that
    top-1 agreement between int8 and float can fail."""
    model, info = load_model(checkpoint)
    scorer = ScoringModel(LoadedModel(model, info, "random"), torch.device("cpu"), "fp32")
    images = next(open_images(folder, "train", IMAGE_SIZE).batches(1000)).images
    with torch.no_grad():
        model.classifier.fc8.bias -= scorer.logits(scorer.views(images)).mean(dim=0)
    save_checkpoint(checkpoint, model, info)
    return checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int8")
    folder = make_folder(root / "data", per_class=10)  # 48 train, 40 val images
    checkpoint = spread_classes(make_checkpoint(root / "best.pt", preprocess=mean_image_preprocess()), folder)
    int8 = root / "best.int8.onnx"
    config = QuantizeConfig(str(folder), images=24, check_images=24, min_agreement=MOST)
    result = quantize_model(load_models([checkpoint])[0], int8, config)
    assert result.path == int8 and result.calibration_images == 24 and result.check_images == 24
    return {"root": root, "checkpoint": checkpoint, "data": folder, "int8": int8}


def test_int8_agrees_with_the_float_model_on_held_out_images(setup: dict[str, Path]) -> None:
    val = open_images(setup["data"], "val", IMAGE_SIZE)
    loaded = load_models([setup["checkpoint"]])[0]
    scorer = ScoringModel(loaded, torch.device("cpu"), "fp32")
    predicted = scorer.logits(scorer.views(next(val.batches(1000)).images)).argmax(dim=1)
    assert predicted.bincount(minlength=4).max() <= 20  # no class takes more than half of the 40
    agreement, difference, count = compare(loaded, setup["int8"], val)
    print(f"int8 vs float: top-1 agreement {agreement:.1%} of {count}, max logit difference {difference:.3g}")
    assert count == 40 and agreement >= MOST and 0 < difference < 1.0


def test_evaluate_predict_and_features_take_the_int8_model(setup: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    int8, data = str(setup["int8"]), str(setup["data"])
    assert main(["evaluate", int8, "--data", data, "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    assert main(["evaluate", str(setup["checkpoint"]), "--data", data, "--precision", "fp32",
                 "--json", str(tmp_path / "f.json"), "--no-progress"]) == 0
    quantized, reference = (json.loads((tmp_path / name).read_text()) for name in ("e.json", "f.json"))
    assert quantized["n_images"] == reference["n_images"] == 40
    assert "int8" in json.dumps(quantized) and "int8" in capsys.readouterr().out
    assert abs(quantized["top1_error"] - reference["top1_error"]) <= 1 - MOST

    image = next((setup["data"] / "val" / "ant").iterdir())
    assert main(["predict", int8, str(image), "--json", "-"]) == 0
    predicted = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(predicted) == 4 and abs(sum(p for _, _, p in predicted) - 1) < 1e-4

    # fc7 is an output of the int8 graph; it matches the float model's fc7 closely
    assert main(["features", int8, "--data", data, "--out", str(tmp_path / "q.npz"), "--no-progress"]) == 0
    assert main(["features", str(setup["checkpoint"]), "--data", data, "--precision", "fp32",
                 "--out", str(tmp_path / "f.npz"), "--no-progress"]) == 0
    q, f = Features.load(tmp_path / "q.npz").features, Features.load(tmp_path / "f.npz").features
    assert q.shape == f.shape == (40, 512)
    assert np.linalg.norm(q - f) / np.linalg.norm(f) < 0.2
    capsys.readouterr()
    assert main(["features", int8, "--data", data, "--layer", "conv3", "--out", str(tmp_path / "c.npz")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "exposes only fc8, fc7" in error and "float checkpoint" in error


def test_a_bad_calibration_folder_is_a_one_line_error(setup: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_models([setup["checkpoint"]])[0]
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    broken = tmp_path / "broken" / "train" / "ant"
    broken.mkdir(parents=True)
    for i in range(3):
        (broken / f"{i}.JPEG").write_bytes(b"not an image")
    for folder, message in ((tmp_path / "missing", "data not found"), (empty, "--calibration"),
                            (broken.parent.parent, "--calibration")):
        with pytest.raises(AlexNetError, match=message) as raised:
            quantize_model(loaded, tmp_path / "x.int8.onnx", QuantizeConfig(str(folder)))
        assert "\n" not in str(raised.value) and str(folder) in str(raised.value)
    assert not (tmp_path / "x.int8.onnx").exists()
    link = tmp_path / "link.onnx"  # the checkpoint under another name: never written over
    os.link(setup["checkpoint"], link)
    with pytest.raises(AlexNetError, match="is also an input"):
        quantize_model(loaded, link, QuantizeConfig(str(setup["data"])))
    with pytest.raises(AlexNetError, match=r"name the file \*\.onnx"):
        quantize_model(loaded, tmp_path / "model.pt", QuantizeConfig(str(setup["data"])))
    # the CLI: a checkpoint that names no training data needs --calibration; --int8 needs onnx
    assert main(["export", str(setup["checkpoint"]), "--format", "onnx", "--int8"]) == 2
    assert main(["export", str(setup["checkpoint"]), "--format", "safetensors", "--int8"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "pass --calibration DIR" in errors[0] and "use --format onnx" in errors[1]


def test_export_refuses_a_model_it_cannot_quantise(setup: dict[str, Path], tmp_path: Path) -> None:
    config = QuantizeConfig(str(setup["data"]), images=16, check_images=32)
    with pytest.raises(AlexNetError, match="already an int8 ONNX model"):
        quantize_model(load_models([setup["int8"]])[0], tmp_path / "again.int8.onnx", config)
    # one fc6 unit 10^4 times larger than the rest (and cut from fc7, so the float model's
    # predictions still follow the image): per-tensor uint8 activations give relu6 a step of
    # ~40, every other unit (~1) reads 0, and the int8 graph sees all images alike
    model, info = load_model(setup["checkpoint"])
    with torch.no_grad():
        model.classifier.fc6.bias[0] = 1e4
        model.classifier.fc7.weight[:, 0] = 0
    outlier = tmp_path / "outlier.pt"
    save_checkpoint(outlier, model, info)
    with pytest.raises(AlexNetError, match="cannot be quantised faithfully") as raised:
        quantize_model(load_models([outlier])[0], tmp_path / "outlier.int8.onnx", config)
    assert "of 32 held-out images" in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "outlier.int8.onnx").exists()


def test_bench_evaluate_measures_both_on_real_data(setup: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "evaluate", "--checkpoint", str(setup["checkpoint"]), "--int8-model",
                 str(setup["int8"]), "--data", str(setup["data"]), "--rounds", "1",
                 "--latency-repeats", "2", "--batch-size", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "40 images (center), batch 20" in lines[0] and len(lines) == 3
    assert lines[1].lstrip().startswith("best.pt (") and "batch 1:" in lines[1]
    assert lines[2].lstrip().startswith("best.int8.onnx (int8)") and "x the images/s" in lines[2]


def test_lrn_power_is_rewritten_with_square_roots(setup: dict[str, Path], tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    from alexnet.evaluate.quantize import _float_onnx

    loaded = load_models([setup["checkpoint"]])[0]
    path = tmp_path / "float.onnx"
    assert _float_onnx(loaded, path) == ["logits", "fc7"]
    kinds = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Pow" not in kinds and kinds.count("Sqrt") == 4 and kinds.count("Reciprocal") == 2  # norm1, norm2
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, fc7 = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(logits, loaded.model(images).numpy(), atol=1e-5)
    assert fc7.shape == (3, 512) and (fc7 >= 0).all()  # after its ReLU
