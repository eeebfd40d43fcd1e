"""Small image trees written by the data tests themselves (no network, no shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.data.store import StoreStats


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth-ish random RGB uint8 (H, W, 3), so JPEG keeps it recognisable."""
    coarse = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def write_image(path: Path, pixels: np.ndarray, format: str | None = None, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=format, **options)
    return path


def image_folder(root: Path, splits: dict[str, dict[str, int]], *, seed: int = 0,
                 shape: tuple[int, int] = (40, 52), suffix: str = ".JPEG") -> Path:
    """root/<split>/<class>/<class>_<i><suffix> with random images; returns root."""
    rng = np.random.default_rng(seed)
    for split, classes in splits.items():
        for class_name, count in classes.items():
            for i in range(count):
                write_image(root / split / class_name / f"{class_name}_{i}{suffix}",
                            random_image(rng, *shape))
    return root


def fake_stats(size: int, seed: int = 1) -> StoreStats:
    generator = torch.Generator().manual_seed(seed)
    eigvec = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))[0].float()
    eigval = torch.tensor([14143.0, 1222.0, 293.0])  # ImageNet's, 0..255 units (PAPER_FACTS)
    return StoreStats(
        mean_image=torch.rand(size, size, 3, generator=generator) * 255,
        channel_mean=torch.tensor([124.0, 116.0, 104.0]),
        channel_std=torch.tensor([58.0, 57.0, 57.5]),
        rgb_covariance=eigvec @ torch.diag(eigval) @ eigvec.T,
        pca_eigval=eigval, pca_eigvec=eigvec, count=100)
