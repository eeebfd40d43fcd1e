"""An int8 ONNX graph (``alexnet export --format onnx --int8``) as a model the scorer can run.

``alexnet.evaluate.quantize`` writes the graph; this module reads it back for ``alexnet evaluate``,
``predict`` and ``features``: ``load_onnx(path)`` returns an ``OnnxNetwork`` (an
``nn.Module`` whose forward runs an onnxruntime session on the CPU) and the same
``Checkpoint`` facts a ``.pt`` file gives, so ``ScoringModel`` cuts the identical views with
the identical normalisation (the mean image travels in the file's metadata).

The graph's inputs and outputs:

    images  float32 (B, 3, crop, crop), normalised as the checkpoint's ``preprocess`` says
    logits  float32 (B, num_classes)                       (the ``fc8`` "layer")
    fc7     float32 (B, 4096) after its ReLU, when present (§6.1's feature layer)

Only those layers can be read from the graph: everything else is fused into int8 kernels.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.checkpoint import Checkpoint

INT8_FORMAT = "alexnet-int8-onnx/1"
LOGITS = "logits"
# The layer names of the graph's outputs, as ``alexnet features --layer`` calls them.
OUTPUT_LAYERS = {LOGITS: "fc8", "fc7": "fc7"}


def encode_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """float32 tensors as JSON text (shape + base64 bytes) for an ONNX metadata entry."""
    return json.dumps({name: {"shape": list(t.shape),
                              "data": base64.b64encode(t.float().contiguous().numpy().tobytes()).decode()}
                       for name, t in tensors.items()})


def decode_tensors(text: str) -> dict[str, torch.Tensor]:
    decoded = {}
    for name, entry in json.loads(text).items():
        array = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.float32).reshape(entry["shape"])
        decoded[name] = torch.from_numpy(array.copy())
    return decoded


def is_onnx(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == ".onnx"


class _Tap(nn.Identity):
    """Stands for one graph output, so a forward hook (``alexnet features``) sees it."""


class OnnxNetwork(nn.Module):
    """float (B, 3, crop, crop) -> float32 logits through an onnxruntime CPU session.

    It has no parameters: ``.to()`` and ``.eval()`` are no-ops, and bf16 autocast does not
    apply (the scorer reports its precision as ``int8``).
    """

    precision = "int8"

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        super().__init__()
        onnxruntime = _runtime("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        # no busy-waiting between runs: the scorer's torch views run in between, and spinning
        # onnxruntime threads would take their cores (docs/evaluation.md, "Sharing and int8")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.taps = nn.ModuleDict({OUTPUT_LAYERS.get(name, name): _Tap() for name in self.output_names})

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """The layers this graph exposes (``alexnet features --layer``): its outputs only."""
        return list(self.taps.items())

    @property
    def feature_note(self) -> str:
        return (f"an int8 ONNX graph ({self.path.name}) exposes only {', '.join(self.taps)}; "
                "use the float checkpoint for other layers")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise AlexNetError(f"{self.path}: the int8 ONNX model runs on the CPU only; use --device cpu")
        outputs = self.session.run(None, {self.input_name: x.detach().float().contiguous().numpy()})
        results = {name: self.taps[OUTPUT_LAYERS.get(name, name)](torch.from_numpy(value))
                   for name, value in zip(self.output_names, outputs, strict=True)}
        return results[LOGITS]


def _runtime(name: str) -> Any:
    """onnx / onnxruntime, which the ``export`` extra installs, with a one-line error without."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise AlexNetError(f"int8 ONNX models need {name}: pip install 'alexnet[export]'") from error


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata entries of an ONNX file, with a one-line error for a foreign file."""
    onnx = _runtime("onnx")
    path = Path(path)
    if not path.is_file():
        raise AlexNetError(f"model not found: {path}")
    try:
        # the weights are not needed here; the session reads the file itself
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # not protobuf, truncated
        raise AlexNetError(f"cannot read ONNX file {path}: {str(error).splitlines()[0][:200]}") from error
    return {p.key: p.value for p in proto.metadata_props}


def checkpoint_info(meta: dict[str, str], path: Path) -> Checkpoint:
    preprocess: dict[str, Any] = json.loads(meta["preprocess"])
    preprocess.update(decode_tensors(meta["preprocess_tensors"]))
    info = Checkpoint(meta["model_name"], json.loads(meta["model_options"]), json.loads(meta["classes"]),
                      json.loads(meta["class_names"]), preprocess, path)
    info.training = {"quantization": json.loads(meta.get("quantization", "{}"))}
    return info


def load_onnx(path: str | os.PathLike[str], threads: int = 0) -> tuple[OnnxNetwork, Checkpoint]:
    """The int8 graph of ``alexnet export --format onnx --int8`` with its checkpoint facts."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != INT8_FORMAT:
        kind = ("a float ONNX export (it has no preprocessing tensors)"
                if meta.get("format") == "alexnet-export/1" else "not an alexnet ONNX export")
        raise AlexNetError(f"{path} is {kind}; evaluate the checkpoint, or write an int8 graph with "
                           "alexnet export CKPT --format onnx --int8")
    return OnnxNetwork(path, threads), checkpoint_info(meta, path)
