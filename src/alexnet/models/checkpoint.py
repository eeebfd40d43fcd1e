"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding plain containers and tensors only:

    format         "alexnet-checkpoint/1"
    model_name     registry name, e.g. "alexnet2012"
    model_options  the create_model options (num_classes, width, ...), so it rebuilds itself
    model          state_dict of the unwrapped, uncompiled model (no "module." / "_orig_mod.")
    classes        class ids in label order (wnids or folder names)
    class_names    human-readable names in the same order
    preprocess     {"image_size": 256, "crop_size": 224, "normalization": "mean_image" |
                    "channel", "mean": float tensor (3, S, S) or (3,), "std": (3,) tensor}
                   (pixel values in 0..255, what the evaluation views need)
    training       anything the trainer needs to resume (optimizer, scheduler, scaler,
                   epoch/step, RNG states, loader position, config, metrics); optional

The write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the destination: a process killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.errors import AlexNetError, short_reason
from alexnet.models import create_model
from alexnet.runtime.outputs import atomic_write, check_output_file

FORMAT = "alexnet-checkpoint/1"


def atomic_save(obj: Any, path: str | os.PathLike[str],
                inputs: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the new, never half
    (``alexnet.runtime.outputs.atomic_write``); ``path`` must not be one of ``inputs``."""
    atomic_write(path, lambda temporary: torch.save(obj, temporary), inputs=inputs)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


@dataclass
class Checkpoint:
    """What a checkpoint says about its model (everything but the training state)."""

    model_name: str
    model_options: dict[str, Any]
    classes: list[str]
    class_names: list[str]
    preprocess: dict[str, Any]
    path: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    info: Checkpoint,
    training: dict[str, Any] | None = None,
) -> None:
    atomic_save(
        {
            "format": FORMAT,
            "model_name": info.model_name,
            "model_options": dict(info.model_options),
            "model": unwrap(model).state_dict(),
            "classes": list(info.classes),
            "class_names": list(info.class_names),
            "preprocess": dict(info.preprocess),
            "training": training or {},
        },
        path,
    )


# what every alexnet checkpoint holds (save_checkpoint writes all of them), and their types
REQUIRED = {"model_name": str, "model_options": dict, "model": dict, "classes": list,
            "class_names": list, "preprocess": dict}
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's zip format / legacy pickle


def safe_load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
              what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors for a missing, damaged or
    foreign file; a file holding pickled Python objects (which could run code when
    unpickled) is refused, with advice to convert a trusted one."""
    path = Path(path)
    if not path.exists():
        raise AlexNetError(f"{what} not found: {path}")
    if path.is_dir():
        raise AlexNetError(f"{path} is a folder; give a {what} file (e.g. {path}/best.pt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if _looks_like_torch(path) and ("weights only load failed" in str(error).lower() or refused):
            named = f" ({refused.group(1)})" if refused else ""
            raise AlexNetError(f"refusing to load {path}: it holds pickled Python objects{named}, "
                               "which could run code; if you trust where it came from, convert it to plain "
                               f"tensors with `alexnet convert-checkpoint {path} OUT.pt --trust-source`; "
                               "never load a file you do not trust") from error
        raise AlexNetError(unreadable(path, error, what)) from error
    except Exception as error:  # truncated, not a torch file, unreadable
        raise AlexNetError(unreadable(path, error, what)) from error


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (``safe_load``), its format tag and keys checked."""
    path = Path(path)
    data = safe_load(path, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AlexNetError(f"{path} is not an alexnet checkpoint (no '{FORMAT}' format tag)")
    missing = [key for key, kind in REQUIRED.items() if not isinstance(data.get(key), kind)]
    if missing:
        raise AlexNetError(f"{path} is a damaged alexnet checkpoint: "
                           f"{', '.join(repr(k) for k in missing)} missing or of the wrong type; "
                           "use another checkpoint (e.g. a step-*.pt of the same run)")
    return data


def _looks_like_torch(path: Path) -> bool:
    """torch.save's zip archive or its legacy pickle, by the first bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC)


def unreadable(path: Path, error: BaseException, what: str = "checkpoint") -> str:
    """Why a file torch.load could not read is not a checkpoint, in words."""
    if isinstance(error, OSError):
        return f"cannot read {what} {path}: {error.strerror or short_reason(error)}"
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as os_error:
        return f"cannot read {what} {path}: {os_error.strerror}"
    if not head:
        return f"{what} {path} is empty (0 bytes): it was not written completely; use another one"
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return (f"{what} {path} is damaged or truncated ({short_reason(error, 90)}); "
                "use another one (e.g. a step-*.pt of the same run)")
    start = head.decode("latin-1")
    shown = "".join(c if c.isprintable() else "." for c in start)
    advice = "a .pt file written by alexnet train" if what == "checkpoint" else f"a PyTorch {what}"
    return f"cannot read {what} {path}: not a PyTorch file (it starts with {shown!r}); give {advice}"


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint was saved from, weights loaded, in eval mode."""
    data = read_checkpoint(path, map_location)
    info = Checkpoint(
        model_name=data["model_name"],
        model_options=dict(data["model_options"]),
        classes=list(data["classes"]),
        class_names=list(data["class_names"]),
        preprocess=dict(data["preprocess"]),
        path=Path(path),
        training=data.get("training", {}),
    )
    model = create_model(info.model_name, **info.model_options)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as error:
        raise AlexNetError(
            f"checkpoint {path} does not match {info.model_name} with {info.model_options}: "
            f"{short_reason(error)}"
        ) from error
    return model.eval(), info


def convert_trusted(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Re-save a checkpoint that holds pickled objects as plain tensors and containers, so
    that ``read_checkpoint`` (``weights_only=True``) reads it. UNSAFE on an untrusted file:
    unpickling ``source`` runs whatever code it names; only for files you trust.

    numpy arrays and scalars become tensors and Python numbers, a whole ``nn.Module`` its
    ``state_dict``, other objects their ``str``."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise AlexNetError(f"checkpoint not found: {source}")
    check_output_file(dest, inputs=[source], flag="OUT")
    try:
        data = torch.load(source, map_location="cpu", weights_only=False)
    except Exception as error:
        raise AlexNetError(unreadable(source, error)) from error
    atomic_save(_plain(data), dest, inputs=[source])
    torch.load(dest, map_location="cpu", weights_only=True)  # what it is for: a safe load works
    return dest


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, torch.Tensor | str | bytes | bool | int | float | type(None)):
        return value
    if isinstance(value, nn.Module):
        return dict(value.state_dict())
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {(_plain(k) if isinstance(k, np.generic) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---- safetensors: the weights without pickle (`alexnet export --format safetensors`, a run's
# model.safetensors): the state_dict, ``preprocess.*`` tensors and JSON metadata


def metadata(info: Checkpoint) -> dict[str, str]:
    """String metadata: model, options, classes and the non-tensor preprocessing."""
    pre = {k: v for k, v in info.preprocess.items() if not isinstance(v, torch.Tensor)}
    return {
        "format": "alexnet-export/1",
        "model_name": info.model_name,
        "model_options": json.dumps(info.model_options),
        "classes": json.dumps(list(info.classes)),
        "class_names": json.dumps(list(info.class_names)),
        "preprocess": json.dumps(pre),
    }


def save_safetensors(path: str | os.PathLike[str], model: nn.Module, info: Checkpoint) -> None:
    """Write ``model`` (unwrapped from DDP / compile) with its metadata to ``path``."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in unwrap(model).state_dict().items()}
    for key, value in info.preprocess.items():
        if isinstance(value, torch.Tensor):
            tensors[f"preprocess.{key}"] = value.float().contiguous()
    save_file(tensors, str(path), metadata=metadata(info))


def load_safetensors(path: str | os.PathLike[str]) -> tuple[nn.Module, Checkpoint]:
    """Rebuild a model exported with ``--format safetensors`` (eval mode)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "alexnet-export/1":
            raise AlexNetError(f"{path} is not an alexnet safetensors export (no 'alexnet-export/1' tag)")
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    preprocess = json.loads(meta["preprocess"])
    preprocess.update({k.removeprefix("preprocess."): v for k, v in tensors.items() if k.startswith("preprocess.")})
    info = Checkpoint(meta["model_name"], json.loads(meta["model_options"]), json.loads(meta["classes"]),
                      json.loads(meta["class_names"]), preprocess, Path(path))
    model = create_model(info.model_name, **info.model_options)
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("preprocess.")})
    return model.eval(), info
