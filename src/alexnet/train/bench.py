"""``alexnet bench train``: images/s of a training step, ours vs torchvision's, one run.

The baseline is ``torchvision.models.alexnet`` trained the plain way: fp32, eager, NCHW
memory, SGD with momentum. The peer is the same network as an informed user would run it in
plain PyTorch: bf16 autocast where this machine has fast bf16 (else fp32) and channels_last,
in the same process and so with the same allocator - the strongest plain-PyTorch way, and the
ratio that says what our own code adds. The candidates are alexnet2012 and alexnet2014
stepped by ``TrainStep``, exactly what ``alexnet train`` runs (bf16 autocast where the
hardware has it, channels_last, optionally torch.compile). Inputs are random (B, 3, S, S) tensors already on
the device, so this measures the step alone; the data pipeline has its own benchmark.

Rounds interleave baseline, peer and candidates (B, P, c1, c2, B, P, c1, c2, ...) so that
the load of a shared machine hits all of them alike; each figure is the median over rounds.

``profile=True`` then profiles one more step of each variant and splits its time by kind of
kernel: convolutions, matrix products, and the rest. Where the ratio falls short, this says
why: the "GEMM bound" is the ratio a variant would reach if everything but its convolutions
and matrix products took no time at all. It also measures this machine's matrix-product
peak in each precision, in the same run, and says what fraction of it each variant's step
reaches and what fraction the target ratio would need: when the baseline already runs near
the fp32 peak, a ratio is bounded by the bf16 / fp32 peak ratio whatever the code does. The
peak is the best of several square and convolution-shaped matrix products and a convolution
(one 2048x2048 product under-measured a Zen 4 CPU by 20%), and a step measured above it is
flagged: its fractions could not be trusted.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from alexnet.errors import AlexNetError, check_non_negative, check_positive
from alexnet.models import check_input_size, create_model, list_models
from alexnet.models.info import mult_adds
from alexnet.runtime.device import PRECISION_NAMES, autocast_dtype
from alexnet.runtime.machine import describe_cpu
from alexnet.train.distributed import rank_device
from alexnet.train.step import TrainStep, sgd


@dataclass
class TrainBenchConfig:
    models: tuple[str, ...] = ("alexnet2012", "alexnet2014")
    image_size: int = 224
    batch_size: int = 128
    device: str = "cpu"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    rounds: int = 3
    steps: int = 3  # timed steps per variant per round
    warmup: int = 2  # untimed steps per variant before the first round
    num_classes: int = 1000
    profile: bool = False  # also split one step of each variant by kind of kernel
    target_ratio: float = 5.0  # profile: print the peak fraction this ratio would need

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            raise AlexNetError(f"unknown model {unknown[0]!r}; valid: {', '.join(list_models())}")
        for name in ("image_size", "batch_size", "rounds", "steps"):
            if not getattr(self, name) >= 1:
                raise AlexNetError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.target_ratio > 0:
            raise AlexNetError(f"--target-ratio must be positive, got {self.target_ratio}")
        check_positive(image_size=self.image_size, batch_size=self.batch_size, rounds=self.rounds,
                       steps=self.steps, num_classes=self.num_classes)
        check_non_negative(warmup=self.warmup)
        for model in self.models:  # before any model is built: a one-line error, not a crash
            check_input_size(model, self.image_size, what="--image-size", num_classes=self.num_classes)
        smallest = _smallest_baseline_input()
        if self.image_size < smallest:
            raise AlexNetError(f"--image-size {self.image_size} is too small for torchvision's "
                               f"alexnet, this benchmark's baseline and peer: it needs at least "
                               f"{smallest}x{smallest} pixels")


@functools.cache
def _smallest_baseline_input() -> int:
    """The smallest image torchvision's alexnet takes (found on the meta device: no memory)."""
    with torch.device("meta"):
        model = torchvision.models.alexnet(num_classes=10)

    def fits(size: int) -> bool:
        try:
            model(torch.empty(1, 3, size, size, device="meta"))
        except RuntimeError:
            return False
        return True

    low, high = 1, 224
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low


@dataclass
class TrainBenchResult:
    config: TrainBenchConfig
    device_name: str
    images_per_s: dict[str, list[float]] = field(default_factory=dict)  # variant -> per round
    precisions: dict[str, str] = field(default_factory=dict)  # variant -> fp32 | bf16 | fp16
    # variant -> kernel class -> milliseconds of one profiled step (profile=True)
    profiles: dict[str, dict[str, float]] = field(default_factory=dict)
    # profile=True: variant -> FLOP of one image's training step in convolutions and matrix
    # products; precision label -> this machine's best matrix-product FLOP/s in this run
    step_flops: dict[str, int] = field(default_factory=dict)
    peak_flops: dict[str, float] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.images_per_s[name])

    def summary(self) -> str:
        c = self.config
        baseline = self.median(BASELINE)
        peer_name = next((name for name in self.images_per_s if name.startswith(PEER)), None)
        lines = [f"training step, batch {c.batch_size}, {c.image_size}x{c.image_size}, "
                 f"{self.device_name}, median of {c.rounds} interleaved rounds x {c.steps} steps:",
                 f"  {'torchvision alexnet (fp32, eager, NCHW)':<50} {baseline:8.1f} images/s"]
        if peer_name is not None:
            peer = self.median(peer_name)
            lines.append(f"  {'torchvision alexnet' + peer_name.removeprefix(PEER):<50} "
                         f"{peer:8.1f} images/s  {peer / baseline:5.2f}x fp32  (the strongest "
                         "plain-PyTorch peer)")
        for name in self.images_per_s:
            if name not in (BASELINE, peer_name):
                rate = self.median(name)
                versus_peer = f"  {rate / peer:5.2f}x peer" if peer_name is not None else ""
                lines.append(f"  {name:<50} {rate:8.1f} images/s  {rate / baseline:5.2f}x "
                             f"fp32{versus_peer}")
        if self.profiles:
            lines += self._profile_lines(baseline)
        if self.step_flops and self.peak_flops:
            lines += self._peak_lines(baseline)
        return "\n".join(lines)

    def _peak_lines(self, baseline_rate: float) -> list[str]:
        """Each variant's FLOP/s as a fraction of the measured peak of its precision, and the
        fraction the target ratio would need. A need above 100% is out of reach of any code."""
        peaks = ", ".join(f"{label} {flops / 1e12:.2f} TFLOP/s" for label, flops
                          in self.peak_flops.items())
        lines = [f"compute: this machine's fastest matrix product in this run: {peaks}"]
        target = self.config.target_ratio
        for name, flops in self.step_flops.items():
            label = name.split(" (")[0]
            precision = self.precisions[name]
            peak = self.peak_flops[precision]
            achieved = self.median(name) * flops
            line = (f"  {label:<16} {flops / 1e9:.2f} GFLOP per image, {achieved / 1e12:.2f} "
                    f"TFLOP/s = {achieved / peak:.0%} of the {precision} peak")
            if achieved > peak:
                line += " (ABOVE the measured peak: the probe under-measured; fractions unreliable)"
            if not name.startswith((BASELINE, PEER)):
                needed = target * baseline_rate * flops / peak
                line += f"; {target:g}x would need {needed:.0%}"
            lines.append(line)
        return lines

    def _profile_lines(self, baseline_rate: float) -> list[str]:
        """One profiled step of each variant, by kind of kernel (profiler self times)."""
        baseline_ms = 1000 * self.config.batch_size / baseline_rate
        lines = ["one profiled step, milliseconds of kernel time:"]
        for name, times in self.profiles.items():
            total = sum(times.values())
            gemm = times.get(CONVOLUTION, 0.0) + times.get(MATMUL, 0.0)
            others = sorted((k for k in times if k not in (CONVOLUTION, MATMUL)),
                            key=times.__getitem__, reverse=True)
            top = ", ".join(f"{k} {times[k]:.0f}" for k in others[:4])
            label = name.split(" (")[0]
            lines.append(f"  {label:<16} total {total:6.0f}: convolutions "
                         f"{times.get(CONVOLUTION, 0):.0f}, matrix products "
                         f"{times.get(MATMUL, 0):.0f}, other {total - gemm:.0f} ({top})")
            if name != BASELINE and gemm > 0:
                lines.append(f"  {'':<16} GEMM bound: {baseline_ms / gemm:.2f}x (the ratio if "
                             "everything but convolutions and matrix products took no time)")
        return lines


BASELINE, PEER = "torchvision", "torchvision-peer"  # variant names (the peer's gets its precision)
CONVOLUTION, MATMUL = "convolutions", "matrix products"
_MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")


def kernel_class(op: str) -> str:
    """The kind of a profiler op name: convolutions (forward and backward, any backend),
    matrix products, torch.compile'd graphs, or the op's own name."""
    if "convolution" in op:
        return CONVOLUTION
    if op in _MATMUL_OPS:
        return MATMUL
    if op.startswith("## Call CompiledFxGraph") or op.startswith("Torch-Compiled Region"):
        return "compiled kernels"
    return op.removeprefix("aten::")


def training_flops(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """FLOP of one image's training step in the convolutions and linear layers: the forward,
    the gradient of each weight, and the gradient of each layer's input unless nothing needs
    it (conv1's input is the image), each 2 x the layer's multiply-adds. Pooling, LRN, ReLU,
    dropout and the optimizer are not counted: this is the matrix-unit work alone."""
    flops = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        passes = 3 if inputs[0].requires_grad else 2
        flops += 2 * passes * mult_adds(module, output)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]
    parameter = next(model.parameters())
    try:
        with torch.enable_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=parameter.device))
    finally:
        for hook in hooks:
            hook.remove()
    return flops


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5,
                size: int | None = None, shape: tuple[int, int, int] | None = None) -> float:
    """FLOP/s of the fastest of ``repeats`` matrix products (size x size squares, or an
    (m, k) @ (k, n) ``shape``) in ``dtype`` on ``device``, after one untimed: the practical
    ceiling of this machine's matrix units, measured in the same run as the steps it is
    compared with. fp32 on a GPU runs with TF32 off."""
    size = size or (8192 if device.type == "cuda" else 2048)
    m, k, n = shape or (size, size, size)
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    best = float("inf")

    def product() -> None:
        torch.mm(a, b)

    timed = _true_fp32(product) if dtype == torch.float32 else product
    for repeat in range(repeats + 1):
        elapsed = 1 / _time(timed, 1, 1, device)
        if repeat:  # the first warms up
            best = min(best, elapsed)
    return 2 * m * k * n / best


def conv_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the fastest of ``repeats`` forward convolutions shaped like alexnet's conv3
    (batch 64, 256 -> 384 maps, 3x3 on 13x13, channels_last) in ``dtype``: the matrix units
    as a convolution drives them, which on some CPUs beats any plain product."""
    x = torch.randn(64, 256, 13, 13, device=device).to(dtype).contiguous(
        memory_format=torch.channels_last)
    weight = torch.randn(384, 256, 3, 3, device=device).to(dtype).contiguous(
        memory_format=torch.channels_last)
    flops = 2 * 64 * 384 * 13 * 13 * 256 * 9

    def convolution() -> None:
        F.conv2d(x, weight, padding=1)

    timed = _true_fp32(convolution) if dtype == torch.float32 else convolution
    best = min(1 / _time(timed, 1, 1, device) for _ in range(repeats + 1))
    return flops / best


def machine_peak(dtype: torch.dtype, device: torch.device) -> float:
    """This machine's practical matrix-unit ceiling in ``dtype``: the best of square products
    of several sizes, the shape of conv2's weight-gradient product and a convolution, each
    the fastest of several repetitions (one shape under-measures some CPUs)."""
    sizes = (2048, 4096, 8192) if device.type == "cuda" else (1024, 2048, 3072)
    peaks = [matmul_peak(dtype, device, repeats=5, size=size) for size in sizes]
    peaks.append(matmul_peak(dtype, device, repeats=5, shape=(256, 64 * 27 * 27, 1200)))
    peaks.append(conv_peak(dtype, device))
    return max(peaks)


def profile_step(step: Callable[[], None], device: torch.device) -> dict[str, float]:
    """Milliseconds of one ``step`` by kernel class (self times: nothing counted twice)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return kernel_times(profiler.key_averages(), on_gpu=device.type == "cuda")


def kernel_times(events: Iterable[Any], on_gpu: bool) -> dict[str, float]:
    """Milliseconds by kernel class from profiler ``key_averages()`` events. On a GPU an
    op's self device time already holds the kernels it launched, which are also listed as
    events of their own (on the GPU): only the ops (the CPU-side events) are summed."""
    from torch.autograd import DeviceType

    times: dict[str, float] = {}
    for event in events:
        if on_gpu:
            if getattr(event, "device_type", DeviceType.CPU) != DeviceType.CPU:
                continue  # a kernel, already inside its op's self device time
            micros = getattr(event, "self_device_time_total", None)
            if micros is None:  # torch before 2.4 named it after CUDA
                micros = getattr(event, "self_cuda_time_total", 0.0)
        else:
            micros = event.self_cpu_time_total
        if micros > 0:
            kind = kernel_class(event.key)
            times[kind] = times.get(kind, 0.0) + micros / 1000
    return times


def _baseline_step(device: torch.device, config: TrainBenchConfig) -> Callable[[], None]:
    model = torchvision.models.alexnet(num_classes=config.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    labels = torch.randint(0, config.num_classes, (config.batch_size,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _true_fp32(step)


def _peer_step(device: torch.device, config: TrainBenchConfig) -> tuple[Callable[[], None], str]:
    """torchvision's alexnet as an informed user runs it in plain PyTorch: channels_last and
    bf16 autocast where this machine has fast bf16 (the rule ``alexnet train`` uses)."""
    precision = autocast_dtype(device, "auto")  # fp16 only on a GPU without bf16
    model = torchvision.models.alexnet(num_classes=config.num_classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, config.num_classes, (config.batch_size,), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    def step() -> None:
        with torch.autocast(device.type, dtype=precision or torch.float32,
                            enabled=precision is not None):
            loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    name = PRECISION_NAMES[precision]
    return (step if precision is not None else _true_fp32(step)), name




def _true_fp32(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` with TF32 off: cuDNN runs fp32 convolutions in TF32 on Ampere and later by
    default, which would make an "fp32" figure a TF32 one. Restored after each step."""

    def fp32_step() -> None:
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            step()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32

    return fp32_step


def _candidate_step(name: str, device: torch.device, config: TrainBenchConfig
                    ) -> Callable[[], None]:
    model = create_model(name, num_classes=config.num_classes).to(device)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = sgd([{"params": list(model.parameters())}], lr=0.01, momentum=0.9,
                    weight_decay=5e-4)
    precision = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    train_step = TrainStep(model, optimizer, scaler, precision, compile=config.compile, device=device)
    x = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    x = x.contiguous(memory_format=memory)
    labels = torch.randint(0, config.num_classes, (config.batch_size,), device=device)

    def step() -> None:
        train_step(x, labels)

    return step if precision is not None else _true_fp32(step)  # fp32 means fp32, as above


def _time(step: Callable[[], None], steps: int, batch: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def run_train_benchmark(config: TrainBenchConfig, log: Callable[[str], None] = print
                        ) -> TrainBenchResult:
    device = rank_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{describe_cpu()}, {torch.get_num_threads()} threads"
    precision = autocast_dtype(device, config.precision)
    precision_name = PRECISION_NAMES[precision]
    suffix = ", ".join(filter(None, [
        precision_name,
        "channels_last" if config.channels_last else "NCHW",
        "compiled" if config.compile else "eager"]))
    peer_step, peer_precision = _peer_step(device, config)
    peer_name = f"{PEER} ({peer_precision} autocast, channels_last)" if peer_precision != "fp32" \
        else f"{PEER} (fp32, channels_last)"
    steps = {BASELINE: _baseline_step(device, config), peer_name: peer_step}
    for model_name in config.models:
        steps[f"{model_name} ({suffix})"] = _candidate_step(model_name, device, config)
    precisions = {variant: precision_name for variant in steps}
    precisions.update({BASELINE: "fp32", peer_name: peer_precision})
    result = TrainBenchResult(config, name, {variant: [] for variant in steps}, precisions)
    for variant, step in steps.items():
        log(f"warming up {variant} ...")
        for _ in range(config.warmup):
            step()
    for round_index in range(config.rounds):
        for variant, step in steps.items():
            rate = _time(step, config.steps, config.batch_size, device)
            result.images_per_s[variant].append(rate)
            log(f"round {round_index + 1}/{config.rounds}: {variant}: {rate:.1f} images/s")
    if config.profile:
        for variant, step in steps.items():
            log(f"profiling one step of {variant} ...")
            result.profiles[variant] = profile_step(step, device)
        log("measuring this machine's matrix-product peak ...")
        # counted on fresh CPU copies: the FLOP depend on the architecture alone
        models = {variant: torchvision.models.alexnet(num_classes=config.num_classes)
                  for variant in (BASELINE, peer_name)}
        models.update({f"{name} ({suffix})": create_model(name, num_classes=config.num_classes)
                       for name in config.models})
        result.step_flops = {variant: training_flops(model, config.image_size)
                             for variant, model in models.items()}
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        result.peak_flops = {label: machine_peak(dtypes[label], device)
                             for label in dict.fromkeys(["fp32", *precisions.values()])}
    return result
