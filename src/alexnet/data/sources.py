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

import csv
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import AlexNetError, unknown_choice

# Folder names of splits, and the split name each becomes in the store.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
VAL_LABEL_FILES = (
    "ILSVRC2012_validation_ground_truth.txt",
    "LOC_val_solution.csv",
    "imagenet_2012_validation_synset_labels.txt",
    "meta.bin",
)
DEVKIT_URL_HINT = "ILSVRC2012_devkit_t12.tar.gz from the ILSVRC 2012 downloads at image-net.org"
WNID = re.compile(r"^n\d{8}$")
ILSVRC_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})")


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
            label_file = _find_val_label_file(split_dirs[split], root, val_labels, devkit_dir)
            if label_file is None and split != "val" and wanted is None:
                details.setdefault("left_out", []).append(f"{split}: flat folder without labels")
                continue
            if label_file is None:
                raise _missing_val_labels(split_dirs[split], len(listing.flat_files))
            meta = _find_devkit_meta(label_file, root, devkit_dir)
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


# ------------------------------------------------------------- ILSVRC validation labels


def _missing_val_labels(folder: Path, count: int) -> AlexNetError:
    return AlexNetError(
        f"{folder} holds {count} files but no class folders, and no label file was found: "
        f"put ILSVRC2012_validation_ground_truth.txt and meta.mat (data/ of {DEVKIT_URL_HINT}) "
        "in it or pass --devkit DIR, or pass --val-labels FILE (one wnid per line in file "
        "order, the devkit file, or LOC_val_solution.csv)"
    )


def _find_val_label_file(folder: Path, root: Path, explicit: str | os.PathLike[str] | None,
                         devkit: Path | None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise AlexNetError(f"--val-labels file not found: {path}")
        return path
    for directory in _devkit_candidates(folder, root, devkit):
        for name in VAL_LABEL_FILES:
            if (directory / name).is_file():
                return directory / name
    return None


def _devkit_candidates(folder: Path, root: Path, devkit: Path | None) -> list[Path]:
    candidates = [folder, folder.parent, root]
    for base in (root, folder.parent):
        candidates += [base / "ILSVRC2012_devkit_t12" / "data", base / "devkit" / "data"]
    if devkit is not None:
        candidates = [devkit, devkit / "data", *candidates]
    return candidates


@dataclass
class DevkitMeta:
    """The ILSVRC-2012 devkit's class table: ILSVRC2012_ID -> wnid, and the names."""

    id_to_wnid: dict[int, str]
    names: dict[str, str]  # wnid -> first name ("tench")

    @property
    def wnids(self) -> list[str]:
        return sorted(self.id_to_wnid.values())


def _find_devkit_meta(label_file: Path, root: Path, devkit: Path | None) -> DevkitMeta | None:
    for directory in [label_file.parent, *_devkit_candidates(label_file.parent, root, devkit)]:
        if (directory / "meta.mat").is_file():
            return read_devkit_meta(directory / "meta.mat")
    return None


def read_devkit_meta(path: Path) -> DevkitMeta:
    """The 1000 leaf synsets of the devkit's ``meta.mat`` (the layout torchvision reads)."""
    try:
        from scipy import io as scipy_io
    except ImportError as error:
        raise AlexNetError(f"reading {path} needs scipy: pip install scipy") from error
    try:
        synsets = scipy_io.loadmat(str(path), squeeze_me=True)["synsets"]
    except Exception as error:
        raise AlexNetError(f"cannot read devkit meta {path}: {error}") from error
    id_to_wnid: dict[int, str] = {}
    names: dict[str, str] = {}
    for row in synsets:
        ilsvrc_id, wnid, words, num_children = int(row[0]), str(row[1]), str(row[2]), int(row[4])
        if num_children == 0:  # the leaves are the 1000 classes
            id_to_wnid[ilsvrc_id] = wnid
            names[wnid] = words.split(",")[0].strip()
    return DevkitMeta(id_to_wnid, names)


def read_val_labels(label_file: Path, file_names: list[str], meta: DevkitMeta | None) -> list[str]:
    """The wnid of each validation file (``file_names`` sorted), from any supported label file."""
    if label_file.name == "meta.bin":  # torchvision's parse of the devkit: (wnid->names, val_wnids)
        import torch

        wnids = list(torch.load(label_file, weights_only=True)[1])
        return _labels_by_order(label_file, file_names, wnids)
    if label_file.suffix == ".csv":
        return _labels_from_kaggle_csv(label_file, file_names)
    lines = [line.split()[0] for line in label_file.read_text().splitlines() if line.strip()]
    if lines and all(WNID.match(token) for token in lines):
        return _labels_by_number(label_file, file_names, lines)
    if lines and all(token.isdigit() for token in lines):
        if meta is None:
            raise AlexNetError(
                f"{label_file} holds ILSVRC2012_IDs; their wnids are listed in the devkit's "
                f"data/meta.mat ({DEVKIT_URL_HINT}): put meta.mat beside it or pass --devkit DIR"
            )
        try:
            wnids = [meta.id_to_wnid[int(token)] for token in lines]
        except KeyError as error:
            raise AlexNetError(f"{label_file}: ILSVRC2012_ID {error} is not in meta.mat") from error
        return _labels_by_number(label_file, file_names, wnids)
    raise AlexNetError(f"{label_file}: expected one wnid (n01440764) or one ILSVRC2012_ID per "
                       "line")


def _labels_by_number(label_file: Path, file_names: list[str], wnids: list[str]) -> list[str]:
    """Line i (1-based) labels ILSVRC2012_val_<i>; other names go by sorted order."""
    numbers = [ILSVRC_VAL_NUMBER.search(name) for name in file_names]
    if all(numbers):
        labels = []
        for name, match in zip(file_names, numbers, strict=True):
            number = int(match.group(1))  # type: ignore[union-attr]
            if number > len(wnids):
                raise AlexNetError(f"{label_file} has {len(wnids)} lines; no label for {name}")
            labels.append(wnids[number - 1])
        return labels
    return _labels_by_order(label_file, file_names, wnids)


def _labels_by_order(label_file: Path, file_names: list[str], wnids: list[str]) -> list[str]:
    if len(wnids) != len(file_names):
        raise AlexNetError(f"{label_file} has {len(wnids)} labels for {len(file_names)} files; "
                           "they must match one to one in sorted file order")
    return list(wnids)


def _labels_from_kaggle_csv(label_file: Path, file_names: list[str]) -> list[str]:
    with label_file.open(newline="") as f:
        rows = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    labels = []
    for name in file_names:
        stem = name.rsplit(".", 1)[0]
        if stem not in rows:
            raise AlexNetError(f"{label_file} has no row for {name}")
        labels.append(rows[stem])
    return labels


# ----------------------------------------------------------------------------- class names


@dataclass
class ClassHints:
    """What is known about class ids beyond their folder names."""

    names: dict[str, str] = field(default_factory=dict)  # class id -> human-readable name
    all_wnids: list[str] | None = None  # the 1000 ImageNet wnids, when some file lists them

    def update(self, other: ClassHints | dict[str, str]) -> None:
        if isinstance(other, ClassHints):
            self.names.update(other.names)
            self.all_wnids = other.all_wnids or self.all_wnids
        else:
            self.names.update(other)


def read_class_names_file(path: Path) -> ClassHints:
    """``ID NAME[, MORE NAMES]`` per line (synset_words.txt / LOC_synset_mapping.txt style)."""
    if not path.is_file():
        raise AlexNetError(f"class names file not found: {path}")
    names: dict[str, str] = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise AlexNetError(f"{path}:{line_number}: expected 'CLASS_ID NAME', got {line!r}")
        names[parts[0]] = parts[1].split(",")[0].strip()
    ids = list(names)
    wnids = ids if len(ids) == 1000 and all(WNID.match(i) for i in ids) else None
    return ClassHints(names, sorted(wnids) if wnids else None)


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k names in index order, as torchvision ships them with its weights."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def _packaged_wnids() -> list[str] | None:
    """The 1000 sorted ImageNet-1k wnids the package ships (alexnet/imagenet_wnids.txt)."""
    try:
        from alexnet.pretrained import imagenet_wnids
    except ImportError:
        return None
    wnids = imagenet_wnids()
    return wnids if len(wnids) == 1000 else None


def _imagenette_names() -> dict[str, str]:
    from torchvision.datasets import Imagenette

    return {wnid: names[0] for wnid, names in Imagenette._WNID_TO_CLASS.items()}


def resolve_class_names(classes: list[str], hints: ClassHints | None = None
                        ) -> tuple[list[str], list[int] | None]:
    """Human-readable names and ImageNet-1k indices of ``classes``, as far as they are known.

    The ImageNet index of a wnid is its position among the 1000 sorted wnids, taken from a
    devkit meta.mat or names file when given, the classes themselves when they are 1000, or
    the list the package ships; the Imagenette wnids are also known from torchvision's
    Imagenette names. Unknown names fall back to the id.
    """
    hints = hints or ClassHints()
    if not classes or not all(WNID.match(c) for c in classes):
        return [hints.names.get(c, c) for c in classes], None
    categories = imagenet_categories()
    all_wnids = (hints.all_wnids or (sorted(classes) if len(classes) == len(categories) else None)
                 or _packaged_wnids())
    indices: list[int] | None = None
    if all_wnids is not None and set(classes) <= set(all_wnids):
        position = {w: i for i, w in enumerate(all_wnids)}
        indices = [position[c] for c in classes]
    else:
        imagenette = _imagenette_names()
        if set(classes) <= set(imagenette):
            indices = [categories.index(imagenette[c]) for c in classes]
    if indices is not None:
        return [categories[i] for i in indices], indices
    return [hints.names.get(c, c) for c in classes], None


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
            f"torchvision {name} not found under {root} ({str(error).splitlines()[0]}): pass "
            "--download (needs the network) or --download-dir DIR where it already is"
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


def describe_splits(source: Source, splits: Iterable[str]) -> str:
    return ", ".join(f"{s}: {len(source.splits[s])}" for s in splits)
