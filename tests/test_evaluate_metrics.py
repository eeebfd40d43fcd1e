"""Evaluation: top-k, confusion, class mapping, views and ensembles against loop-based and
torchvision references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from alexnet.data.images import load_image
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import (
    confusion_matrix,
    evaluate,
    format_per_class,
    format_table,
    topk_correct,
)
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import LoadedModel, ScoringModel, load_models, map_classes
from alexnet.models.checkpoint import load_model
from evaluate_helpers import CLASSES, make_checkpoint, make_folder, mean_image_preprocess


def test_topk_correct_matches_a_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(50, 7, generator=generator)
    labels = torch.randint(0, 7, (50,), generator=generator)
    for k in (1, 3, 5, 9):
        expected = [labels[i].item() in sorted(range(7), key=lambda c: -scores[i, c])[:k] for i in range(50)]
        assert topk_correct(scores, labels, k).tolist() == expected


def test_confusion_matrix_matches_a_loop_with_an_other_column() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, -1, 2, 0])
    matrix = confusion_matrix(labels, predictions, 3, other_column=True)
    expected = np.zeros((3, 4), dtype=np.int64)
    for t, p in zip(labels.tolist(), predictions.tolist(), strict=True):
        expected[t, 3 if p < 0 else p] += 1
    assert matrix.tolist() == expected.tolist()


def _loaded(tmp_path: Path, name: str = "a.pt", **options: object) -> LoadedModel:
    path = make_checkpoint(tmp_path / name, **options)  # type: ignore[arg-type]
    model, info = load_model(path)
    return LoadedModel(model, info, path.name)


def test_class_mapping_by_name_restricts_and_renormalises(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, classes=("x", "cat", "y", "ant"))
    mapping = map_classes(loaded, ["ant", "cat"], "data", "data")
    probabilities = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert torch.allclose(mapping.scores(probabilities), torch.tensor([[0.4 / 0.6, 0.2 / 0.6]]))
    full = map_classes(loaded, ["ant", "cat"], "data", "model")
    assert full.labels(torch.tensor([0, 1])).tolist() == [3, 1]
    assert full.data_class_of(torch.tensor([3, 1, 0])).tolist() == [0, 1, -1]
    with pytest.raises(AlexNetError, match="4 classes but data has 2, 1 of them unknown"):
        map_classes(loaded, ["ant", "dog"], "data")


def reference_probabilities(model: torch.nn.Module, preprocess: dict, files: list[str],
                            views: str) -> torch.Tensor:
    """Per image, the obvious way: decode, normalise, torchvision's crops, fp32, average."""
    size, crop = preprocess["image_size"], preprocess["crop_size"]
    mean = torch.as_tensor(preprocess["mean"]).float()
    mean = mean.view(3, 1, 1) if mean.dim() == 1 else mean
    std = torch.as_tensor(preprocess["std"]).float().view(3, 1, 1)
    rows = []
    for file in files:
        image = torch.tensor(load_image(file, size)).permute(2, 0, 1).float()  # (3, S, S)
        normalised = (image - mean) / std
        crops = [TF.center_crop(normalised, [crop])] if views == "center" else list(TF.ten_crop(normalised, [crop]))
        with torch.no_grad():
            rows.append(model(torch.stack(crops)).softmax(dim=1).mean(dim=0))
    return torch.stack(rows)


@pytest.mark.parametrize("views", ["center", "ten_crop"])
def test_evaluate_equals_a_per_image_torchvision_reference(tmp_path: Path, views: str) -> None:
    """Batched views (mean image cropped with each view, 10 patches) == TenCrop per image."""
    data = make_folder(tmp_path / "data", per_class=2 if views == "center" else 1)
    loaded = _loaded(tmp_path, preprocess=mean_image_preprocess())
    source = open_images(data, "val", 72)
    scorer = ScoringModel(loaded, torch.device("cpu"), "fp32")
    ours = torch.cat([scorer.probabilities(b.images, views) for b in source.batches(5)])
    expected = reference_probabilities(loaded.model, loaded.info.preprocess, source.files, views)
    assert torch.allclose(ours, expected, atol=1e-5)

    result = evaluate([loaded], source, views=views, batch_size=5, precision="fp32", progress=False)
    labels = torch.from_numpy(source.labels)
    assert result.top1_error == pytest.approx(1 - topk_correct(expected, labels, 1).float().mean().item())
    assert result.top5_error == pytest.approx(1 - topk_correct(expected, labels, 4).float().mean().item())
    reference_confusion = confusion_matrix(labels, expected.argmax(dim=1), len(CLASSES))
    assert result.confusion == reference_confusion.tolist()
    per_class = (reference_confusion.diag().float() / reference_confusion.sum(dim=1)).tolist()
    assert result.per_class_accuracy == pytest.approx(per_class)
    assert result.k == 4 and result.n_images == len(source)


def test_ensemble_averages_softmax_and_scores_each_member(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=2)
    paths = [make_checkpoint(tmp_path / f"m{i}.pt", seed=i) for i in range(3)]  # the "3 CNNs" row
    models = load_models(paths)
    source = open_images(data, "val", 72)
    result = evaluate(models, source, precision="fp32", progress=False)
    probabilities = [reference_probabilities(m.model, m.info.preprocess, source.files, "center")
                     for m in models]
    labels = torch.from_numpy(source.labels)
    average = torch.stack(probabilities).mean(dim=0)
    assert result.top1_error == pytest.approx(1 - topk_correct(average, labels, 1).float().mean().item())
    for member, probs in zip(result.members, probabilities, strict=True):
        assert member.top1_error == pytest.approx(1 - topk_correct(probs, labels, 1).float().mean().item())
    table = format_table(result)
    assert "3 CNNs (softmax averaged)" in table and "m0.pt" in table and "7 CNNs*" in table
    assert "ant " in format_per_class(result)
    json.dumps(result.to_json())  # serialisable as it is


def test_bf16_fast_path_agrees_with_fp32(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    loaded = _loaded(tmp_path)
    images = next(open_images(data, "val", 72).batches(12)).images
    fp32 = ScoringModel(loaded, torch.device("cpu"), "fp32").probabilities(images)
    bf16 = ScoringModel(loaded, torch.device("cpu"), "bf16").probabilities(images)
    assert (bf16 - fp32).abs().max() < 0.02  # bf16 keeps 8 bits of mantissa
    assert torch.allclose(bf16.sum(dim=1), torch.ones(len(images)), atol=1e-5)  # softmax in fp32


def test_store_and_folder_give_the_same_result(tmp_path: Path) -> None:
    from alexnet.data.prepare import prepare

    data = make_folder(tmp_path / "data")
    prepare(data, tmp_path / "store", size=72, workers=1, progress=False, jpeg_draft=False)
    loaded = _loaded(tmp_path)
    from_folder = evaluate([loaded], open_images(data, "val", 72), precision="fp32", progress=False)
    from_store = evaluate([loaded], open_images(tmp_path / "store", "val"), precision="fp32", progress=False)
    assert from_store.top1_error == from_folder.top1_error
    assert from_store.confusion == from_folder.confusion


def test_a_store_of_another_size_is_resized_to_the_checkpoint(tmp_path: Path) -> None:
    from alexnet.data.prepare import prepare

    data = make_folder(tmp_path / "data", per_class=1)
    prepare(data, tmp_path / "store", size=96, workers=1, progress=False)
    result = evaluate([_loaded(tmp_path)], open_images(tmp_path / "store", "val"), progress=False)
    assert result.n_images == len(CLASSES)


def test_unreadable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=2)
    (data / "val" / "ant" / "notes.txt").write_text("not an image")
    (data / "val" / "bee" / "empty.JPEG").write_bytes(b"")
    source = open_images(data, "val", 72)
    result = evaluate([_loaded(tmp_path)], source, batch_size=3, progress=False)
    assert result.n_images == 2 * len(CLASSES)
    assert sorted(Path(f).name for f, _ in result.skipped) == ["empty.JPEG", "notes.txt"]
    assert all(reason for _, reason in result.skipped)
