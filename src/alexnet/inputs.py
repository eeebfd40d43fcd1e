"""What evaluation and inference read: a split of a prepared store, or a folder of images.

``open_images(path, split, size)`` accepts
- a prepared store (``manifest.json`` at its root, see docs/ARCHITECTURE.md): fast, the
  images are already decoded and cropped;
- a folder of class sub-folders (``ROOT/<class>/<image>``), or a folder holding
  ``<split>/<class>/<image>`` (Imagenette's layout): every image is decoded, its shorter
  side resized to ``size`` and the centre ``size`` x ``size`` patch kept (§2), on the fly.

Both yield batches of uint8 ``(B, S, S, 3)`` images with their labels, the same form the
training loader produces. A file that cannot be decoded is skipped and listed (path and
reason) in ``skipped``; it never stops the run.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet.errors import AlexNetError

# Exceptions Pillow raises for unreadable, truncated or oversized files.
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                 Image.DecompressionBombError)  # fmt: skip


@dataclass
class Batch:
    images: torch.Tensor  # (B, S, S, 3) uint8
    labels: torch.Tensor  # (B,) int64
    indices: np.ndarray  # (B,) positions in ``files``


def read_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Decode any image Pillow reads to RGB, shorter side ``size``, centre crop: (S, S, 3) uint8.

    Resizing follows torchvision's ``Resize(size)`` (bilinear, antialiased, long side
    truncated) and ``CenterCrop`` (offsets rounded), so a 256 image centre-cropped to 224
    here equals torchvision's Resize(256) + CenterCrop(224) evaluation transform.
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)  # phone photos are stored rotated
        image = image.convert("RGB")  # grayscale, CMYK, palette, RGBA -> RGB
        width, height = image.size
        if width < height:
            new_size = (size, int(size * height / width))
        else:
            new_size = (int(size * width / height), size)
        image = image.resize(new_size, Image.Resampling.BILINEAR)
        top = round((new_size[1] - size) / 2.0)
        left = round((new_size[0] - size) / 2.0)
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8).copy()


def decode_error(path: str | os.PathLike[str], error: BaseException) -> str:
    """One line saying why ``path`` could not be used."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]


@dataclass
class StoreImages:
    """One split of a prepared store: ``images.u8`` memory-mapped, read batch by batch."""

    root: Path
    split: str
    classes: list[str]
    class_names: list[str]
    size: int
    files: list[str]
    labels: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, S, S, 3) uint8 memmap
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.root} ({self.split})"

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        total = len(self) if limit is None else min(limit, len(self))
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield Batch(
                torch.from_numpy(np.ascontiguousarray(self.images[start:stop])),
                torch.from_numpy(self.labels[start:stop].astype(np.int64)),
                np.arange(start, stop),
            )


@dataclass
class FolderImages:
    """A folder of class sub-folders, decoded on the fly by a thread pool."""

    root: Path
    classes: list[str]
    class_names: list[str]
    size: int
    files: list[str]
    labels: np.ndarray  # (N,) int64
    skipped: list[tuple[str, str]] = field(default_factory=list)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def name(self) -> str:
        return str(self.root)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        total = len(self) if limit is None else min(limit, len(self))

        def decode(index: int) -> np.ndarray | str:
            try:
                return read_image(self.files[index], self.size)
            except DECODE_ERRORS as error:
                return decode_error(self.files[index], error)

        # Pillow releases the GIL while decoding and resizing, so threads use every core;
        # up to two batches ahead are decoded while the caller computes on this one.
        with ThreadPoolExecutor(self.workers) as pool:
            ahead: deque[tuple[int, Future[np.ndarray | str]]] = deque()
            submitted = 0
            for start in range(0, total, batch_size):
                while submitted < min(total, start + 3 * batch_size):
                    ahead.append((submitted, pool.submit(decode, submitted)))
                    submitted += 1
                good: list[int] = []
                images: list[np.ndarray] = []
                for _ in range(min(batch_size, total - start)):
                    index, future = ahead.popleft()
                    decoded = future.result()
                    if isinstance(decoded, str):
                        self.skipped.append((self.files[index], decoded))
                    else:
                        good.append(index)
                        images.append(decoded)
                if good:
                    yield Batch(torch.from_numpy(np.stack(images)),
                                torch.from_numpy(self.labels[good]), np.array(good))


ImageSource = StoreImages | FolderImages


def open_images(path: str | os.PathLike[str], split: str = "val", size: int = 256) -> ImageSource:
    """The ``split`` of a prepared store, or a folder of class sub-folders decoded at ``size``."""
    path = Path(path)
    if not path.exists():
        raise AlexNetError(f"data not found: {path}")
    if not path.is_dir():
        raise AlexNetError(f"--data {path} is a file; give a prepared store or a folder of class sub-folders")
    if (path / "manifest.json").is_file():
        return open_store_split(path, split)
    root = path / split if (path / split).is_dir() else path
    return open_folder(root, size)


def open_store_split(root: Path, split: str) -> StoreImages:
    """A prepared store's split, through the data package's reader."""
    manifest = json.loads((root / "manifest.json").read_text())
    split_dir = root / split
    if not (split_dir / "images.u8").is_file():
        found = sorted(p.name for p in root.iterdir() if (p / "images.u8").is_file())
        raise AlexNetError(f"store {root} has no split {split!r}; it has: {', '.join(found) or 'none'}")
    labels = np.load(split_dir / "labels.npy")
    size = int(manifest["image_size"])
    images = np.memmap(split_dir / "images.u8", dtype=np.uint8, mode="r", shape=(len(labels), size, size, 3))
    files_txt = split_dir / "files.txt"
    files = files_txt.read_text().splitlines() if files_txt.is_file() else [f"{split}[{i}]" for i in range(len(labels))]
    classes = list(manifest["classes"])
    return StoreImages(root, split, classes, list(manifest.get("class_names", classes)), size,
                       files, labels.astype(np.int64), images)


def open_folder(root: Path, size: int) -> FolderImages:
    """ImageFolder convention: class = sub-folder name (sorted), every file below it an image."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise AlexNetError(
            f"no class sub-folders in {root}; expected {root}/<class>/<image> or a prepared store"
        )
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if not filename.startswith("."):
                    files.append(os.path.join(dirpath, filename))
                    labels.append(label)
    if not files:
        raise AlexNetError(f"empty data folder: no files in the class sub-folders of {root}")
    return FolderImages(root, classes, classes, size, files, np.asarray(labels, dtype=np.int64))
