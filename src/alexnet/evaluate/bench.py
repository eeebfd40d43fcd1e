"""``alexnet bench evaluate``: images/s of batched evaluation, ours vs the plain way, one run.

Baselines: ``torchvision.models.alexnet`` and each of our models in fp32, eager, NCHW, fed
float batches that are already normalised and cropped (so they do less work than the
candidates). The peer is torchvision's alexnet as an informed user runs it in plain PyTorch:
bf16 autocast where this machine has fast bf16 and channels_last, on the same ready float
batches. The candidates are what ``alexnet evaluate`` runs: a ``ScoringModel`` taking uint8
``(B, 256, 256, 3)`` batches, cutting the centre (or 10) views on the fly, channels_last,
bf16 autocast where the CPU/GPU has it. On a CPU each model is also quantised to an int8
ONNX graph (``alexnet.evaluate.quantize``, calibrated on the same random images: its speed, not its
accuracy, is measured here) and scored the same way. Rounds interleave baseline and
candidates so the load of a shared machine hits them alike; each figure is the median over
rounds. Batch-1 latency (what ``alexnet predict`` on one photo costs) is the median of
``latency_repeats`` single-image calls per candidate.

With ``checkpoint`` and ``data`` it measures a trained model instead: top-1 error and
images/s of ``alexnet evaluate`` on ``data`` (store or folder) for the checkpoint (bf16 where
available) and its int8 graph (given, or quantised on the run's training data), rounds
interleaved, plus both batch-1 latencies.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import evaluate
from alexnet.evaluate.inputs import FolderImages, open_images
from alexnet.evaluate.quantize import QuantizeConfig, calibration_data, quantize_model
from alexnet.evaluate.scoring import LoadedModel, ScoringModel, load_models
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint
from alexnet.models.pretrained import torchvision_preprocess
from alexnet.runtime.device import PRECISION_NAMES, autocast_dtype, resolve_device
from alexnet.runtime.machine import describe_cpu


@dataclass
class EvalBenchConfig:
    models: tuple[str, ...] = ("alexnet2012", "alexnet2014")
    batch_size: int = 128
    views: str = "center"
    device: str = "auto"
    precision: str = "auto"
    rounds: int = 3
    batches: int = 2  # timed batches per variant per round
    num_classes: int = 1000
    int8: bool = True  # also each model's int8 ONNX graph (CPU only)
    latency_repeats: int = 20  # batch-1 calls timed per candidate; 0: no latency
    checkpoint: str | None = None  # a trained model, measured on `data` (see the module doc)
    data: str | None = None
    split: str = "val"
    limit: int | None = None
    int8_model: str | None = None  # its int8 graph; None: quantised here

    def __post_init__(self) -> None:
        if not min(self.batch_size, self.rounds, self.batches) >= 1:
            raise AlexNetError("--batch-size, --rounds and --batches must be positive")


PEER = "torchvision peer"


@dataclass
class EvalBenchResult:
    config: EvalBenchConfig
    device: str
    precision: str
    peer_precision: str = "fp32"
    images_per_s: dict[str, list[float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch 1, median

    def median(self, name: str) -> float:
        return statistics.median(self.images_per_s[name])

    def latency(self, name: str) -> str:
        return f" (batch 1: {self.latency_ms[name]:6.1f} ms)" if name in self.latency_ms else ""

    def summary(self) -> str:
        c = self.config
        baseline = self.median("torchvision")
        lines = [f"evaluation ({c.views}), batch {c.batch_size}, {self.device}, median of {c.rounds} "
                 f"interleaved rounds x {c.batches} batches:",
                 f"  {'torchvision alexnet (fp32, eager, NCHW)':<44} {baseline:8.1f} images/s"]
        peer = self.median(PEER) if PEER in self.images_per_s else None
        if peer is not None:
            label = f"torchvision alexnet ({self.peer_precision}, channels_last)"
            lines.append(f"  {label:<44} {peer:8.1f} images/s  {peer / baseline:5.2f}x torchvision "
                         "(the strongest plain-PyTorch peer)")
        for name in self.images_per_s:
            if name in ("torchvision", PEER) or name.endswith((" plain", " int8")):
                continue
            plain, rate = self.median(f"{name} plain"), self.median(name)
            lines.append(f"  {name + ' (fp32, eager, NCHW)':<44} {plain:8.1f} images/s")
            label = f"{name} ({self.precision}, channels_last, uint8 in)"
            versus_peer = f", {rate / peer:5.2f}x the peer" if peer is not None else ""
            lines.append(f"  {label:<44} {rate:8.1f} images/s{self.latency(name)}  {rate / plain:5.2f}x "
                         f"the plain {name}, {rate / baseline:5.2f}x torchvision{versus_peer}")
            if f"{name} int8" in self.images_per_s:
                int8 = self.median(f"{name} int8")
                versus_peer = f", {int8 / peer:5.2f}x the peer" if peer is not None else ""
                lines.append(f"  {name + ' (int8 ONNX, onnxruntime, uint8 in)':<44} {int8:8.1f} images/s"
                             f"{self.latency(name + ' int8')}  {int8 / rate:5.2f}x the {self.precision} "
                             f"{name}, {int8 / baseline:5.2f}x torchvision{versus_peer}")
        return "\n".join(lines)


def run_eval_bench(config: EvalBenchConfig) -> EvalBenchResult | ModelBenchResult:
    if config.checkpoint is not None or config.data is not None:
        return run_model_bench(config)
    device = resolve_device(config.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (config.batch_size, 256, 256, 3), dtype=torch.uint8, generator=generator)
    floats = torch.randn(config.batch_size, 3, 224, 224, generator=generator).to(device)
    baseline = torchvision.models.alexnet(num_classes=config.num_classes).eval().to(device)
    views = 10 if config.views in ("10crop", "ten_crop") else 1

    def run_baseline() -> None:
        with torch.inference_mode():
            for _ in range(views):
                baseline(floats).softmax(dim=1).cpu()

    def run_plain(model: torch.nn.Module) -> None:
        with torch.inference_mode():
            for _ in range(views):
                model(floats).softmax(dim=1).cpu()

    # the peer: the same network, bf16 autocast where this machine has fast bf16, channels_last
    peer_dtype = autocast_dtype(device, "auto")
    peer = copy.deepcopy(baseline).to(memory_format=torch.channels_last)
    peer_floats = floats.contiguous(memory_format=torch.channels_last)

    def run_peer() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=peer_dtype or torch.float32,
                                                    enabled=peer_dtype is not None):
            for _ in range(views):
                peer(peer_floats).float().softmax(dim=1).cpu()

    variants: dict[str, Callable[[], None]] = {"torchvision": run_baseline, PEER: run_peer}
    latency_candidates: dict[str, ScoringModel] = {}
    precision = "fp32"
    for name in config.models:
        classes = [str(i) for i in range(config.num_classes)]
        info = Checkpoint(name, {"num_classes": config.num_classes}, classes, classes, torchvision_preprocess())
        model = create_model(name, num_classes=config.num_classes).eval().to(device)
        # the same network the plain way: fp32, NCHW, float batches ready
        variants[f"{name} plain"] = lambda model=model: run_plain(model)  # type: ignore[misc]
        scorer = ScoringModel(LoadedModel(copy.deepcopy(model), info, name), device, config.precision)
        precision = scorer.precision
        scorers = {name: scorer}
        if config.int8 and device.type == "cpu":
            # calibrated on the benchmark's own random images: this measures speed only
            calibration = FolderImages(Path("random images"), ["0"], ["0"], 256,
                                       [str(i) for i in range(len(images))],
                                       np.zeros(len(images), dtype=np.int64), images.numpy())
            scorers[f"{name} int8"] = _int8_scorer(LoadedModel(model, info, name), calibration)
        for label, candidate in scorers.items():
            variants[label] = lambda candidate=candidate: candidate.probabilities(images, config.views)  # type: ignore[misc]
            latency_candidates[label] = candidate
    for run in variants.values():  # warm-up: oneDNN primitives, allocator
        run()
    device_name = describe_cpu() if device.type == "cpu" else torch.cuda.get_device_name(device)
    result = EvalBenchResult(config, device_name, precision,
                             PRECISION_NAMES[peer_dtype])
    result.latency_ms = {label: _latency_ms(candidate, images[:1], config)
                         for label, candidate in latency_candidates.items()}
    for _ in range(config.rounds):
        for name, run in variants.items():
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(config.batches):
                run()
            _synchronize(device)
            seconds = time.perf_counter() - start
            result.images_per_s.setdefault(name, []).append(config.batches * config.batch_size / seconds)
    return result


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _int8_scorer(loaded: LoadedModel, calibration: FolderImages | None = None,
                 config: QuantizeConfig | None = None) -> ScoringModel:
    """The int8 ONNX graph of ``loaded`` (written to a temporary folder), ready to score."""
    with tempfile.TemporaryDirectory(prefix="alexnet-int8-bench-") as folder:
        path = Path(folder) / f"{loaded.name}.int8.onnx"
        quantize_model(loaded, path, config or QuantizeConfig(images=64, check_images=16, min_agreement=0.0),
                       calibration)
        int8 = load_models([path])[0]  # the session holds the graph in memory: the file may go
    return ScoringModel(int8, torch.device("cpu"))


def _latency_ms(scorer: ScoringModel, image: torch.Tensor, config: EvalBenchConfig) -> float:
    """Median ms of one image through ``scorer`` (uint8 in, probabilities out)."""
    if config.latency_repeats < 1:
        return float("nan")
    scorer.probabilities(image, config.views)  # warm-up for this shape
    times = []
    for _ in range(config.latency_repeats):
        _synchronize(scorer.device)
        start = time.perf_counter()
        scorer.probabilities(image, config.views)
        _synchronize(scorer.device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


@dataclass
class ModelBenchResult:
    """A trained model and its int8 graph on real data: accuracy and speed, one run."""

    config: EvalBenchConfig
    data: str
    n_images: int
    top1_error: dict[str, float] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)
    images_per_s: dict[str, list[float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        c = self.config
        lines = [f"alexnet evaluate on {self.data}: {self.n_images} images ({c.views}), batch {c.batch_size}, "
                 f"median of {c.rounds} interleaved rounds:"]
        reference = next(iter(self.images_per_s))
        base_rate, base_top1 = statistics.median(self.images_per_s[reference]), self.top1_error[reference]
        for name, rates in self.images_per_s.items():
            rate = statistics.median(rates)
            top1 = 100 * (1 - self.top1_error[name])
            vs = "" if name == reference else (f"  {rate / base_rate:5.2f}x the images/s, "
                                               f"{100 * (base_top1 - self.top1_error[name]):+.2f} points top-1")
            lines.append(f"  {name + ' (' + self.precision[name] + ')':<40} top-1 {top1:6.2f}%  {rate:8.1f} "
                         f"images/s  batch 1: {self.latency_ms.get(name, float('nan')):6.1f} ms{vs}")
        return "\n".join(lines)


def run_model_bench(config: EvalBenchConfig) -> ModelBenchResult:
    if config.checkpoint is None or config.data is None:
        raise AlexNetError("bench evaluate on a trained model needs both --checkpoint and --data")
    loaded = load_models([config.checkpoint])[0]
    models = {loaded.name: loaded}
    device = resolve_device(config.device)
    scorers = {loaded.name: ScoringModel(loaded, device, config.precision)}
    if config.int8:
        if config.int8_model is not None:
            int8 = load_models([config.int8_model])[0]
            scorers[int8.name] = ScoringModel(int8, torch.device("cpu"))
        else:
            # calibrated on the run's training data, else on the training split of --data; the
            # agreement check is left to the top-1 this bench measures
            try:
                calibration_data(loaded, QuantizeConfig())
                quantize = QuantizeConfig(min_agreement=0.0)
            except AlexNetError:
                quantize = QuantizeConfig(calibration=config.data, min_agreement=0.0)
            scorer = _int8_scorer(loaded, config=quantize)
            int8 = LoadedModel(scorer.model, scorer.info, f"{loaded.name} int8")
            scorers[int8.name] = scorer
        models[int8.name] = int8
    source = open_images(config.data, config.split, max(s.image_size for s in scorers.values()))
    image = next(source.batches(1)).images
    result = ModelBenchResult(config, source.name, 0)
    for name, scorer in scorers.items():
        result.precision[name] = scorer.precision
        result.latency_ms[name] = _latency_ms(scorer, image, config)
    for _ in range(config.rounds):
        for name, model in models.items():
            measured = evaluate([model], source, config.views, "data", config.batch_size, str(device),
                                config.precision, config.limit, progress=False)
            result.top1_error[name], result.n_images = measured.top1_error, measured.n_images
            result.images_per_s.setdefault(name, []).append(measured.images_per_s)
    return result
