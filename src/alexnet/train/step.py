"""One SGD step on a batch, fast where it is correct: the hot path of training.

Shared by the training loop and ``alexnet bench train``, so the benchmark measures exactly
what training runs. Precision: bf16 autocast on GPUs with bf16 and on CPUs with AMX /
AVX-512-bf16 (oneDNN runs bf16 convolutions and matmuls there several times faster than
fp32), fp16 autocast with a GradScaler on older GPUs, fp32 otherwise or on request. The
weights and the optimizer stay fp32 in every case (autocast casts per operation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.train import distributed as dist_utils


def sgd(param_groups: list[dict[str, Any]], **options: Any) -> torch.optim.SGD:
    """torch's SGD with its fused kernel where this torch has one for the parameters' devices.

    Fused: one pass over each weight for decay + momentum + update instead of several
    foreach passes; on the 2-core AMX CPU a step of alexnet2012's 61M weights took 404 ms
    with foreach and 94 ms fused. The same arithmetic, so the recipe (§5) is unchanged.
    """
    groups = [dict(group) for group in param_groups]  # SGD writes its defaults into them
    if _fused_kernel_for(groups):
        options = {**options, "fused": True}
    return torch.optim.SGD(groups, **options)


class CudaConvnetSGD(torch.optim.Optimizer):
    """The 2012 code's momentum update (src/weights.cu ``Weights::update``), in torch's signs:

        inc <- momentum * inc - lr * (grad + weight_decay * w);   w <- w + inc

    (weights.cu: ``inc = mom * inc + eps * grad`` on the ascent direction, then
    ``inc -= wc * eps * w``, then ``w += inc``). At a constant rate this is torch.optim.SGD
    exactly (inc = -lr * momentum_buffer); they differ after a rate change: here the
    velocity keeps the old rate and fades (x0.9 a step), torch rescales it to the new rate at
    once. A group with lr 0 is not updated at all, as weights.cu skips layers whose base
    rate is 0 (conv1 frozen, weight decay included).
    """

    def __init__(self, params: Any, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise AlexNetError("CudaConvnetSGD takes no closure")
        for group in self.param_groups:
            lr, decay = group["lr"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if lr == 0 or not params:
                continue
            incs = []
            for p in params:
                state = self.state[p]
                if "increment" not in state:
                    state["increment"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                incs.append(state["increment"])
            grads = [p.grad for p in params]
            torch._foreach_mul_(incs, group["momentum"])
            torch._foreach_add_(incs, grads, alpha=-lr)
            if decay:
                torch._foreach_add_(incs, params, alpha=-lr * decay)
            torch._foreach_add_(params, incs)


def make_optimizer(param_groups: list[dict[str, Any]], update_rule: str, lr: float,
                   momentum: float, nesterov: bool = False) -> torch.optim.Optimizer:
    """torch's SGD (fused where it can be) or the 2012 code's update (``cuda_convnet``)."""
    if update_rule == "cuda_convnet":
        return CudaConvnetSGD([dict(group) for group in param_groups], lr=lr, momentum=momentum)
    return sgd(param_groups, lr=lr, momentum=momentum, nesterov=nesterov)


def _fused_kernel_for(groups: list[dict[str, Any]]) -> bool:
    # torch checks the devices only at the first step(), so decide here instead of failing there
    supported = getattr(torch.utils._foreach_utils, "_get_fused_kernels_supported_devices", None)
    if supported is None:
        return False
    devices = supported()
    return all(p.device.type in devices and p.is_floating_point()
               for group in groups for p in group["params"])


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` for a resume that may differ in kernel or memory layout.

    load_state_dict copies the saved groups' ``fused`` / ``foreach`` flags over the ones this
    machine chose (an old foreach checkpoint would resume 4x slower; a fused one could force
    a kernel this device lacks), so they are put back. Momentum buffers get the layout of
    their parameters, so a resume that changes --channels-last never hands the fused kernel
    mixed layouts (a review saw wrong fused updates with them; our own check with the
    gradient in the weight's layout did not reproduce that, so this is a precaution).
    """
    kernel_flags = [{key: group.get(key) for key in ("fused", "foreach")}
                    for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, kernel_flags, strict=True):
        group.update(flags)
        for parameter in group["params"]:
            buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
            if buffer is not None and buffer.stride() != parameter.stride():
                optimizer.state[parameter]["momentum_buffer"] = (
                    torch.empty_like(parameter).copy_(buffer))


class TrainStep:
    """forward -> cross-entropy -> backward -> SGD step, under the chosen precision.

    ``model`` is the plain module; it is wrapped here in DistributedDataParallel (under
    torchrun) and/or torch.compile. Checkpoints are taken from ``unwrap(model)``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, precision: torch.dtype | None,
                 label_smoothing: float = 0.0, compile: bool = False,
                 world: dist_utils.Distributed | None = None,
                 device: torch.device | None = None) -> None:
        self.optimizer, self.scaler, self.precision = optimizer, scaler, precision
        self.label_smoothing = label_smoothing
        self.device = device or next(model.parameters()).device
        if world is not None and world.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None,
                broadcast_buffers=False, gradient_as_bucket_view=True)
        if compile:
            model = torch.compile(model)  # type: ignore[assignment]
        self.model = model

    def seed(self, seed: int, rank: int, step: int) -> None:
        """Seed torch's generators (dropout masks) from (seed, rank, step)."""
        torch.manual_seed(((seed * 1_000_003 + rank) * 1_000_033 + step) % (2**63 - 1))  # + GPUs

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on ``x`` (B, 3, H, W) and ``labels`` (B,); returns (loss, logits), detached."""
        with torch.autocast(self.device.type, self.precision or torch.float32,
                            enabled=self.precision is not None):
            logits = self.model(x)  # (B, classes)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()
