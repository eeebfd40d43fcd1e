"""``alexnet info MODEL``: a layer table with output shapes, parameters and multiply-adds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet.models.alexnet2012 import PAPER_SECTIONS as SECTIONS_2012
from alexnet.models.cifar import PAPER_SECTIONS as SECTIONS_CIFAR
from alexnet.models.cifar_local import PAPER_SECTIONS as SECTIONS_LOCAL
from alexnet.models.cifar_local import LocallyConnected2d
from alexnet.models.registry import MODELS, check_input_size, shape_model

_SECTIONS = {"alexnet2012": SECTIONS_2012, "alexnet2014": SECTIONS_2012,
             "cifar_conv_local": SECTIONS_LOCAL}


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    mult_adds: int
    source: str


def _section(model_name: str, layer_name: str) -> str:
    table = _SECTIONS.get(model_name, SECTIONS_CIFAR)
    if layer_name in table:
        return table[layer_name]
    prefix = layer_name.rstrip("0123456789")
    return table.get(prefix, "-")


def mult_adds(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of a conv or linear layer for one input (pooling/LRN not counted)."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    if isinstance(module, LocallyConnected2d):  # as a convolution, with unshared weights
        return output[0].numel() * module.fan_in
    return 0


def layer_table(model_name: str, input_size: int | None = None, **options: object) -> list[LayerRow]:
    """One row per layer of ``model_name`` for a (1, C, input_size, input_size) input.

    The weights are never initialised (shapes and counts only), and an input too large for
    memory is run on the meta device, so even a huge ``input_size`` is answered at once."""
    size = MODELS[model_name].input_size if input_size is None and model_name in MODELS else input_size
    check_input_size(model_name, size, what="--input-size", **options)  # type: ignore[arg-type]
    model, device = shape_model(model_name, size, **options)  # type: ignore[arg-type]
    in_channels = int(options.get("in_channels", 3))  # type: ignore[call-overload]
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_layers():

        def record(module: nn.Module, _inputs: object, output: torch.Tensor, name: str = name) -> None:
            rows.append(
                LayerRow(
                    name, type(module).__name__, tuple(output.shape[1:]),
                    sum(p.numel() for p in module.parameters(recurse=False)),
                    mult_adds(module, output), _section(model_name, name),
                )
            )

        hooks.append(module.register_forward_hook(record))
    with torch.no_grad():
        model(torch.zeros(1, in_channels, size, size, device=device))
    for hook in hooks:
        hook.remove()
    return rows


def format_table(model_name: str, rows: list[LayerRow], input_size: int) -> str:
    header = f"{'layer':<9} {'type':<20} {'output (C, H, W)':<18} {'parameters':>12} {'mult-adds':>15}  source"
    lines = [f"{model_name}: {MODELS[model_name].description}; input 3x{input_size}x{input_size}", header, "-" * len(header)]
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        lines.append(f"{r.name:<9} {r.kind:<20} {shape:<18} {r.params:>12,} {r.mult_adds:>15,}  {r.source}")
    total_params = sum(r.params for r in rows)
    total_macs = sum(r.mult_adds for r in rows)
    lines.append("-" * len(header))
    lines.append(f"{'total':<9} {'':<20} {'':<18} {total_params:>12,} {total_macs:>15,}")
    lines.append(f"{total_params / 1e6:.2f} M parameters, {total_macs / 1e9:.3f} G multiply-adds per image")
    return "\n".join(lines)
