"""What evaluation and inference read: a split of a prepared store, or a folder of images.

``open_images(path, split, size)`` accepts
- a prepared store (``manifest.json`` at its root, ``alexnet prepare``): fast, the images
  are already decoded and cropped, read from the memory map batch by batch;
- anything ``alexnet prepare`` reads (``alexnet.data.sources``): ``ROOT/<split>/<class>/``
  trees such as Imagenette, a single ``ROOT/<class>/<image>`` tree, an ILSVRC validation
  folder with its label file, ``torchvision:NAME``. Every image is decoded by the data
  package's ``load_image`` (shorter side to ``size``, centre crop, §2) on the fly.

Both yield batches of uint8 ``(B, S, S, 3)`` images with their labels, the form the training
loader produces. A file that cannot be decoded is skipped and listed (path and reason) in
``skipped``; it never stops the run.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from alexnet.data.images import BadImageError, from_array, load_image
from alexnet.data.sources import SPLIT_FOLDERS, Source, SplitItems, open_source
from alexnet.data.store import MANIFEST, ImageStore, open_store
from alexnet.errors import AlexNetError, check_positive


@dataclass
class SourceBatch:
    images: torch.Tensor  # (B, S, S, 3) uint8
    labels: torch.Tensor  # (B,) int64
    indices: np.ndarray  # (B,) positions in the source


@dataclass
class StoreImages:
    """One split of a prepared store (or some of its images), read from the memory map."""

    store: ImageStore
    rows: np.ndarray  # (N,) int64: the store row of each image of this source
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.store.root} ({self.store.split})"

    @property
    def classes(self) -> list[str]:
        return self.store.classes

    @property
    def class_names(self) -> list[str]:
        return self.store.class_names

    @property
    def size(self) -> int:
        return self.store.size

    @property
    def labels(self) -> np.ndarray:
        return self.store.labels[self.rows]

    @property
    def files(self) -> list[str]:
        names = self.store.files
        return [str(self.store.source_root / names[row]) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[SourceBatch]:
        check_positive(batch_size=batch_size, limit=limit)
        total = len(self) if limit is None else min(limit, len(self))
        for start in range(0, total, batch_size):
            rows = self.rows[start:min(start + batch_size, total)]  # --limit is exact
            images = self.store.read(rows)  # rows ascending: one pass front to back
            yield SourceBatch(torch.from_numpy(images), torch.from_numpy(self.store.labels[rows]),
                        np.arange(start, start + len(rows)))

    def subset(self, indices: Sequence[int]) -> StoreImages:
        """The images at ``indices`` (positions in this source), in that order."""
        return StoreImages(self.store, self.rows[np.asarray(indices, dtype=np.int64)])


@dataclass
class FolderImages:
    """Image files (or in-memory arrays), decoded on the fly by a thread pool."""

    root: Path
    classes: list[str]
    class_names: list[str]
    size: int
    files: list[str]
    labels: np.ndarray  # (N,) int64
    arrays: np.ndarray | None = None  # (N, H, W, 3) uint8 for in-memory datasets
    split: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def name(self) -> str:
        return f"{self.root} ({self.split})" if self.split else str(self.root)

    def __len__(self) -> int:
        return len(self.labels)

    def decode(self, index: int) -> np.ndarray | str:
        """(S, S, 3) uint8, or the one-line reason the file cannot be used."""
        try:
            if self.arrays is not None:
                return from_array(self.arrays[index], self.size)
            return load_image(self.files[index], self.size)
        except BadImageError as error:
            return str(error)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[SourceBatch]:
        check_positive(batch_size=batch_size, limit=limit)
        total = len(self) if limit is None else min(limit, len(self))
        # Pillow releases the GIL while decoding and resizing, so threads use every core;
        # up to two batches ahead are decoded while the caller computes on this one.
        with ThreadPoolExecutor(self.workers) as pool:
            ahead: deque[tuple[int, Future[np.ndarray | str]]] = deque()
            submitted = 0
            for start in range(0, total, batch_size):
                while submitted < min(total, start + 3 * batch_size):
                    ahead.append((submitted, pool.submit(self.decode, submitted)))
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
                    yield SourceBatch(torch.from_numpy(np.stack(images)),
                                torch.from_numpy(self.labels[good]), np.array(good))

    def subset(self, indices: Sequence[int]) -> FolderImages:
        """The images at ``indices`` (positions in this source), in that order."""
        chosen = np.asarray(indices, dtype=np.int64)
        arrays = None if self.arrays is None else self.arrays[chosen]
        return replace(self, files=[self.files[i] for i in chosen], labels=self.labels[chosen],
                       arrays=arrays, skipped=[])


ImageSource = StoreImages | FolderImages


def open_images(path: str | os.PathLike[str], split: str = "val", size: int = 256) -> ImageSource:
    """The ``split`` of a prepared store, or of an image folder decoded at ``size``."""
    text = os.fspath(path)
    if not text.startswith("torchvision:"):
        root = Path(text)
        if not root.exists():
            raise AlexNetError(f"data not found: {root}")
        if not root.is_dir():
            raise AlexNetError(f"--data {root} is a file; give a prepared store or a folder of "
                               "class sub-folders")
        if (root / MANIFEST).is_file():
            store = open_store(root, split)
            if len(store) == 0:
                raise AlexNetError(f"split {split!r} of store {root} holds no images")
            return StoreImages(store, np.arange(len(store)))
        has_splits = any(p.is_dir() and p.name in SPLIT_FOLDERS for p in root.iterdir())
        if not has_splits:  # a single CLASS/IMAGE tree: whatever the split asked for
            source = open_source(root)
            items = next(iter(source.splits.values()))
            return _folder(source, items, size, "")
    source = open_source(text, splits=[split])
    return _folder(source, source.splits[split], size, split)


def _folder(source: Source, items: SplitItems, size: int, split: str) -> FolderImages:
    if len(items) == 0:
        raise AlexNetError(f"empty data folder: no image files in {source.root}")
    files = [str(source.path(ref)) for ref in items.refs]
    skipped = [(str(source.path(ref)), why) for ref, why in items.unusable]
    return FolderImages(source.root, list(source.classes), list(source.class_names), size, files,
                        items.labels, items.arrays, split, skipped)


def image_files(files: Sequence[str | os.PathLike[str]], size: int) -> FolderImages:
    """Loose image files as an unlabelled source (every label 0, class "query"); a file that
    cannot be read (missing, a folder, a symlink loop) is skipped with its reason when read."""
    if not files:
        raise AlexNetError("no image file given")
    return FolderImages(Path("."), ["query"], ["query"], size, [str(f) for f in files],
                        np.zeros(len(files), dtype=np.int64))


def fetch_images(source: ImageSource, indices: Sequence[int]) -> np.ndarray:
    """The uint8 images at ``indices`` of ``source``: (n, S, S, 3); unreadable ones left out."""
    batches = [b.images.numpy() for b in source.subset(indices).batches(256)]
    return np.concatenate(batches) if batches else np.zeros((0, source.size, source.size, 3), np.uint8)


def spread_indices(labels: np.ndarray, count: int) -> list[int]:
    """``count`` positions taking each class in turn (its first, then second image, ...),
    so a handful of samples shows as many classes as possible."""
    by_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    chosen: list[int] = []
    for rank in range(max((len(members) for members in by_class), default=0)):
        for members in by_class:
            if rank < len(members) and len(chosen) < count:
                chosen.append(members[rank])
    return chosen
