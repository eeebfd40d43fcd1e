"""Layers the 2012 networks use that torch.nn spells differently or not at all."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import unknown_choice

ACTIVATIONS = ("relu", "tanh")


def activation_layer(name: str) -> nn.Module:
    """ReLU (§3.1: trains several times faster than tanh) or tanh, for the Fig. 1 ablation."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    raise unknown_choice("activation", name, ACTIVATIONS)


def local_response_norm(
    x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
    groups: int = 1,
) -> torch.Tensor:
    """Cross-channel local response normalisation (§3.3), original-code convention.

    b[c] = a[c] / (k + alpha / size * sum_{c' in window(c)} a[c']^2) ** beta

    The window holds ``size`` adjacent channels centred on c, clipped at the first and
    last channel, and the sum is always divided by ``size``. That is the 2012 code's
    convention (layer.py: ``scale /= size``) and exactly ``torch.nn.LocalResponseNorm``;
    the paper's printed formula has no ``/ size`` (it would need alpha=5e-4 here).

    ``groups`` splits the channels into that many towers whose windows are clipped at the
    tower edges too: the 2012 code normalises each GPU's 48 (conv1) or 128 (conv2) maps on
    their own (layers-145.cfg: rnorm1a / rnorm1b with channels=48).

    Written by hand because it is faster: the window sum is a 1x1 convolution of a^2 with a
    banded 0/1 (C, C) matrix, which runs on the matrix units in bf16 and channels_last.
    torch's own version (avg_pool3d) has no bf16 CPU kernel and, in fp32, took about two
    thirds of an alexnet2012 training step here (measured on the 2-core AMX CPU, batch 64:
    14.7 images/s with it, 25.0 with this, 28.9 with no LRN at all). When a gradient is
    needed, :class:`_LocalResponseNormFunction` computes it in four elementwise passes and
    one more banded convolution instead of autograd's chain through ``pow``: forward +
    backward 2.0x / 1.6x faster at conv1's / conv2's shapes than autograd through the same
    formula (batch 128, bf16, 2-core AMX CPU; ``alexnet bench train`` shows the whole step).
    On a CPU, tensors of at least ``FUSE_MIN_ELEMENTS`` go through fused kernels instead.
    """
    if x.dtype == torch.float16:  # x * x overflows fp16 above 256: inf * 0 in the band -> NaN
        with torch.autocast(x.device.type, enabled=False):
            return local_response_norm(x.float(), size, alpha, beta, k, groups).half()
    # alpha / size and k ride in the 1x1 convolution's weight and bias: two elementwise
    # passes fewer over the largest activations (in bf16 the scale is rounded like every
    # other bf16 value, ~0.2%, a term that is small beside k anyway)
    band = _window_band(x.shape[1], size, groups, x.device, x.dtype, alpha / size)
    bias = torch.full((x.shape[1],), k, device=x.device, dtype=x.dtype)
    if x.requires_grad and torch.is_grad_enabled() and not _exporting():
        return _LocalResponseNormFunction.apply(x, band, bias, beta)
    s = F.conv2d(x * x, band, bias)  # k + alpha/size * sum x^2
    if _FUSED.wanted(x):
        return _FUSED("forward", x, s, beta)
    return x * s.pow(-beta)


def _window_band(
    channels: int, size: int, groups: int, device: torch.device, dtype: torch.dtype,
    scale: float,
) -> torch.Tensor:
    """(C, C, 1, 1) weight: output channel i sums input channels j in i's window, x scale."""
    index = torch.arange(channels, device=device)
    offset = index[None, :] - index[:, None]  # (C, C): input channel j - output channel i
    band = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
    if groups > 1:  # windows end at tower edges: each GPU normalised its own maps (§3.2)
        tower = index // (channels // groups)
        band &= tower[None, :] == tower[:, None]
    return (band.to(torch.float64) * scale).to(dtype).view(channels, channels, 1, 1)


def _exporting() -> bool:
    """Tracing for ONNX / TorchScript records the plain ops, not the custom backward."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)()  # torch >= 2.6
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or exporting)


class _LocalResponseNormFunction(torch.autograd.Function):
    """b = a * s^-beta with s = k + band(a^2) (band holds alpha / size), and its gradient:

    dL/da_j = g_j s_j^-beta - 2 beta a_j sum_i band[i, j] g_i b_i / s_i

    (the sum is one banded 1x1 convolution with the transposed band). Saves a and s (and
    s^-beta on the eager path); autograd's chain would keep more tensors and recompute
    ``pow`` in the backward. Large CPU tensors take the fused kernels (:class:`_FusedKernels`).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, band: torch.Tensor,
        bias: torch.Tensor, beta: float,
    ) -> torch.Tensor:
        s = F.conv2d(x * x, band, bias)  # (B, C, H, W): k + alpha / size * window sum
        ctx.beta = beta  # type: ignore[attr-defined]
        ctx.fused = _FUSED.wanted(x)  # type: ignore[attr-defined]
        if ctx.fused:  # type: ignore[attr-defined]
            ctx.save_for_backward(x, band, s)
            return _FUSED("forward", x, s, beta)
        p = s.pow(-beta)
        ctx.save_for_backward(x, band, s, p)
        return x * p

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        beta = ctx.beta  # type: ignore[attr-defined]
        if ctx.fused:  # type: ignore[attr-defined]
            x, band, s = ctx.saved_tensors  # type: ignore[attr-defined]
            spread = F.conv2d(_FUSED("ratio", grad, x, s, beta), band.transpose(0, 1))
            return _FUSED("grad", grad, x, s, spread, beta), None, None, None
        x, band, s, p = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_p = grad * p
        ratio = grad_p * x / s  # g_i b_i / s_i
        spread = F.conv2d(ratio, band.transpose(0, 1))  # sum over the outputs i that read j
        grad_x = grad_p.addcmul_(x, spread, value=-2.0 * beta)
        return grad_x, None, None, None


# ---- fused LRN kernels -------------------------------------------------------------------
# Why: on a CPU the LRN's elementwise passes (7 in eager, ``pow`` the slowest as it does not
# vectorise) were about a third of an alexnet2012 bf16 training step. torch.compile fuses
# each group into one vectorised loop (3 instead of 7 passes over the activations), and
# s^-0.75 becomes rsqrt(s) * sqrt(rsqrt(s)), all in float32. Measured effect: docs/training.md.

FUSE_MIN_ELEMENTS = 1 << 22  # below this eager is as fast and compiling would not pay off


def _power(s: torch.Tensor, beta: float) -> torch.Tensor:
    s = s.float()
    if beta == 0.75:  # §3.3's beta: two square roots instead of exp(-beta log s)
        root = torch.rsqrt(s)
        return root * torch.sqrt(root)
    return s.pow(-beta)


def _fused_forward(x: torch.Tensor, s: torch.Tensor, beta: float) -> torch.Tensor:
    return (x.float() * _power(s, beta)).to(x.dtype)  # b = a s^-beta


def _fused_ratio(grad: torch.Tensor, x: torch.Tensor, s: torch.Tensor, beta: float) -> torch.Tensor:
    return (grad.float() * x.float() * _power(s, beta) / s.float()).to(grad.dtype)  # g b / s


def _fused_grad(grad: torch.Tensor, x: torch.Tensor, s: torch.Tensor, spread: torch.Tensor,
                beta: float) -> torch.Tensor:
    return (grad.float() * _power(s, beta) - 2.0 * beta * x.float() * spread.float()).to(grad.dtype)


_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "forward": _fused_forward, "ratio": _fused_ratio, "grad": _fused_grad,
}  # fmt: skip


class _FusedKernels:
    """The three kernels, compiled on first use; eager (same formulas) if compiling fails."""

    def __init__(self) -> None:
        self.compiled: dict[str, Callable[..., torch.Tensor]] | None = None
        self.failed: str | None = None  # why compiling failed here

    def wanted(self, x: torch.Tensor) -> bool:
        # tracers first: under torch.compile / torch.export the size test would add a guard
        # on a symbolic batch size (and the outer compiler fuses anyway)
        if (self.failed is not None or x.device.type != "cpu" or _exporting()
                or torch.compiler.is_compiling()):
            return False
        elements = x.numel()
        return isinstance(elements, int) and elements >= FUSE_MIN_ELEMENTS

    def __call__(self, name: str, *args: Any) -> torch.Tensor:
        if self.failed is None:
            try:
                if self.compiled is None:
                    # inductor imports cpp_extension, which warns about CUDA_HOME on every
                    # machine without CUDA: noise in a CPU user's training log
                    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                    self.compiled = {key: torch.compile(kernel, dynamic=None)
                                     for key, kernel in _KERNELS.items()}
                return self.compiled[name](*args)
            except Exception as error:  # no C++ compiler, an inductor bug: eager from now on
                self.failed = f"{type(error).__name__}: {error}".splitlines()[0]
                warnings.warn(f"LRN: fused kernels unavailable here ({self.failed}); using "
                              "eager ops (slower, same results)", RuntimeWarning, stacklevel=2)
        return _KERNELS[name](*args)


_FUSED = _FusedKernels()


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm` (k=2, n=5, alpha=1e-4, beta=0.75, §3.3)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 groups: int = 1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        towers = f", groups={self.groups}" if self.groups > 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{towers}"


def same_map_response_norm(
    x: torch.Tensor, size: int = 3, alpha: float = 5e-5, beta: float = 0.75, k: float = 1.0
) -> torch.Tensor:
    """cuda-convnet's ``rnorm`` layer: normalisation over a size x size spatial window of
    the same channel, b = a / (k + alpha / size**2 * sum a^2) ** beta.

    Krizhevsky's CIFAR-10 nets (layers-18pct.cfg) use this, not the cross-channel LRN of
    the ImageNet net; the window is zero-padded at the borders and always divided by
    size**2, as cuda-convnet does.
    """
    squares = x.float().pow(2)
    window_mean = F.avg_pool2d(squares, size, stride=1, padding=size // 2, count_include_pad=True)
    return (x / (k + alpha * window_mean).pow(beta)).to(x.dtype)


class SameMapResponseNorm(nn.Module):
    """Module form of :func:`same_map_response_norm` (cuda-convnet ``rnorm``)."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_map_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class CeilModePad(nn.Module):
    """Zeros past the right and bottom edges so that a ``kernel``/``stride`` convolution with
    no padding gives ``1 + ceil((size - kernel) / stride)`` outputs, as cuda-convnet sizes its
    convolutions (layer.py: ``modulesX = 1 + ceil((2 * padding + imgSize - filterSize) /
    stride)``; the windows that run past the image read zeros there). 224 -> 227, i.e. 55
    outputs for conv1 (11, stride 4), where torch's floor rounding would give 54."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return F.pad(x, (0, self._extra(width), 0, self._extra(height)))

    def _extra(self, size: int) -> int:
        outputs = 1 + -(-(size - self.kernel) // self.stride)  # 1 + ceil((size - k) / stride)
        return (outputs - 1) * self.stride + self.kernel - size

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


def max_pool(overlapping: bool, ceil_mode: bool = False) -> nn.MaxPool2d:
    """3x3 windows with stride 2 (overlapping, §3.4) or 2x2 stride 2 (the ablation)."""
    return nn.MaxPool2d(3 if overlapping else 2, stride=2, ceil_mode=ceil_mode)


def scaled(channels: int, width: float, multiple: int = 1) -> int:
    """``channels * width`` rounded to a positive multiple of ``multiple`` (e.g. the towers)."""
    return max(multiple, round(channels * width / multiple) * multiple)
