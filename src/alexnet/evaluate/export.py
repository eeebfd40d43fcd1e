"""Export a model for use outside this package: ONNX, safetensors or TorchScript.

Every format carries what is needed to use the model: its name and options, the class ids
and names, and the preprocessing (image size, crop size, normalisation; pixels 0..255).
The exported network takes the preprocessed float crop ``(B, 3, crop, crop)`` and returns
logits ``(B, num_classes)``; the batch dimension is dynamic.

- ``onnx``: torch.onnx's exporter (torch.export based), one self-contained file; checked
  against PyTorch with onnxruntime right after writing (max abs difference of the logits).
- ``safetensors``: the weights (``load_state_dict``-ready) plus ``preprocess.*`` tensors
  and JSON metadata; ``load_safetensors`` rebuilds the model.
- ``torchscript``: ``torch.jit.trace``; checked by reloading. TorchScript is deprecated in
  recent PyTorch (torch.export is its successor) but still what many C++ and mobile
  runtimes load.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import unknown_choice
from alexnet.evaluate.scoring import LoadedModel
from alexnet.models.checkpoint import Checkpoint, load_safetensors, metadata, save_safetensors
from alexnet.runtime.outputs import atomic_write, check_output_file

SUFFIXES = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".torchscript.pt"}
FORMATS = tuple(SUFFIXES)


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float | None  # exported vs PyTorch logits on the check batch
    seconds: float

    def summary(self) -> str:
        size = self.path.stat().st_size / 2**20
        check = "" if self.max_abs_diff is None else f"; max |exported - PyTorch| = {self.max_abs_diff:.3g}"
        return f"wrote {self.path} ({self.format}, {size:.1f} MiB) in {self.seconds:.1f} s{check}"


def example_batch(info: Checkpoint, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    """A normalised-looking (B, 3, crop, crop) input for tracing and for the check."""
    crop = int(info.preprocess.get("crop_size", 224))
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, crop, crop, generator=generator)


def default_path(loaded: LoadedModel, fmt: str) -> Path:
    base = loaded.info.path.with_suffix("") if loaded.info.path else Path(loaded.name.replace(" ", "-").lower())
    return base.with_name(base.name + SUFFIXES[fmt])


def export_model(loaded: LoadedModel, fmt: str, out: str | os.PathLike[str] | None = None,
                 check: bool = True) -> ExportResult:
    """Write ``loaded`` in ``fmt`` to ``out`` (default: beside the checkpoint) and check it."""
    if fmt not in EXPORTERS:
        raise unknown_choice("export format", fmt, FORMATS)
    path = Path(out) if out is not None else default_path(loaded, fmt)
    # before the export: never over the checkpoint it reads (also not through a hard link)
    inputs = [loaded.info.path]
    check_output_file(path, inputs=inputs, flag="--out")
    model = loaded.model.eval().float()
    start = time.perf_counter()
    difference: list[float | None] = []

    def write(temporary: Path) -> None:  # written and checked under a temporary name
        difference.append(EXPORTERS[fmt](model, loaded.info, temporary, check))

    atomic_write(path, write, inputs=inputs, flag="--out")
    return ExportResult(path, fmt, difference[0], time.perf_counter() - start)


def _export_onnx(model: nn.Module, info: Checkpoint, path: Path, check: bool) -> float | None:
    import onnx

    example = example_batch(info)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about its internals, not about the model
        torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False, external_data=False,
                          input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: batch},))
    proto = onnx.load(str(path))
    for key, value in metadata(info).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return verify_onnx(path, model, example_batch(info, batch_size=3, seed=1)) if check else None


def verify_onnx(path: str | os.PathLike[str], model: nn.Module, images: torch.Tensor) -> float:
    """Max abs difference between onnxruntime's and PyTorch's logits for ``images``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.inference_mode():
        expected = model(images).numpy()
    return float(np.abs(exported - expected).max())


def _export_safetensors(model: nn.Module, info: Checkpoint, path: Path, check: bool) -> float | None:
    save_safetensors(path, model, info)
    if not check:
        return None
    reloaded, _ = load_safetensors(path)
    images = example_batch(info, batch_size=3, seed=1)
    with torch.inference_mode():
        return float((reloaded(images) - model(images)).abs().max())


def _export_torchscript(model: nn.Module, info: Checkpoint, path: Path, check: bool) -> float | None:
    example = example_batch(info)
    extra = {"alexnet.json": json.dumps(metadata(info))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": see module doc
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files=extra)
        if not check:
            return None
        reloaded = torch.jit.load(str(path))
    images = example_batch(info, batch_size=3, seed=1)
    with torch.inference_mode():
        return float((reloaded(images) - model(images)).abs().max())


EXPORTERS: dict[str, Callable[[nn.Module, Checkpoint, Path, bool], float | None]] = {
    "onnx": _export_onnx,
    "safetensors": _export_safetensors,
    "torchscript": _export_torchscript,
}
