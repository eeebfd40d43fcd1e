"""Class ids and their human-readable names; ImageNet-1k indices of wnids.

Labels are the sorted class ids; for ImageNet wnids that is the ImageNet-1k index order, so
the names torchvision ships with its weights (``AlexNet_Weights.IMAGENET1K_V1.meta
["categories"]``, in index order) name any ImageNet subset once each wnid's index is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from alexnet.errors import AlexNetError

WNID = re.compile(r"^n\d{8}$")


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


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids in class-index order (sorted), as the package ships them
    (alexnet/data/imagenet_wnids.txt, from timm's ``imagenet_synsets.txt``)."""
    return resources.files("alexnet.data").joinpath("imagenet_wnids.txt").read_text().split()


def _packaged_wnids() -> list[str] | None:
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
