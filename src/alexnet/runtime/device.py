"""The one device rule and the one precision rule, for training, evaluation and benchmarks.

Precision (``auto``): bf16 autocast on GPUs with bf16 and on CPUs whose native bf16 (AMX or
AVX-512 BF16) measures faster than fp32 (alexnet/runtime/machine.py: the fast path is chosen
by what the machine does, not by its name); fp16 autocast on older GPUs; fp32 otherwise. The
weights and the optimizer stay fp32 in every case (autocast casts per operation).
"""

from __future__ import annotations

import os

import torch

from alexnet.errors import AlexNetError, unknown_choice
from alexnet.runtime.machine import cpu_bf16_is_fast

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# an autocast dtype (None: plain fp32) by the name every output prints
PRECISION_NAMES: dict[torch.dtype | None, str] = {None: "fp32", torch.bfloat16: "bf16",
                                                  torch.float16: "fp16"}


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """``auto`` (the GPU when there is one), or a device by name, checked to exist here."""
    if str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise AlexNetError(f"unknown device {str(requested)!r} (e.g. cpu, cuda, cuda:1)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AlexNetError(f"--device {requested}: no CUDA device is available here; use --device cpu")
    return device


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto | bf16 | fp16 | fp32); None: plain fp32."""
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise AlexNetError("precision fp16 is for GPUs; use bf16 or fp32 on a CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16_is_fast() else None


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """--deterministic: deterministic kernels only (an error if an op has none), no cuDNN
    autotuning. Otherwise let cuDNN pick the fastest convolution algorithms per shape."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        # TF32 tensor cores for what runs in fp32 (precision=fp32); exact fp32 when deterministic
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
    if deterministic:
        # cuBLAS needs this set before its first call for deterministic matmuls
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
