"""ILSVRC-2012 validation labels: the devkit's files and the common variants.

The validation images come as one flat folder (``ILSVRC2012_val_00000001.JPEG`` ...); line i
of a label file labels image i. Understood: the devkit's
``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_IDs 1..1000, which are not in
sorted-wnid order, mapped through the devkit's ``data/meta.mat``), one wnid per line,
Kaggle's ``LOC_val_solution.csv`` and torchvision's ``meta.bin``.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from alexnet.data.classes import WNID
from alexnet.errors import AlexNetError

VAL_LABEL_FILES = (
    "ILSVRC2012_validation_ground_truth.txt",
    "LOC_val_solution.csv",
    "imagenet_2012_validation_synset_labels.txt",
    "meta.bin",
)
DEVKIT_URL_HINT = "ILSVRC2012_devkit_t12.tar.gz from the ILSVRC 2012 downloads at image-net.org"
ILSVRC_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})")


def missing_val_labels(folder: Path, count: int) -> AlexNetError:
    return AlexNetError(
        f"{folder} holds {count} files but no class folders, and no label file was found: "
        f"put ILSVRC2012_validation_ground_truth.txt and meta.mat (data/ of {DEVKIT_URL_HINT}) "
        "in it, or prepare it with `alexnet prepare SRC DEST --devkit DIR` or `--val-labels FILE` "
        "(one wnid per line in file order, the devkit file, or LOC_val_solution.csv)"
    )


def find_val_label_file(folder: Path, root: Path, explicit: str | os.PathLike[str] | None,
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


def find_devkit_meta(label_file: Path, root: Path, devkit: Path | None) -> DevkitMeta | None:
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
                f"data/meta.mat ({DEVKIT_URL_HINT}): put meta.mat beside it or prepare with `alexnet prepare SRC DEST --devkit DIR`"
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
