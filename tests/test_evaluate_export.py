"""Export: ONNX checked against PyTorch with onnxruntime, safetensors and TorchScript round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.errors import AlexNetError
from alexnet.evaluate.export import export_model, verify_onnx
from alexnet.evaluate.scoring import LoadedModel, load_models
from alexnet.models.checkpoint import load_safetensors
from evaluate_helpers import make_checkpoint, mean_image_preprocess

ONNX_TOLERANCE = 1e-4  # fp32 logits of order 1; observed differences are ~1e-6


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt",
                           preprocess=mean_image_preprocess())
    return load_models([path])[0]


def test_onnx_matches_pytorch_with_onnxruntime_for_any_batch(loaded: LoadedModel, tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    result = export_model(loaded, "onnx", tmp_path / "model.onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff < ONNX_TOLERANCE
    print(f"ONNX vs PyTorch max abs difference: {result.max_abs_diff:.3g}")
    # an independent check with another batch size (the batch axis is dynamic)
    images = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert verify_onnx(result.path, loaded.model, images) < ONNX_TOLERANCE
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": images[:1].numpy()})[0].shape == (1, 4)
    metadata = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert metadata["model_name"] == "alexnet2012" and json.loads(metadata["classes"])[0] == "ant"
    assert not list(tmp_path.glob("*.data"))  # one self-contained file
    assert "max |exported - PyTorch|" in result.summary()


def test_safetensors_round_trip_rebuilds_the_model(loaded: LoadedModel, tmp_path: Path) -> None:
    result = export_model(loaded, "safetensors", tmp_path / "model.safetensors")
    assert result.max_abs_diff == 0.0
    model, info = load_safetensors(result.path)
    assert info.classes == loaded.info.classes and info.model_options == loaded.info.model_options
    assert torch.equal(info.preprocess["mean"], loaded.info.preprocess["mean"])
    assert info.preprocess["crop_size"] == 64
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_torchscript_reloads_to_the_same_outputs(loaded: LoadedModel, tmp_path: Path) -> None:
    import warnings

    result = export_model(loaded, "torchscript", tmp_path / "model.torchscript.pt")
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-5
    extra = {"alexnet.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(json.loads(extra["alexnet.json"])["classes"]) == ["ant", "bee", "cat", "dog"]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), loaded.model(x).numpy(), atol=1e-5)


def test_export_default_path_and_bad_format(loaded: LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(AlexNetError, match="unknown export format 'tflite'"):
        export_model(loaded, "tflite")
    with pytest.raises(AlexNetError, match="is a folder"):
        export_model(loaded, "safetensors", tmp_path)
    result = export_model(loaded, "safetensors", check=False)
    assert result.path == loaded.info.path.with_name("best.safetensors") and result.path.is_file()
