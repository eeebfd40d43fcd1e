"""``alexnet bench evaluate``: images/s of batched evaluation, ours vs the plain way, one run.

Baselines: ``torchvision.models.alexnet`` and each of our models in fp32, eager, NCHW, fed
float batches that are already normalised and cropped (so they do less work than the
candidates). The
candidates are what ``alexnet evaluate`` runs: a ``ScoringModel`` taking uint8
``(B, 256, 256, 3)`` batches, cutting the centre (or 10) views on the fly, channels_last,
bf16 autocast where the CPU/GPU has it. Rounds interleave baseline and candidates so the load
of a shared machine hits them alike; each figure is the median over rounds.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torchvision

from alexnet.checkpoint import Checkpoint
from alexnet.models import create_model
from alexnet.pretrained import torchvision_preprocess
from alexnet.scoring import LoadedModel, ScoringModel, resolve_device


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


@dataclass
class EvalBenchResult:
    config: EvalBenchConfig
    device: str
    precision: str
    images_per_s: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.images_per_s[name])

    def summary(self) -> str:
        c = self.config
        baseline = self.median("torchvision")
        lines = [f"evaluation ({c.views}), batch {c.batch_size}, {self.device}, median of {c.rounds} "
                 f"interleaved rounds x {c.batches} batches:",
                 f"  {'torchvision alexnet (fp32, eager, NCHW)':<44} {baseline:8.1f} images/s"]
        for name in self.images_per_s:
            if name == "torchvision" or name.endswith(" plain"):
                continue
            plain, rate = self.median(f"{name} plain"), self.median(name)
            lines.append(f"  {name + ' (fp32, eager, NCHW)':<44} {plain:8.1f} images/s")
            label = f"{name} ({self.precision}, channels_last, uint8 in)"
            lines.append(f"  {label:<44} {rate:8.1f} images/s  {rate / plain:5.2f}x the plain "
                         f"{name}, {rate / baseline:5.2f}x torchvision")
        return "\n".join(lines)


def run_eval_bench(config: EvalBenchConfig) -> EvalBenchResult:
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

    variants: dict[str, Callable[[], None]] = {"torchvision": run_baseline}
    precision = "fp32"
    for name in config.models:
        classes = [str(i) for i in range(config.num_classes)]
        info = Checkpoint(name, {"num_classes": config.num_classes}, classes, classes, torchvision_preprocess())
        model = create_model(name, num_classes=config.num_classes).eval().to(device)
        # the same network the plain way: fp32, NCHW, float batches ready
        variants[f"{name} plain"] = lambda model=model: run_plain(model)  # type: ignore[misc]
        scorer = ScoringModel(LoadedModel(copy.deepcopy(model), info, name), device, config.precision)
        precision = scorer.precision
        variants[name] = lambda scorer=scorer: scorer.probabilities(images, config.views)  # type: ignore[misc]
    for run in variants.values():  # warm-up: oneDNN primitives, allocator
        run()
    result = EvalBenchResult(config, str(device), precision)
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
