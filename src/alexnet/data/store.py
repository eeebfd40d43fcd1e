"""The prepared store: what ``alexnet prepare`` writes and everything else reads.

```
DEST/manifest.json      format "alexnet-store/1", image size, classes, class names, source,
                        settings, per-split counts and sha256 checksums, skipped count
DEST/<split>/images.u8  raw uint8, shape (N, S, S, 3), RGB, row-major (np.memmap)
DEST/<split>/labels.npy int64 (N,)
DEST/<split>/files.txt  source path of each image (relative to the manifest's source root)
DEST/stats.npz          over the training split, pixel values 0..255: mean_image (S, S, 3),
                        channel_mean (3,), channel_std (3,), rgb_covariance (3, 3),
                        pca_eigval (3,) descending, pca_eigvec (3, 3) columns, count
DEST/skipped.tsv        path<TAB>reason of every file that could not be used
```

Why raw uint8 in one memory-mapped file: reading a batch is a memcpy from the page cache
(no decoding, the CPU's work goes to training), any image is one seek away, the store does
not need to fit in RAM (the OS pages it in and out), and every reader (numpy, torch, other
languages) can use it with no library. The price is disk: S*S*3 bytes an image (192 KiB at
256, 12 KiB at 64); docs/data.md has the measured sizes and read throughput.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.data.stats import STAT_NAMES
from alexnet.errors import AlexNetError, short_reason

FORMAT = "alexnet-store/1"
MANIFEST = "manifest.json"
STATS_FILE = "stats.npz"
SKIPPED_FILE = "skipped.tsv"
SPLIT_FILES = ("images.u8", "labels.npy", "files.txt")
PROGRESS_FILE = "progress.npz"  # a split being prepared (alexnet.data.prepare)
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class StoreStats:
    """stats.npz as float32 torch tensors (CPU), pixel values 0..255."""

    mean_image: torch.Tensor  # (S, S, 3)
    channel_mean: torch.Tensor  # (3,)
    channel_std: torch.Tensor  # (3,)
    rgb_covariance: torch.Tensor  # (3, 3), pixel units squared
    pca_eigval: torch.Tensor  # (3,) eigenvalues of rgb_covariance, descending
    pca_eigvec: torch.Tensor  # (3, 3) eigenvectors as columns
    count: int  # training images they were computed over

    @classmethod
    def load(cls, path: Path) -> StoreStats:
        with np.load(path) as data:
            tensors = {name: torch.from_numpy(np.asarray(data[name], np.float32)) for name in STAT_NAMES}
            return cls(**tensors, count=int(data["count"]))


@dataclass
class ImageStore:
    """One split of a prepared store. ``images[i]`` is (S, S, 3) uint8 RGB, label ``labels[i]``."""

    root: Path
    split: str
    images: np.ndarray  # np.memmap uint8 (N, S, S, 3), read-only
    labels: np.ndarray  # int64 (N,)
    manifest: dict[str, Any] = field(repr=False)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def imagenet_indices(self) -> list[int] | None:
        """ImageNet-1k index of each class when known (e.g. Imagenette), else None."""
        return self.manifest.get("imagenet_indices")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @cached_property
    def stats(self) -> StoreStats:
        path = self.root / STATS_FILE
        if not path.is_file():
            raise AlexNetError(f"{path} not found: the store has no training split to compute "
                               "statistics from; prepare one (alexnet prepare SRC DEST with a "
                               "train/ folder) or use normalization 'imagenet'")
        return StoreStats.load(path)

    @cached_property
    def files(self) -> list[str]:
        """Source path of each image, relative to ``source_root``."""
        return (self.root / self.split / "files.txt").read_text().splitlines()

    @property
    def source_root(self) -> Path:
        return Path(self.manifest["source"]["root"])

    def source_path(self, index: int) -> Path:
        return self.source_root / self.files[index]

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images at ``indices`` (ascending order reads the file front to back) into ``out``."""
        return np.take(self.images, indices, axis=0, out=out)


def check_split_name(name: object, where: str) -> str:
    """``name`` if it is a plain folder name; a split name read from a manifest or given by a
    user becomes a path under the store, so ``../x``, ``/x`` or ``a/b`` must never pass."""
    if not isinstance(name, str) or not SPLIT_NAME.fullmatch(name) or name in (".", ".."):
        raise AlexNetError(f"split name {name!r} in {where} is not a plain folder name (letters, "
                           "digits, '_', '-', '.'); the store may be damaged or not made by "
                           "alexnet prepare: prepare it again into a new folder")
    return name


def is_store_folder(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` holds a store's manifest, finished or not."""
    return (Path(root) / MANIFEST).is_file()


def store_path(data: str, store_dir: str | os.PathLike[str], image_size: int) -> Path:
    """Where ``alexnet train`` prepares ``data`` (an image folder or ``torchvision:NAME``)
    into a store: ``store_dir/<folder name>-<image_size>``."""
    name = data.split(":", 1)[1] if data.startswith("torchvision:") else Path(data).resolve().name
    return Path(store_dir) / f"{name}-{image_size}"


def data_from_config(config: dict[str, Any]) -> str | None:
    """The data a run trained on, from its config.json: the store ``alexnet train`` prepared
    from ``data`` when it is still there (no decoding needed), else ``data`` itself.
    Relative paths are taken from the current folder, as training did."""
    data = config.get("data")
    if not isinstance(data, str) or not data:
        return None
    if is_store_folder(data) or "store_dir" not in config:
        return data
    store = store_path(data, str(config["store_dir"]), int(config.get("image_size", 256)))
    return str(store) if is_store_folder(store) else data


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """manifest.json, checked: format, plain split names, and finished (see ``prepare``)."""
    manifest = read_manifest_unchecked(root)
    if manifest.get("complete") is False:  # stores written before the flag are complete
        root = Path(root)
        source = manifest.get("source", {}).get("root", "SRC")
        raise AlexNetError(f"the store {root} is unfinished (alexnet prepare was interrupted); "
                           f"finish it by running the same command again: alexnet prepare "
                           f"{source} {root}")
    return manifest


def read_manifest_unchecked(root: str | os.PathLike[str]) -> dict[str, Any]:
    """manifest.json with its format and split names checked, finished or not."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        interrupted = any(root.glob(f"*/{PROGRESS_FILE}"))
        hint = " (interrupted: re-run alexnet prepare to finish)" if interrupted else ""
        raise AlexNetError(f"no prepared store at {root} ({MANIFEST} missing){hint}; "
                           f"run: alexnet prepare SRC {root}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AlexNetError(f"{path} cannot be read as JSON ({type(error).__name__}): the store "
                           "is damaged; prepare it again with alexnet prepare --overwrite") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise AlexNetError(f"{path} is not an alexnet store (format {found!r}, "
                           f"expected {FORMAT!r})")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise AlexNetError(f"{path} has no 'splits' table: the store is damaged; prepare it "
                           "again with alexnet prepare --overwrite")
    for name, entry in splits.items():
        check_split_name(name, str(path))
        if not isinstance(entry, dict) or not isinstance(entry.get("count"), int):
            raise AlexNetError(f"{path}: the entry of split {name!r} is damaged (no count); "
                               "prepare the store again with alexnet prepare --overwrite")
    if not isinstance(manifest.get("settings"), dict) or not isinstance(manifest.get("classes"), list):
        raise AlexNetError(f"{path} has no settings or classes: the store is damaged; prepare it "
                           "again with alexnet prepare --overwrite")
    return manifest


def open_store(root: str | os.PathLike[str], split: str = "train", *,
               unfinished_ok: bool = False) -> ImageStore:
    """Open one split of a prepared store, memory-mapped (nothing is read until used).
    ``unfinished_ok``: also while prepare is still adding splits (prepare's own use)."""
    root = Path(root)
    manifest = read_manifest_unchecked(root) if unfinished_ok else read_manifest(root)
    splits = manifest["splits"]
    if split not in splits:
        available = ", ".join(splits) or "none"
        interrupted = (root / split / PROGRESS_FILE).is_file()
        why = "its preparation was interrupted: re-run alexnet prepare" if interrupted else \
            f"it has: {available}"
        raise AlexNetError(f"split {split!r} not in store {root}; {why}")
    info = splits[split]
    try:
        count, size = int(info["count"]), int(manifest["image_size"])
        classes = len(manifest["classes"])
    except (KeyError, TypeError, ValueError) as error:
        raise AlexNetError(f"{root / MANIFEST} lacks a valid {short_reason(error)} entry: the store is "
                           "damaged; prepare it again with alexnet prepare --overwrite") from error
    images_path = root / split / "images.u8"
    expected = count * size * size * 3
    actual = images_path.stat().st_size if images_path.is_file() else -1
    if actual != expected:
        raise AlexNetError(f"{images_path} has {actual} bytes, expected {expected} "
                           f"({count} images of {size}x{size}x3): the store is damaged; re-run "
                           "alexnet prepare with --overwrite")
    if count == 0:
        images = np.zeros((0, size, size, 3), np.uint8)
    else:
        images = np.memmap(images_path, dtype=np.uint8, mode="r", shape=(count, size, size, 3))
    labels_path = root / split / "labels.npy"
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise AlexNetError(f"{labels_path} cannot be read ({short_reason(error)}): the store is "
                           "damaged; re-run alexnet prepare with --overwrite") from error
    if labels.shape != (count,) or labels.dtype != np.int64:
        raise AlexNetError(f"{labels_path} is {labels.dtype} {labels.shape}, "
                           f"expected int64 ({count},): re-run alexnet prepare with --overwrite")
    if count and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        bad = int(labels.max()) if int(labels.max()) >= classes else int(labels.min())
        raise AlexNetError(f"{labels_path} holds label {bad}, outside the store's {classes} classes "
                           "(0..{}): the store is damaged; re-run alexnet prepare with "
                           "--overwrite".format(classes - 1))
    return ImageStore(root, split, images, labels, manifest)


def file_sha256(path: Path, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def verify_store(root: str | os.PathLike[str]) -> list[str]:
    """Files whose sha256 differs from the manifest's (an empty list: the store is intact)."""
    root = Path(root)
    manifest = read_manifest(root)
    problems = []
    checked = [(root / split / name, digest) for split, info in manifest["splits"].items()
               for name, digest in info["sha256"].items()]
    if manifest.get("stats"):
        checked.append((root / STATS_FILE, manifest["stats"]["sha256"]))
    for path, digest in checked:
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems
