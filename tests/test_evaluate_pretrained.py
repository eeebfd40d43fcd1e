"""torchvision's IMAGENET1K_V1 weights in alexnet2014: loading, preprocessing, class order.

No network here: the weights are a torchvision.models.alexnet() state_dict saved by the test,
and the download path is exercised through torchvision's API with its transfer replaced.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import AlexNet_Weights

from alexnet.data.images import load_image
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import evaluate
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import ScoringModel, load_models, map_classes
from alexnet.models.pretrained import imagenet_wnids, torchvision_alexnet
from data_helpers import random_image

# ../shared/data/README.md: Imagenette wnids and their ImageNet-1k indices
IMAGENETTE = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491,
              "n03028079": 497, "n03394916": 566, "n03417042": 569, "n03425413": 571,
              "n03445777": 574, "n03888257": 701}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "alexnet-local.pth"
    torch.save(torchvision.models.alexnet().state_dict(), path)
    return path


def test_wnids_are_the_sorted_imagenet_classes() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert {w: wnids.index(w) for w in IMAGENETTE} == IMAGENETTE


def test_local_weights_give_torchvision_outputs(weights_file: Path) -> None:
    model, info = torchvision_alexnet(weights_file)
    reference = torchvision.models.alexnet()
    reference.load_state_dict(torch.load(weights_file, weights_only=True))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))
    assert info.class_names == AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    assert info.classes[0] == "n01440764" and info.class_names[0] == "tench"


def test_preprocessing_matches_torchvision_transforms(weights_file: Path, tmp_path: Path) -> None:
    """Our decode + centre view == weights.transforms() (Resize 256, crop 224, normalise)."""
    pixels = random_image(np.random.default_rng(0), 300, 410)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    loaded = load_models([], weights="torchvision", weights_file=weights_file)[0]
    scorer = ScoringModel(loaded, torch.device("cpu"), "fp32")
    model = loaded.model
    ours = scorer.views(torch.tensor(load_image(path, 256, jpeg_draft=False)).unsqueeze(0))
    theirs = AlexNet_Weights.IMAGENET1K_V1.transforms()(Image.open(path).convert("RGB")).unsqueeze(0)
    # torchvision resizes the uint8 tensor, we resize with Pillow: a grey level or two apart
    assert (ours - theirs).abs().mean() < 0.02
    with torch.no_grad():
        assert torch.allclose(model(ours).softmax(1), model(theirs).softmax(1), atol=1e-3)


def test_download_goes_through_torchvision_weights_api(monkeypatch: pytest.MonkeyPatch,
                                                       weights_file: Path) -> None:
    calls = []
    state = torch.load(weights_file, weights_only=True)

    def fake_get_state_dict(self: object, *args: object, **kwargs: object) -> dict:
        calls.append((self, kwargs))
        return state

    monkeypatch.setattr(type(AlexNet_Weights.IMAGENET1K_V1), "get_state_dict", fake_get_state_dict)
    model, _ = torchvision_alexnet()
    assert calls and calls[0][0] is AlexNet_Weights.IMAGENET1K_V1 and calls[0][1]["check_hash"]
    assert torch.equal(model.features[0].weight, state["features.0.weight"])


def test_offline_download_says_to_use_weights_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: object, *args: object, **kwargs: object) -> dict:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(type(AlexNet_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(AlexNetError, match=r"cannot download .* --weights-file PATH") as error:
        torchvision_alexnet()
    assert "\n" not in str(error.value)


def test_bad_weights_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(AlexNetError, match="weights file not found"):
        torchvision_alexnet(tmp_path / "missing.pth")
    other = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    with pytest.raises(AlexNetError, match="does not hold torchvision alexnet weights"):
        torchvision_alexnet(other)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a torch file")
    with pytest.raises(AlexNetError, match="cannot read weights file"):
        torchvision_alexnet(junk)


def test_imagenette_folders_map_to_imagenet_outputs(weights_file: Path, shared_data: Path,
                                                    tmp_path: Path) -> None:
    loaded = load_models([], weights="torchvision", weights_file=weights_file)[0]
    source = open_images(shared_data / "imagenette", "val", 256)
    mapping = map_classes(loaded, source.classes, source.name)
    assert dict(zip(source.classes, mapping.columns.tolist(), strict=True)) == IMAGENETTE
    few = source.subset([0, len(source) - 1])
    for space in ("data", "model"):
        result = evaluate([loaded], few, label_space=space, progress=False)
        assert result.n_images == 2 and len(result.confusion) == 10
        assert len(result.confusion[0]) == (11 if space == "model" else 10)  # + "other"
        assert result.k == 5
