"""Training statistics: exact sums, and the PCA of a synthetic set with a known covariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alexnet.data.prepare import prepare
from alexnet.data.stats import StatsAccumulator, compute_stats, principal_components
from alexnet.data.store import open_store
from data_helpers import write_image


def synthetic_images(count: int, size: int, covariance: np.ndarray, mean: np.ndarray,
                     seed: int = 0) -> np.ndarray:
    """uint8 (N, S, S, 3) whose pixels are drawn from N(mean, covariance) (well inside 0..255)."""
    rng = np.random.default_rng(seed)
    pixels = rng.multivariate_normal(mean, covariance, size=count * size * size)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(count, size, size, 3)


def reference_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """The same statistics written out with numpy's own mean/cov, as an independent check."""
    pixels = images.reshape(-1, 3).astype(np.float64)
    return {"mean_image": images.astype(np.float64).mean(axis=0),
            "channel_mean": pixels.mean(axis=0), "channel_std": pixels.std(axis=0),
            "rgb_covariance": np.cov(pixels, rowvar=False, bias=True)}


KNOWN_EIGVEC = np.linalg.qr(np.array([[1.0, 0.2, 0.1], [1.0, -0.1, -0.8], [1.0, -0.7, 0.4]]))[0]
KNOWN_EIGVAL = np.array([400.0, 90.0, 16.0])
KNOWN_COVARIANCE = KNOWN_EIGVEC @ np.diag(KNOWN_EIGVAL) @ KNOWN_EIGVEC.T
MEAN = np.array([120.0, 110.0, 100.0])


def test_accumulator_matches_numpy_exactly_and_is_chunking_independent() -> None:
    images = synthetic_images(10, 12, KNOWN_COVARIANCE, MEAN)
    whole = compute_stats(images, chunk=10)
    pieces = StatsAccumulator.empty(12)
    for part in (images[:3], images[3:4], images[4:]):
        partial = StatsAccumulator.empty(12)
        partial.add(part)
        pieces.merge(StatsAccumulator.from_state(partial.state()))
    chunked = pieces.finish()
    reference = reference_stats(images)
    for name, expected in reference.items():
        np.testing.assert_allclose(whole[name], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(whole[name], chunked[name])


def test_pca_recovers_a_known_covariance() -> None:
    images = synthetic_images(16, 32, KNOWN_COVARIANCE, MEAN, seed=1)
    stats = compute_stats(images)
    # rounding to integers adds 1/12 of a level squared to each channel's variance
    np.testing.assert_allclose(stats["rgb_covariance"], KNOWN_COVARIANCE + np.eye(3) / 12,
                               atol=6.0)
    np.testing.assert_allclose(stats["pca_eigval"], KNOWN_EIGVAL, rtol=0.03)
    for k in range(3):
        cosine = abs(stats["pca_eigvec"][:, k] @ KNOWN_EIGVEC[:, k])
        assert cosine > 0.99, (k, cosine)
    eigval, eigvec = stats["pca_eigval"], stats["pca_eigvec"]
    np.testing.assert_allclose(eigvec @ np.diag(eigval) @ eigvec.T, stats["rgb_covariance"],
                               atol=1e-9)
    assert np.all(np.diff(eigval) <= 0) and np.all(eigvec.sum(axis=0) >= 0)


def test_principal_components_sign_and_order() -> None:
    covariance = np.diag([1.0, 9.0, 4.0])
    eigval, eigvec = principal_components(covariance)
    np.testing.assert_allclose(eigval, [9.0, 4.0, 1.0])
    np.testing.assert_allclose(np.abs(eigvec), np.eye(3)[:, [1, 2, 0]])
    assert np.all(eigvec.sum(axis=0) >= 0)


def test_prepare_writes_the_stats_of_its_training_images(tmp_path: Path) -> None:
    images = synthetic_images(12, 16, KNOWN_COVARIANCE, MEAN, seed=2)
    for i, pixels in enumerate(images):  # PNG at the store size: pixels pass through unchanged
        write_image(tmp_path / "src" / "train" / f"c{i % 3}" / f"{i}.png", pixels)
    prepare(tmp_path / "src", tmp_path / "store", size=16, workers=2, chunk_size=2,
            progress=False)
    store = open_store(tmp_path / "store", "train")
    np.testing.assert_array_equal(np.sort(store.images.reshape(12, -1), axis=0),
                                  np.sort(images.reshape(12, -1), axis=0))
    reference = reference_stats(images)
    assert store.stats.count == 12
    for name, expected in reference.items():
        np.testing.assert_allclose(getattr(store.stats, name).numpy(), expected, rtol=1e-5,
                                   atol=1e-4)
    np.testing.assert_allclose(store.stats.pca_eigval.numpy(), KNOWN_EIGVAL, rtol=0.1)
