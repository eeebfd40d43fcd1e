"""--limit N scores exactly N images, from a store as from a folder, whatever the batch size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.evaluate.accuracy import evaluate
from alexnet.evaluate.inference import extract_features
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.scoring import load_models
from data_helpers import image_folder
from evaluate_helpers import CLASSES, IMAGE_SIZE, make_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("limit")
    folder = image_folder(root / "src", {"val": {c: 4 for c in CLASSES}})
    prepare(folder, root / "store", size=IMAGE_SIZE, workers=1, progress=False)
    return folder, root / "store", make_checkpoint(root / "model.pt")


@pytest.mark.parametrize("batch_size", [5, 128])
@pytest.mark.parametrize("limit", [1, 8, 16, 40])
def test_limit_is_exact_on_stores_and_folders(data: tuple[Path, Path, Path], limit: int,
                                              batch_size: int) -> None:
    folder, store, checkpoint = data
    models = load_models([str(checkpoint)])
    for path in (store, folder):
        source = open_images(path, "val", IMAGE_SIZE)
        expected = min(limit, len(source))
        assert sum(len(b.labels) for b in source.batches(batch_size, limit)) == expected
        result = evaluate(models, source, batch_size=batch_size, device="cpu", limit=limit,
                          progress=False)
        assert result.n_images == expected
        features = extract_features(models[0], source, batch_size=batch_size, device="cpu",
                                    limit=limit, progress=False)
        assert len(features.labels) == expected


def test_cli_evaluate_limit_on_a_store(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, store, checkpoint = data
    out = tmp_path / "e.json"
    assert main(["evaluate", str(checkpoint), "--data", str(store), "--limit", "8",
                 "--batch-size", "5", "--device", "cpu", "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["n_images"] == 8
