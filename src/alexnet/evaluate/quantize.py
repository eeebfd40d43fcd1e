"""int8 inference on the CPU: ``alexnet export CKPT --format onnx --int8``.

Static post-training quantisation with onnxruntime's quantisation tools (the choice and its
measurement: docs/evaluation.md, "Sharing and int8"):

1. the float network is exported to ONNX (torch.onnx, torch.export based) with a second
   output, ``fc7`` after its ReLU (§6.1's feature layer), so ``alexnet features`` can read
   it from the int8 graph too;
2. the activation ranges are calibrated on a few hundred training images read from the
   store (or an image folder) through the scorer's own centre view, so calibration sees
   exactly the inputs evaluation will feed (same crop, same mean image / std);
3. ``quantize_static``: weights int8 per output channel (symmetric), activations uint8 per
   tensor (the u8 x s8 products AVX-512 VNNI's ``vpdpbusd`` multiplies), QDQ format, which
   onnxruntime fuses into int8 convolutions and matrix products;
4. the int8 graph is checked against the float model on held-out images of the calibration
   split (top-1 agreement); below ``min_agreement`` the export is refused with the numbers.

The preprocessing (mean image or channel mean, std, sizes) and the class names go into the
graph's metadata, so ``alexnet evaluate | predict | features model.int8.onnx`` score it
through ``ScoringModel`` like a checkpoint (``alexnet.evaluate.onnx_model``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.data.store import data_from_config
from alexnet.errors import AlexNetError, unknown_choice
from alexnet.evaluate.export import example_batch
from alexnet.evaluate.inference import feature_module
from alexnet.evaluate.inputs import ImageSource, open_images, spread_indices
from alexnet.evaluate.onnx_model import INT8_FORMAT, LOGITS, OnnxNetwork, encode_tensors, load_onnx
from alexnet.evaluate.scoring import LoadedModel, ScoringModel
from alexnet.models.checkpoint import metadata
from alexnet.runtime.outputs import atomic_write, check_output_file

INT8_SUFFIX = ".int8.onnx"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
FEATURE_LAYER = "fc7"


@dataclass
class QuantizeConfig:
    calibration: str | None = None  # store or image folder; default: the run's training data
    split: str = "train"
    images: int = 300  # calibration images, classes in turn
    check_images: int = 200  # held-out images of the same split for the agreement check
    method: str = "minmax"
    min_agreement: float = 0.9  # int8 vs float top-1 agreement below this: refused
    batch_size: int = 50


@dataclass
class QuantizeResult:
    path: Path
    calibration: str
    calibration_images: int
    check_images: int
    agreement: float  # int8 top-1 == float top-1, fraction of the check images
    max_abs_diff: float  # of the logits on the check images
    seconds: float

    def summary(self) -> str:
        size = self.path.stat().st_size / 2**20
        return (f"wrote {self.path} (onnx int8, {size:.1f} MiB) in {self.seconds:.1f} s; calibrated on "
                f"{self.calibration_images} images of {self.calibration}; top-1 agrees with the float "
                f"model on {self.agreement:.1%} of {self.check_images} held-out images "
                f"(max |int8 - float| logit {self.max_abs_diff:.3g})")


def default_int8_path(loaded: LoadedModel) -> Path:
    base = loaded.info.path.with_suffix("") if loaded.info.path else Path(loaded.name.replace(" ", "-").lower())
    return base.with_name(base.name + INT8_SUFFIX)


def calibration_data(loaded: LoadedModel, config: QuantizeConfig) -> tuple[str, str]:
    """(data, split): the one given, else the training data named in the checkpoint's config."""
    if config.calibration is not None:
        return config.calibration, config.split
    train_config = loaded.info.training.get("config") or {}
    data = data_from_config(train_config)
    if data is None or not Path(data).exists():
        where = f" (its training data {data} is not here)" if data else ""
        raise AlexNetError(f"{loaded.name}: no calibration data{where}; pass --calibration DIR, a store "
                           "or image folder with a few hundred training images")
    return data, str(train_config.get("train_split", config.split))


def open_calibration(data: str, split: str, image_size: int) -> ImageSource:
    """The calibration images, with a one-line error naming --calibration for a bad folder."""
    try:
        source = open_images(data, split, image_size)
    except AlexNetError as error:
        raise AlexNetError(f"--calibration {data}: {error}") from error
    return source


def calibration_views(scorer: ScoringModel, source: ImageSource, batch_size: int) -> list[np.ndarray]:
    """The scorer's centre views of every readable image of ``source``: float32
    (B, 3, crop, crop) arrays, normalised exactly as evaluation will normalise them."""
    views = []
    with torch.inference_mode():
        for batch in source.batches(batch_size):
            views.append(scorer.views(batch.images, "center").contiguous().numpy())
    if not views:
        raise AlexNetError(f"--calibration {source.name}: none of its images could be read")
    return views


def _reader(views: list[np.ndarray], input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(views)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Reader()


class _WithFeatures(nn.Module):
    """The network with ``fc7`` (after its ReLU) as a second output, read by a forward hook."""

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        hook = self.layer.register_forward_hook(lambda _m, _i, output: captured.append(output))
        try:
            logits = self.model(x)
        finally:
            hook.remove()
        return logits, captured[0].flatten(1)


def _float_onnx(loaded: LoadedModel, path: Path) -> list[str]:
    """The float network as ONNX with its outputs: logits, and fc7 when the model has it."""
    model = loaded.model.eval().float()
    try:
        layer = feature_module(model, FEATURE_LAYER) if hasattr(model, "named_layers") else None
    except AlexNetError:
        layer = None
    network: nn.Module = _WithFeatures(model, layer) if layer is not None else model
    outputs = [LOGITS, FEATURE_LAYER] if layer is not None else [LOGITS]
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about its internals, not about the model
        torch.onnx.export(network, (example_batch(loaded.info),), str(path), dynamo=True, verbose=False,
                          external_data=False, input_names=["images"], output_names=outputs,
                          dynamic_shapes=({0: batch},))
    import onnx

    proto = onnx.load(str(path))
    if _square_root_powers(proto):
        onnx.save(proto, str(path))
    return outputs


def _square_root_powers(proto: Any) -> int:
    """Rewrite ``Pow(s, -0.75)`` (LRN's ``s ** -beta`` with the paper's beta, §3.3) as
    ``1 / (sqrt(s) * sqrt(sqrt(s)))``: onnxruntime's float Pow calls ``pow`` per element and
    took 37% of an int8 alexnet2012's time at 224 px (scripts/profile-int8.py); three
    square-root-speed passes give the same value (s >= k = 2 > 0). Returns the nodes rewritten."""
    from onnx import helper, numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes, rewritten = [], 0
    for node in proto.graph.node:
        exponent = constants.get(node.input[1]) if node.op_type == "Pow" else None
        if exponent is None or exponent.size != 1 or float(exponent.reshape(())) != -0.75:
            nodes.append(node)
            continue
        base, name = node.input[0], f"{node.name or node.output[0]}_sqrt"
        nodes += [helper.make_node("Sqrt", [base], [f"{name}_half"], name=f"{name}_half"),
                  helper.make_node("Sqrt", [f"{name}_half"], [f"{name}_quarter"], name=f"{name}_quarter"),
                  helper.make_node("Mul", [f"{name}_half", f"{name}_quarter"], [f"{name}_three_quarters"],
                                   name=f"{name}_three_quarters"),
                  helper.make_node("Reciprocal", [f"{name}_three_quarters"], list(node.output),
                                   name=f"{name}_reciprocal")]
        rewritten += 1
    if rewritten:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        kept = [t for t in proto.graph.initializer if t.name in used]  # the exponents go
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
    return rewritten


def _quantizable(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())


def quantize_model(loaded: LoadedModel, out: str | os.PathLike[str] | None = None,
                   config: QuantizeConfig | None = None, source: ImageSource | None = None) -> QuantizeResult:
    """Write the int8 ONNX graph of ``loaded`` (default: beside the checkpoint, ``*.int8.onnx``),
    calibrated on ``source`` when given (e.g. in-memory images), else on ``config.calibration``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config = config or QuantizeConfig()
    if config.method not in CALIBRATION_METHODS:
        raise unknown_choice("calibration method", config.method, CALIBRATION_METHODS)
    if config.images < 1 or config.check_images < 1:
        raise AlexNetError("--calibration-images and the check images must be positive")
    if isinstance(loaded.model, OnnxNetwork):
        raise AlexNetError(f"{loaded.name} is already an int8 ONNX model; quantise the float checkpoint")
    if _quantizable(loaded.model) == 0:
        raise AlexNetError(f"{loaded.name} ({loaded.info.model_name}) has no convolution or linear layer: "
                           "nothing to quantise to int8")
    path = Path(out) if out is not None else default_int8_path(loaded)
    # before the work: never over the checkpoint it reads, a folder, or an unwritable place
    inputs = [loaded.info.path, config.calibration]
    check_output_file(path, inputs=inputs, flag="--out", suffixes=[".onnx"])
    start = time.perf_counter()
    scorer = ScoringModel(loaded, torch.device("cpu"), "fp32")
    if source is None:
        data, split = calibration_data(loaded, config)
        source = open_calibration(data, split, scorer.image_size)
    else:
        data, split = source.name, config.split
    # calibration and check images: disjoint, each taking the classes in turn
    order = spread_indices(source.labels, config.images + config.check_images)
    calibration = source.subset(order[:config.images])
    check = source.subset(order[config.images:]) if len(order) > config.images else calibration

    views = calibration_views(scorer, calibration, config.batch_size)
    calibrated = sum(len(v) for v in views)
    with tempfile.TemporaryDirectory(prefix="alexnet-int8-") as work:
        float_path, prepared, quantized = (Path(work) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        _float_onnx(loaded, float_path)
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        reader = _reader(views, "images")
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[config.method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=method,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        proto = onnx.load(str(quantized))
        kinds = {node.op_type for node in proto.graph.node}
        if "QuantizeLinear" not in kinds:
            raise AlexNetError(f"{loaded.name}: onnxruntime quantised none of its layers; it cannot run as int8")
        settings = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                    "weights": "int8 per channel, symmetric", "activations": "uint8 per tensor",
                    "method": config.method, "calibration": {"data": str(data), "split": split,
                                                             "images": calibrated}}
        entries = {**metadata(loaded.info), "format": INT8_FORMAT,
                   "preprocess_tensors": encode_tensors({k: v for k, v in loaded.info.preprocess.items()
                                                         if isinstance(v, torch.Tensor)}),
                   "quantization": json.dumps(settings)}
        for key, value in entries.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(quantized))
        agreement, difference, count = compare(loaded, quantized, check, config.batch_size)
        if agreement < config.min_agreement:
            raise AlexNetError(
                f"{loaded.name} cannot be quantised faithfully: the int8 top-1 agrees with the float "
                f"model on only {agreement:.1%} of {count} held-out images (at least "
                f"{config.min_agreement:.0%} needed); try --calibration-method percentile or more "
                "--calibration-images, or keep the bf16 model")
        atomic_write(path, lambda temporary: shutil.copyfile(quantized, temporary), inputs=inputs, flag="--out")
    return QuantizeResult(path, f"{data} ({split})", calibrated, count, agreement, difference,
                          time.perf_counter() - start)


def compare(loaded: LoadedModel, int8_path: str | os.PathLike[str], source: ImageSource,
            batch_size: int = 50) -> tuple[float, float, int]:
    """(top-1 agreement, max |logit difference|, images) of the int8 graph vs the float model,
    both fed the scorer's centre views of ``source``."""
    network, info = load_onnx(int8_path)
    float_scorer = ScoringModel(loaded, torch.device("cpu"), "fp32")
    int8_scorer = ScoringModel(LoadedModel(network, info, Path(int8_path).name), torch.device("cpu"))
    agree, total, difference = 0, 0, 0.0
    for batch in source.batches(batch_size):
        views = float_scorer.views(batch.images, "center")
        reference, quantized = float_scorer.logits(views), int8_scorer.logits(views)
        agree += int((reference.argmax(1) == quantized.argmax(1)).sum())
        total += len(views)
        difference = max(difference, float((reference - quantized).abs().max()))
    if total == 0:
        raise AlexNetError(f"--calibration {source.name}: no readable images to check the int8 model on")
    return agree / total, difference, total

