"""What this machine is: the CPU by name and by the matrix features that decide our fast
path, named beside every figure (a ratio measured on one kind of CPU does not hold on
another: bf16 training is about 2x slower on AVX-512-BF16 than on AMX)."""

from __future__ import annotations

import os
import platform
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
