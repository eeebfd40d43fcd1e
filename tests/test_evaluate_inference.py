"""Inference: predictions per file, fc7 features, nearest neighbours and binary codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.errors import AlexNetError
from alexnet.evaluate.binary_codes import (
    CodeConfig,
    hamming_distances,
    measure_codes,
    shortlist_recall,
)
from alexnet.evaluate.inference import (
    Features,
    extract_features,
    feature_module,
    find_neighbors,
    nearest_neighbors,
    predict_files,
)
from alexnet.evaluate.inputs import open_images
from alexnet.evaluate.neighbors import search_neighbors
from alexnet.evaluate.scoring import load_models
from alexnet.models import create_model
from evaluate_helpers import make_checkpoint, make_folder


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet2014"])
def test_fc7_is_the_last_hidden_layer_after_relu(name: str) -> None:
    model = create_model(name, num_classes=5, width=0.125).eval()
    x = torch.randn(2, 3, 64, 64)
    captured = []
    feature_module(model, "fc7").register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    with torch.no_grad():
        logits = model(x)
        fc8 = dict(model.named_layers())["fc8"]
        # fc8 of the captured activation gives the logits: it is the input of the last layer
        assert torch.allclose(fc8(captured[0]), logits, atol=1e-5)
    assert captured[0].min() >= 0 and captured[0].shape == (2, fc8.in_features)
    with pytest.raises(AlexNetError, match="unknown layer 'fc9'; valid: conv1"):
        feature_module(model, "fc9")


def test_nearest_neighbors_match_a_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    gallery, queries = torch.randn(60, 8, generator=generator), torch.randn(7, 8, generator=generator)
    distances, indices = nearest_neighbors(queries, gallery, k=4, chunk=3)
    for q in range(7):
        exact = sorted(range(60), key=lambda j: torch.dist(queries[q], gallery[j]).item())[:4]
        assert indices[q].tolist() == exact
        assert distances[q].tolist() == pytest.approx([torch.dist(queries[q], gallery[j]).item() for j in exact],
                                                      abs=1e-4)
    assert nearest_neighbors(queries, gallery[:2], k=5)[1].shape == (7, 2)


def test_hamming_distances_match_a_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(5, 33, generator=generator) > 0.5
    b = torch.rand(9, 33, generator=generator) > 0.5
    expected = [[int((a[i] != b[j]).sum()) for j in range(9)] for i in range(5)]
    assert hamming_distances(a, b).tolist() == expected


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small matmuls train faster on one thread: with two on the shared, busy 2-core CI
    machine every tiny op waits for the other thread (measured 4 s vs 33 s for this test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_autoencoder_codes_beat_random_projections(one_thread: None) -> None:
    """Features on a low-dimensional manifold, as fc7 activations are: the learned codes keep
    more of the Euclidean neighbourhoods than random hyperplanes with the same bits."""
    generator = torch.Generator().manual_seed(2)
    latent = torch.randn(1100, 12, generator=generator)
    features = torch.relu(latent @ torch.randn(12, 128, generator=generator)
                          + 0.3 * torch.randn(1100, 128, generator=generator))
    _, report = measure_codes(features[:1000], features[1000:], k=5,
                              config=CodeConfig(bits=32, hidden=128, steps=300, batch_size=64))
    assert list(report.recall) == [5, 50, 500]
    assert report.recall[50] > report.random_projection_recall[50] + 0.05
    assert report.recall[500] > 0.8 and report.bits_balanced > 0.5
    assert "32-bit codes" in report.summary()
    # a shortlist of the whole gallery finds every neighbour
    _, truth = nearest_neighbors(features[1000:], features[:1000], 5)
    codes = torch.rand(1000, 8) > 0.5
    assert shortlist_recall(truth, codes[:100], codes, 1000) == 1.0


def test_features_neighbors_and_predictions_on_a_folder(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=2)
    loaded = load_models([make_checkpoint(tmp_path / "m.pt")])[0]
    gallery_source = open_images(data, "train", 72)
    gallery = extract_features(loaded, gallery_source, "fc7", batch_size=7, progress=False)
    assert gallery.features.shape == (len(gallery_source), 512)  # 4096 * width 1/8
    assert gallery.indices.tolist() == list(range(len(gallery_source)))
    saved = Features.load(gallery.save(tmp_path / "f.npz"))
    assert np.array_equal(saved.features, gallery.features) and saved.files == gallery.files
    with pytest.raises(AlexNetError, match=r"name the file \*.npz"):
        gallery.save(tmp_path / "f.npy")

    queries = extract_features(loaded, gallery_source.subset([3, 0]), "fc7", progress=False)
    result = find_neighbors(gallery, queries, k=3)
    # a gallery image queried for is its own nearest neighbour, at distance ~0
    assert [row[0].index for row in result.neighbors] == [3, 0]
    assert result.neighbors[0][0].distance < 1e-3 and result.same_class_fraction is not None

    good = gallery_source.files[0]
    (tmp_path / "bad.jpg").write_text("not an image")
    predictions = predict_files([loaded], [good, tmp_path / "bad.jpg", tmp_path / "missing.png"], topk=3)
    assert [p.error is None for p in predictions] == [True, False, False]
    assert predictions[2].error == "file not found" and "\n" not in predictions[1].error
    probabilities = [p for _, _, p in predictions[0].top]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert predictions[0].top[0][1] == predictions[0].top[0][0].upper()  # class names


def test_search_neighbors_measures_codes_only_for_a_gallery_of_two_or_more(tmp_path: Path) -> None:
    # an auto-encoder needs at least 2 gallery features; with 1 (a limit, or skipped files)
    # the search still answers and leaves the codes out instead of failing
    data = make_folder(tmp_path / "data", per_class=2)
    loaded = load_models([make_checkpoint(tmp_path / "m.pt")])[0]
    source = open_images(data, "train", 72)
    queries = source.subset([0, 1])
    options = {"recall_source": source, "code_bits": 8, "code_steps": 2, "progress": False}
    one = search_neighbors(loaded, source, queries, 1, gallery_limit=1, **options)
    assert len(one.gallery.labels) == 1 and one.codes is None
    two = search_neighbors(loaded, source, queries, 1, gallery_limit=2, **options)
    assert len(two.gallery.labels) == 2 and two.codes is not None
