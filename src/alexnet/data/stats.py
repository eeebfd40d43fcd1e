"""Training-set statistics, computed while the store is written (§2, §4.1).

- ``mean_image`` (S, S, 3): the per-pixel mean the paper subtracts (§2).
- ``channel_mean``, ``channel_std`` (3,): torchvision-style per-channel normalisation.
- ``rgb_covariance`` (3, 3) and its eigen-decomposition ``pca_eigval`` (3,, descending),
  ``pca_eigvec`` (3, 3, one eigenvector per column): the PCA behind the colour ("lighting")
  augmentation (§4.1). Each eigenvector's sign is fixed so that its entries sum to >= 0.

All in pixel units 0..255 (covariance and eigenvalues in pixel units squared), over every
pixel of every training image. Sums are kept as exact integers (float64 products of uint8
values are exact below 2**53), so the result does not depend on chunking, worker count or
resuming, and is exact for ImageNet's 1.2M images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet.runtime.outputs import atomic_write

STAT_NAMES = ("mean_image", "channel_mean", "channel_std", "rgb_covariance", "pca_eigval",
              "pca_eigvec")
_GROUP = 16  # images per float64 product block: (16 * S * S, 3) float64 is 25 MB at S=256


@dataclass
class StatsAccumulator:
    """Exact running sums over uint8 (N, S, S, 3) images; ``add`` chunks, ``merge`` partials."""

    count: int  # images
    pixel_sum: np.ndarray  # int64 (S, S, 3): sum over images of each pixel
    rgb_sum: np.ndarray  # int64 (3,): sum over all pixels
    rgb_outer_sum: np.ndarray  # int64 (3, 3): sum over all pixels of x x^T

    @classmethod
    def empty(cls, size: int) -> StatsAccumulator:
        return cls(0, np.zeros((size, size, 3), np.int64), np.zeros(3, np.int64),
                   np.zeros((3, 3), np.int64))

    def add(self, images: np.ndarray) -> None:
        """Accumulate uint8 images (N, S, S, 3)."""
        if len(images) == 0:
            return
        self.count += len(images)
        self.pixel_sum += images.sum(axis=0, dtype=np.int64)
        for start in range(0, len(images), _GROUP):
            pixels = images[start:start + _GROUP].reshape(-1, 3).astype(np.float64)  # (P, 3)
            # integers below 2**53: these float64 sums are exact, then kept as int64
            self.rgb_sum += pixels.sum(axis=0).astype(np.int64)
            self.rgb_outer_sum += (pixels.T @ pixels).astype(np.int64)

    def merge(self, other: StatsAccumulator) -> None:
        self.count += other.count
        self.pixel_sum += other.pixel_sum
        self.rgb_sum += other.rgb_sum
        self.rgb_outer_sum += other.rgb_outer_sum

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.asarray(self.count, np.int64), "pixel_sum": self.pixel_sum,
                "rgb_sum": self.rgb_sum, "rgb_outer_sum": self.rgb_outer_sum}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> StatsAccumulator:
        return cls(int(state["count"]), np.array(state["pixel_sum"], np.int64),
                   np.array(state["rgb_sum"], np.int64), np.array(state["rgb_outer_sum"], np.int64))

    def finish(self) -> dict[str, np.ndarray]:
        """The statistics of stats.npz (float32 mean image, float64 for the 3-vectors)."""
        if self.count == 0:
            raise ValueError("no images were accumulated")
        pixels = self.count * self.pixel_sum.shape[0] * self.pixel_sum.shape[1]
        channel_mean = self.rgb_sum / pixels
        covariance = self.rgb_outer_sum / pixels - np.outer(channel_mean, channel_mean)
        eigval, eigvec = principal_components(covariance)
        return {
            "mean_image": (self.pixel_sum / self.count).astype(np.float32),
            "channel_mean": channel_mean,
            "channel_std": np.sqrt(np.clip(np.diag(covariance), 0.0, None)),
            "rgb_covariance": covariance,
            "pca_eigval": eigval,
            "pca_eigvec": eigvec,
        }


def principal_components(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns, entries summing to >= 0)."""
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
    signs = np.where(eigvec.sum(axis=0) < 0, -1.0, 1.0)
    return eigval, eigvec * signs


def compute_stats(images: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray]:
    """The statistics of a whole uint8 (N, S, S, 3) array (memory-mapped is fine)."""
    accumulator = StatsAccumulator.empty(images.shape[1])
    for start in range(0, len(images), chunk):
        accumulator.add(np.asarray(images[start:start + chunk]))
    return accumulator.finish()


def save_stats(path: Path, stats: dict[str, np.ndarray], count: int) -> None:
    def write(temporary: Path) -> None:
        with temporary.open("wb") as f:  # a file, so that numpy adds no ".npz" to the name
            np.savez(f, count=np.asarray(count, np.int64), **stats)

    atomic_write(path, write)
