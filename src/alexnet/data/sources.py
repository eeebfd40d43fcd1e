"""Where images come from: folder trees, the ILSVRC-2012 layout, or torchvision datasets.

``open_source(src)`` lists, for every split, what to decode (a file, or an in-memory image
for datasets that torchvision holds in RAM, such as CIFAR-10) and its label. The class list
is decided once for all splits - sorted class ids, which for ImageNet wnids is the standard
ImageNet-1k index order - so a label means the same class in every split.

Layouts understood:
- ``SRC/{train,val,test}/<class>/<image>``: one split per folder (``validation`` = ``val``);
- ``SRC/<class>/<image>``: a single ImageFolder tree, prepared as the ``train`` split;
- a flat ILSVRC-2012 validation folder (``val/ILSVRC2012_val_00000001.JPEG`` ...) with a
  label file: the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_IDs, mapped
  to wnids by the devkit's ``meta.mat``), one wnid per line, Kaggle's
  ``LOC_val_solution.csv`` or torchvision's ``meta.bin``;
- ``torchvision:NAME`` (``imagenette``, ``cifar10``, ...): torchvision's dataset classes,
  downloaded with ``download=True`` when the user is online.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.classes import WNID, ClassHints, read_class_names_file, resolve_class_names
from alexnet.data.ilsvrc import (
    find_devkit_meta,
    find_val_label_file,
    missing_val_labels,
    read_val_labels,
)
from alexnet.errors import AlexNetError, short_reason, unknown_choice

# Folder names of splits, and the split name each becomes in the store.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


@dataclass
class SplitItems:
    """What one split holds: a reference and a label per image, in a fixed order."""

    refs: list[str]  # file path relative to Source.root, or "<dataset>/<split>/<index>"
    labels: np.ndarray  # int64 (N,)
    arrays: np.ndarray | None = None  # (N, H, W, 3) uint8 when the images are in memory
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (ref, reason) found by listing

    def __len__(self) -> int:
        return len(self.refs)

    def select(self, positions: np.ndarray) -> SplitItems:
        arrays = None if self.arrays is None else self.arrays[positions]
        return SplitItems([self.refs[i] for i in positions], self.labels[positions], arrays,
                          list(self.unusable))


@dataclass
class Source:
    """Images to prepare: class ids, their names, and the items of each split."""

    kind: str  # "folder", "ilsvrc" or "torchvision:<name>"
    root: Path  # refs of file items are relative to this folder
    classes: list[str]  # class ids in label order (wnids or folder names)
    class_names: list[str]  # human-readable names, same order
    splits: dict[str, SplitItems]
    imagenet_indices: list[int] | None = None  # ImageNet-1k index of each class, when known
    details: dict[str, Any] = field(default_factory=dict)  # label files used, etc.

    def path(self, ref: str) -> Path:
        return self.root / ref


# ----------------------------------------------------------------------------- folders


def open_source(
    src: str | os.PathLike[str],
    *,
    val_labels: str | os.PathLike[str] | None = None,
    devkit: str | os.PathLike[str] | None = None,
    class_names_file: str | os.PathLike[str] | None = None,
    download: bool = False,
    download_dir: str | os.PathLike[str] | None = None,
    splits: Iterable[str] | None = None,
) -> Source:
    """Find every image under ``src`` (a folder, or ``torchvision:NAME``) and its label.

    ``splits`` restricts the listing to those splits (an error if one is missing); without
    it, a flat folder other than ``val`` that has no labels (ILSVRC's test/) is left out.
    """
    text = os.fspath(src)
    wanted = None if splits is None else list(splits)
    if text.startswith("torchvision:"):
        root = Path(download_dir) if download_dir else Path("data") / "torchvision"
        source = torchvision_source(text.split(":", 1)[1], root, download=download)
        return _keep_splits(source, wanted)
    root = Path(text).expanduser()
    if not root.exists():
        raise AlexNetError(
            f"source not found: {root}; give a folder of class folders (CLASS/IMAGE), an "
            "ILSVRC-2012 folder with train/ and val/, or torchvision:NAME"
        )
    if not root.is_dir():
        raise AlexNetError(f"source {root} is a file; give the folder that holds the images")

    split_dirs = _split_folders(root)
    # classes come from every split folder, so that a store extended split by split agrees
    all_folder_classes = {c for folder in split_dirs.values() for c in _class_folder_names(folder)}
    if wanted is not None:
        absent = [s for s in wanted if s not in split_dirs]
        if absent:
            raise AlexNetError(f"split {absent[0]!r} not found in {root}; found: "
                               f"{', '.join(split_dirs)}")
        split_dirs = {s: split_dirs[s] for s in wanted}
    listings = {split: _list_folder(folder) for split, folder in split_dirs.items()}
    folder_classes = sorted(all_folder_classes | {c for lst in listings.values() for c in lst.class_files})
    if not folder_classes and all(not listing.flat_files for listing in listings.values()):
        raise AlexNetError(f"no images found under {root}: expected CLASS/IMAGE files or "
                           "train/CLASS/IMAGE and val/CLASS/IMAGE")

    hints = ClassHints()
    if class_names_file is not None:
        hints.update(read_class_names_file(Path(class_names_file)))
    devkit_dir = Path(devkit) if devkit is not None else None
    flat_labels: dict[str, list[str]] = {}
    details: dict[str, Any] = {}
    for split, listing in listings.items():
        if listing.flat_files and not listing.class_files:
            label_file = find_val_label_file(split_dirs[split], root, val_labels, devkit_dir)
            if label_file is None and split != "val" and wanted is None:
                details.setdefault("left_out", []).append(f"{split}: flat folder without labels")
                continue
            if label_file is None:
                raise missing_val_labels(split_dirs[split], len(listing.flat_files))
            meta = find_devkit_meta(label_file, root, devkit_dir)
            if meta is not None:
                hints.update(meta.names)
                hints.all_wnids = hints.all_wnids or meta.wnids
            names = [p.name for p in listing.flat_files]
            flat_labels[split] = read_val_labels(label_file, names, meta)
            details[f"{split}_labels"] = str(label_file)

    classes = sorted(set(folder_classes).union(*(set(w) for w in flat_labels.values())))
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, SplitItems] = {}
    for split, listing in listings.items():
        folder = split_dirs[split]
        if listing.flat_files and not listing.class_files and split not in flat_labels:
            continue  # left out above
        refs: list[str] = []
        labels: list[int] = []
        if split in flat_labels:
            for path, wnid in zip(listing.flat_files, flat_labels[split], strict=True):
                refs.append(_relative(path, root))
                labels.append(index[wnid])
            unusable = []
        else:
            for class_id in sorted(listing.class_files):
                for path in listing.class_files[class_id]:
                    refs.append(_relative(path, root))
                    labels.append(index[class_id])
            unusable = [(_relative(p, root), "file outside any class folder")
                        for p in listing.flat_files]
        splits[split] = SplitItems(refs, np.asarray(labels, dtype=np.int64), None, unusable)
        if not refs and not unusable:
            raise AlexNetError(f"split folder {folder} holds no files")

    names, imagenet_indices = resolve_class_names(classes, hints)
    kind = "ilsvrc" if flat_labels or (classes and all(WNID.match(c) for c in classes)) else "folder"
    missing = {s: sorted(set(classes) - set(lst.class_files)) for s, lst in listings.items()
               if lst.class_files and set(lst.class_files) != set(classes)}
    if missing:
        details["classes_missing_in_split"] = {s: m[:20] for s, m in missing.items()}
    return Source(kind, root, classes, names, splits, imagenet_indices, details)


def _keep_splits(source: Source, wanted: list[str] | None) -> Source:
    if wanted is None:
        return source
    for split in wanted:
        if split not in source.splits:
            raise AlexNetError(f"split {split!r} not in {source.kind}; it has: "
                               f"{', '.join(source.splits)}")
    source.splits = {s: source.splits[s] for s in wanted}
    return source


def _split_folders(root: Path) -> dict[str, Path]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    named = {SPLIT_FOLDERS[p.name]: p for p in subdirs if p.name in SPLIT_FOLDERS}
    if named:
        return named
    if subdirs:
        return {"train": root}  # root itself is one ImageFolder tree
    return {"val": root}  # a flat folder: only an ILSVRC validation folder makes sense


def _class_folder_names(folder: Path) -> list[str]:
    return [e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]


@dataclass
class _FolderListing:
    class_files: dict[str, list[Path]]  # class folder name -> files under it (recursive)
    flat_files: list[Path]  # files directly in the split folder


def _list_folder(folder: Path) -> _FolderListing:
    """Every non-hidden file, so that non-images are reported rather than silently ignored."""
    class_files: dict[str, list[Path]] = {}
    flat_files: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = _files_under(Path(entry.path))
            if files:
                class_files[entry.name] = files
        elif entry.is_file():
            flat_files.append(Path(entry.path))
    return _FolderListing(class_files, flat_files)


def _files_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return found


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ------------------------------------------------------------------------- torchvision


def _torchvision_imagenette(size: str) -> Callable[[Path, bool], dict[str, Any]]:
    def build(root: Path, download: bool) -> dict[str, Any]:
        from torchvision.datasets import Imagenette

        return {split: Imagenette(str(root), split=split, size=size, download=download)
                for split in ("train", "val")}

    return build


def _torchvision_cifar10(root: Path, download: bool) -> dict[str, Any]:
    from torchvision.datasets import CIFAR10

    return {"train": CIFAR10(str(root), train=True, download=download),
            "test": CIFAR10(str(root), train=False, download=download)}


TORCHVISION_DATASETS: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
    "imagenette": _torchvision_imagenette("full"),
    "imagenette-320px": _torchvision_imagenette("320px"),
    "imagenette-160px": _torchvision_imagenette("160px"),
    "cifar10": _torchvision_cifar10,
}


def torchvision_source(name: str, root: Path, *, download: bool = False) -> Source:
    """A torchvision dataset (downloaded into ``root`` when ``download``) as a Source."""
    if name not in TORCHVISION_DATASETS:
        raise unknown_choice("torchvision dataset", name, TORCHVISION_DATASETS)
    try:
        datasets = TORCHVISION_DATASETS[name](root, download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise AlexNetError(
            f"torchvision {name} not found under {root} ({short_reason(error)}): get it with "
            f"`alexnet prepare torchvision:{name} DEST --download` (needs the network), or "
            "`--download-dir DIR` where it already is"
        ) from error
    return source_from_datasets(f"torchvision:{name}", root, datasets)


def source_from_datasets(kind: str, root: Path, datasets: dict[str, Any]) -> Source:
    """Turn torchvision datasets (one per split) into a Source.

    Two kinds are understood: file-backed datasets (``samples`` / ``_samples`` lists of
    (path, label), e.g. ImageFolder and Imagenette) and in-memory ones (``data`` uint8
    (N, H, W, 3) and ``targets``, e.g. CIFAR-10).
    """
    first = next(iter(datasets.values()))
    classes = [str(c) for c in (getattr(first, "wnids", None) or first.classes)]
    named = [c[0] if isinstance(c, tuple) else str(c) for c in first.classes]
    root = Path(root).resolve()
    splits: dict[str, SplitItems] = {}
    for split, dataset in datasets.items():
        samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
        if samples is not None:
            refs = [_ref_under(Path(path), root) for path, _ in samples]
            labels = np.asarray([label for _, label in samples], dtype=np.int64)
            splits[split] = SplitItems(refs, labels)
        elif isinstance(getattr(dataset, "data", None), np.ndarray):
            data = np.ascontiguousarray(dataset.data)
            if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
                raise AlexNetError(f"{kind} {split}: data is {data.dtype} {data.shape}, "
                                   "expected uint8 (N, H, W, 3)")
            refs = [f"{kind.split(':')[-1]}/{split}/{i:06d}" for i in range(len(data))]
            splits[split] = SplitItems(refs, np.asarray(dataset.targets, dtype=np.int64), data)
        else:
            raise AlexNetError(f"{kind}: unsupported dataset type {type(dataset).__name__} "
                               "(no samples list or uint8 data array); save it as CLASS/IMAGE files")
    names, indices = resolve_class_names(classes)
    if indices is None:
        names = named
    return Source(kind, root, classes, names, splits, indices)


def _ref_under(path: Path, root: Path) -> str:
    path = path.resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()  # outside root: keep it absolute (root / absolute = absolute)


# ----------------------------------------------------------------------------- subsets


def subset(items: SplitItems, *, per_class: int | None = None, limit: int | None = None
           ) -> SplitItems:
    """At most ``per_class`` images of each class (the first ones), then at most ``limit`` in all,
    taken round-robin over the classes so that a small limit still covers every class."""
    positions = np.arange(len(items))
    if per_class is not None:
        positions = _first_per_class(items.labels, positions, per_class)
    if limit is not None and len(positions) > limit:
        positions = _round_robin(items.labels, positions, limit)
    if len(positions) == len(items):
        return items
    return items.select(np.sort(positions))


def _first_per_class(labels: np.ndarray, positions: np.ndarray, per_class: int) -> np.ndarray:
    rank = _rank_within_class(labels[positions])
    return positions[rank < per_class]


def _round_robin(labels: np.ndarray, positions: np.ndarray, limit: int) -> np.ndarray:
    rank = _rank_within_class(labels[positions])
    order = np.lexsort((labels[positions], rank))  # all first images, then all second, ...
    return positions[order[:limit]]


def _rank_within_class(labels: np.ndarray) -> np.ndarray:
    """For each item, how many items of its class come before it."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts
    return rank
