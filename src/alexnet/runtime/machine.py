"""What this machine is: the CPU by name and by the matrix features that decide our fast
path, named beside every figure (a ratio measured on one kind of CPU does not hold on
another: bf16 training is about 2x slower on AVX-512-BF16 than on AMX)."""

from __future__ import annotations

import functools
import os
import platform
import time
from pathlib import Path

import torch

# torch's own probes (torch >= 2.1 has the first four; missing ones read as absent)
_FEATURES = (("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported"),
             ("AVX-512", "_is_avx512_supported"), ("VNNI", "_is_vnni_supported"),
             ("AVX2", "_is_avx2_supported"))


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> dict[str, bool]:
    """{"AMX": False, "AVX-512 BF16": True, ...} as this torch build detects them."""
    return {name: bool(getattr(torch.cpu, probe, lambda: False)()) for name, probe in _FEATURES}


def describe_cpu() -> str:
    """``AMD EPYC, 2 cores: AVX-512 BF16, AVX-512, VNNI, AVX2; no AMX``."""
    features = cpu_features()
    have = [name for name, present in features.items() if present]
    lacking = [name for name in ("AMX", "AVX-512 BF16") if not features[name]]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_name()}, {cores} cores: {', '.join(have) or 'no vector matrix features'}"
    return text + (f"; no {', no '.join(lacking)}" if lacking else "")


@functools.cache
def bf16_speedup() -> float | None:
    """How many times faster a bf16 convolution runs than an fp32 one on this CPU, measured
    once per process (0.13 s quiet, 0.65 s under load on the 2-core AMD EPYC, which measured
    1.6-2.0x); None where the CPU has no native bf16 (AMX or AVX-512
    BF16), where bf16 is emulated and never pays. The shape is alexnet's conv2 at batch 16."""
    features = cpu_features()
    if not (features["AMX"] or features["AVX-512 BF16"]):
        return None
    x = torch.randn(16, 64, 27, 27).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(192, 64, 5, 5).contiguous(memory_format=torch.channels_last)
    pairs = {dtype: (x.to(dtype), weight.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(pairs, float("inf"))
    with torch.inference_mode():
        for repeat in range(4):  # interleaved, so a busy machine slows both alike
            for dtype, (inputs, kernel) in pairs.items():
                start = time.perf_counter()
                torch.nn.functional.conv2d(inputs, kernel, padding=2)
                if repeat:  # the first of each warms up (oneDNN builds its kernels)
                    best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def cpu_bf16_is_fast() -> bool:
    """bf16 autocast on this CPU: native bf16 and measured at least 1.2x faster than fp32
    (the 2-core AMD EPYC with AVX-512 BF16 measured 1.6-2.0x; AMX CPUs have a far larger
    bf16 / fp32 matrix-rate ratio, 6.8x in docs/training.md)."""
    speedup = bf16_speedup()
    return speedup is not None and speedup >= 1.2


def cpu_precision_reason() -> str:
    """Why ``precision=auto`` chose what it did on this CPU, for a run's header."""
    speedup = bf16_speedup()
    if speedup is None:
        return "auto: no native bf16 on this CPU (no AMX or AVX-512 BF16), so fp32"
    native = "AMX" if cpu_features()["AMX"] else "AVX-512 BF16"
    chosen = "bf16" if cpu_bf16_is_fast() else "fp32 (bf16 did not pay)"
    return f"auto: {native}, a bf16 convolution measured {speedup:.1f}x fp32, so {chosen}"
