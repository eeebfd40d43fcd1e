"""Sharing a trained run: torch.hub entry points (hubconf.py) and the Hugging Face layout
(config.json + model.safetensors + README.md model card), offline, on a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet.cli import main
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import evaluate
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import load_models
from alexnet.models import list_models
from alexnet.models.checkpoint import load_model
from alexnet.models.hub import AlexNetHub, from_pretrained
from alexnet.train import train
from train_helpers import make_store, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    folder = root / "run"
    train(tiny_config(make_store(root), folder, epochs=1, ten_crop_final=True), log=lambda _: None)
    return folder


def _logits(model: torch.nn.Module, seed: int = 5) -> torch.Tensor:
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model.eval()(images)


def test_tests_never_contact_a_hub() -> None:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # set in conftest.py before huggingface_hub is imported


def test_hf_export_rebuilds_the_exact_model_with_a_card(run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    assert "max |reloaded - original| = 0" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    original, info = load_model(run / "checkpoints" / "best.pt")
    model, loaded_info = from_pretrained(out)
    assert torch.equal(_logits(model), _logits(original))
    assert loaded_info.classes == info.classes and loaded_info.model_options == info.model_options
    assert torch.equal(loaded_info.preprocess["mean"], info.preprocess["mean"])
    assert torch.equal(_logits(AlexNetHub.from_pretrained(out)), _logits(original))  # the mixin's own way
    config = json.loads((out / "config.json").read_text())
    assert config["model_name"] == "alexnet2012" and config["classes"] == info.classes

    card = (out / "README.md").read_text()
    summary = json.loads((run / "summary.json").read_text())
    manifest = json.loads((Path(json.loads((run / "config.json").read_text())["data"]) / "manifest.json")
                          .read_text())
    params = sum(p.numel() for p in original.parameters())
    assert card.startswith("---\n") and "library_name: alexnet" in card
    assert f"{params:,} parameters" in card and "§3, Fig. 2" in card
    assert f"train {manifest['splits']['train']['count']:,}" in card and "channel mean" in card
    assert all(name in card for name in info.class_names)
    for key in ("val_center", "val_ten_crop"):
        assert f"{100 * (1 - summary[key]['top1_error']):.2f}%" in card
    assert json.loads((run / "config.json").read_text())["command"] in card
    assert '"lr":' in card and "Intended use and limits" in card and "from_pretrained" in card

    # the folder scores like a checkpoint, with the same result
    source = open_images(run.parent / "store", "val", 72)
    by_folder = evaluate(load_models([out]), source, progress=False)
    by_checkpoint = evaluate(load_models([run / "checkpoints" / "best.pt"]), source, progress=False)
    assert by_folder.top1_error == by_checkpoint.top1_error


def test_hf_export_errors(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), "--format", "hf"]) == 2
    assert main(["export", str(tmp_path), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    # never over the run folder itself, nor over another folder's config.json
    before = (run / "config.json").read_bytes()
    assert main(["export", str(run), "--format", "hf", "--out", str(run)]) == 2
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "config.json").write_text('{"model": "alexnet2012"}')
    assert main(["export", str(run), "--format", "hf", "--out", str(other)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and "--format hf --out DIR" in errors[0] and "without checkpoints" in errors[1]
    assert "is also an input" in errors[2] and "not an alexnet Hugging Face export" in errors[3]
    assert (run / "config.json").read_bytes() == before and not (other / "model.safetensors").exists()
    with pytest.raises(AlexNetError, match="not a Hugging Face model folder"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_a_hub_entry(name: str) -> None:
    options = {"num_classes": 3, "width": 0.125} if name.startswith("alexnet") else {"num_classes": 3}
    model = torch.hub.load(str(REPO), name, source="local", **options)
    assert type(model).__name__ and list(model.parameters())[-1].shape == (3,)  # fc8 / last bias


def test_hub_load_reads_every_weights_form(run: Path, tmp_path: Path) -> None:
    expected = _logits(load_model(run / "checkpoints" / "best.pt")[0])
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    for weights in (run, run / "checkpoints" / "best.pt", run / "model.safetensors", tmp_path / "hf"):
        model = torch.hub.load(str(REPO), "alexnet2012", source="local", weights=str(weights))
        assert torch.equal(_logits(model), expected), weights
        assert model.checkpoint.classes == ["ant", "bee", "cat", "dog"]
    with pytest.raises(AlexNetError, match="alexnet2012 weights, not alexnet2014"):
        torch.hub.load(str(REPO), "alexnet2014", source="local", weights=str(run))
    with pytest.raises(AlexNetError, match="trained with num_classes=4, not 10"):
        torch.hub.load(str(REPO), "alexnet2012", source="local", weights=str(run), num_classes=10)
    with pytest.raises(AlexNetError, match="weights not found"):
        torch.hub.load(str(REPO), "alexnet2012", source="local", weights=str(tmp_path / "nothing.pt"))
