"""The paper's model parallelism (§3.2): each tower of alexnet2012 on its own device.

"The GPUs communicate only in certain layers": conv1, conv2, conv4, conv5 (and their ReLU,
LRN and pooling) of a tower see only that tower's maps, so they run on its device with no
traffic. Activations cross between the devices only where a layer takes input from both
towers: conv3, fc6, fc7 and fc8. Each device holds half of every layer's kernels / neurons
(fc8 sits whole on the first device, where the logits are returned).

The single-device ``AlexNet2012`` expresses the same network with grouped convolutions and
per-tower LRN; this module holds the same weights cut in halves, and its ``state_dict`` /
``load_state_dict`` speak the grouped model's format, so checkpoints are interchangeable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.alexnet2012 import AlexNet2012

# Layers whose output units are split between the towers (fc8 is not: it sits whole on the
# first device). conv1 and conv3 read everything below them, conv2/4/5 only their own tower.
SPLIT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def _half(module: nn.Conv2d | nn.Linear, tower: int) -> nn.Module:
    """Tower ``tower``'s half of ``module``'s output units, as an ungrouped layer."""
    out_units = module.weight.shape[0] // 2
    rows = slice(tower * out_units, (tower + 1) * out_units)
    if isinstance(module, nn.Conv2d):
        # weight (out, in / groups, k, k): a grouped layer's half reads its own tower only
        half: nn.Module = nn.Conv2d(module.weight.shape[1], out_units, module.kernel_size,
                                    module.stride, module.padding)  # type: ignore[arg-type]
    else:
        half = nn.Linear(module.in_features, out_units)
    with torch.no_grad():
        half.weight.copy_(module.weight[rows])
        half.bias.copy_(module.bias[rows])
    return half


class Tower(nn.Module):
    """One device's half: conv1..pool2 (``lower``), conv3 half, conv4..pool5 (``upper``),
    fc6 and fc7 halves."""

    def __init__(self, model: AlexNet2012, tower: int, device: torch.device) -> None:
        super().__init__()
        f = model.features
        names = [name for name, _ in f.named_children()]
        conv3_at = names.index("conv3") if "conv3" in names else None
        if conv3_at is None:
            raise AlexNetError("towers_on_devices needs conv3 (the first layer that joins the towers)")
        lower: OrderedDict[str, nn.Module] = OrderedDict()
        upper: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (name, layer) in enumerate(f.named_children()):
            if isinstance(layer, nn.Conv2d):
                layer = _half(layer, tower)
            elif hasattr(layer, "groups"):  # per-tower LRN: now each tower is one group
                layer = type(layer)(layer.size, layer.alpha, layer.beta, layer.k)
            else:
                layer = _copy_stateless(layer)
            if i < conv3_at:
                lower[name] = layer
            elif name == "conv3":
                self.conv3 = layer
            else:
                upper[name] = layer
        self.lower = nn.Sequential(lower)
        self.upper = nn.Sequential(upper)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        c = model.classifier
        self.fc6, self.fc7 = _half(c.fc6, tower), _half(c.fc7, tower)
        self.relu6, self.relu7 = _copy_stateless(c.relu6), _copy_stateless(c.relu7)
        self.drop6, self.drop7 = nn.Dropout(c.drop6.p), nn.Dropout(c.drop7.p)
        self.to(device)
        self.device = device


def _copy_stateless(layer: nn.Module) -> nn.Module:
    """A fresh copy of a parameter-free layer (ReLU, pooling, dropout)."""
    import copy

    return copy.deepcopy(layer)


class TowerParallelAlexNet2012(nn.Module):
    """alexnet2012 with tower t on ``devices[t]``; returns logits on ``devices[0]``."""

    def __init__(self, model: AlexNet2012, devices: Sequence[torch.device | str]) -> None:
        super().__init__()
        if len(devices) != 2:
            raise AlexNetError(f"towers_on_devices needs exactly two devices, got {len(devices)}")
        if getattr(model, "towers", 2) != 2:
            raise AlexNetError("towers_on_devices needs the two-tower alexnet2012 (towers=2)")
        self.devices = [torch.device(d) for d in devices]
        self.towers = nn.ModuleList(Tower(model, t, d) for t, d in enumerate(self.devices))
        self.fc8 = nn.Linear(model.classifier.fc8.in_features, model.classifier.fc8.out_features)
        with torch.no_grad():
            self.fc8.weight.copy_(model.classifier.fc8.weight)
            self.fc8.bias.copy_(model.classifier.fc8.bias)
        self.fc8.to(self.devices[0])
        self.model_options = {"num_classes": model.classifier.fc8.out_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.towers
        # each tower sees the whole image (conv1 of both GPUs read the input), (B, 3, H, W)
        lower = [a.lower(x.to(a.device, non_blocking=True)),
                 b.lower(x.to(b.device, non_blocking=True))]  # 2 x (B, 128, 13, 13) at 224
        # exchange 1: conv3 takes both towers' maps
        lower = [torch.cat([h.to(t.device, non_blocking=True) for h in lower], 1) for t in (a, b)]
        upper = [t.upper(t.conv3(h)) for t, h in zip((a, b), lower, strict=True)]  # (B, 128, 6, 6)
        flat = [torch.flatten(t.avgpool(h), 1) for t, h in zip((a, b), upper, strict=True)]
        # exchange 2: fc6 takes both towers' conv5 maps (channel order = the grouped model's)
        hidden = [torch.cat([h.to(t.device, non_blocking=True) for h in flat], 1) for t in (a, b)]
        hidden = [t.drop6(t.relu6(t.fc6(h))) for t, h in zip((a, b), hidden, strict=True)]
        # exchange 3: fc7 takes both fc6 halves
        hidden = [torch.cat([h.to(t.device, non_blocking=True) for h in hidden], 1) for t in (a, b)]
        hidden = [t.drop7(t.relu7(t.fc7(h))) for t, h in zip((a, b), hidden, strict=True)]
        # exchange 4: fc8 takes both fc7 halves, on the first device
        joined = torch.cat([h.to(self.devices[0], non_blocking=True) for h in hidden], 1)
        return self.fc8(joined)  # (B, num_classes) on devices[0]

    # ---- the grouped single-device model's state_dict format -----------------------------

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Keys and shapes of ``AlexNet2012.state_dict()``, tensors on the CPU."""
        out: dict[str, torch.Tensor] = {}
        for name in SPLIT_LAYERS:
            prefix = "classifier" if name.startswith("fc") else "features"
            for kind in ("weight", "bias"):
                halves = [getattr(self._layer(t, name), kind).detach().cpu() for t in self.towers]
                out[f"{prefix}.{name}.{kind}"] = torch.cat(halves, 0)
        out["classifier.fc8.weight"] = self.fc8.weight.detach().cpu()
        out["classifier.fc8.bias"] = self.fc8.bias.detach().cpu()
        return out

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        with torch.no_grad():
            for name in SPLIT_LAYERS:
                prefix = "classifier" if name.startswith("fc") else "features"
                for kind in ("weight", "bias"):
                    full = state[f"{prefix}.{name}.{kind}"]
                    for t, tower in enumerate(self.towers):
                        target = getattr(self._layer(tower, name), kind)
                        rows = target.shape[0]
                        target.copy_(full[t * rows:(t + 1) * rows])
            self.fc8.weight.copy_(state["classifier.fc8.weight"])
            self.fc8.bias.copy_(state["classifier.fc8.bias"])
        return nn.modules.module._IncompatibleKeys([], [])

    def grouped_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter under its name in the grouped model (both towers' halves of
        ``features.conv2.weight`` are called that), so that per-layer settings such as
        ``layer_weight_decay`` match the same names with and without towers."""
        for name in SPLIT_LAYERS:
            prefix = "classifier" if name.startswith("fc") else "features"
            for tower in self.towers:
                layer = self._layer(tower, name)
                for kind in ("weight", "bias"):
                    yield f"{prefix}.{name}.{kind}", getattr(layer, kind)
        yield "classifier.fc8.weight", self.fc8.weight
        yield "classifier.fc8.bias", self.fc8.bias

    @staticmethod
    def _layer(tower: Tower, name: str) -> nn.Module:
        if name in ("conv3", "fc6", "fc7"):
            return getattr(tower, name)
        return getattr(tower.lower, name, None) or getattr(tower.upper, name)

    def grouped_gradients(self) -> dict[str, torch.Tensor]:
        """Gradients in the grouped model's layout (for tests)."""
        out: dict[str, torch.Tensor] = {}
        for name in SPLIT_LAYERS:
            prefix = "classifier" if name.startswith("fc") else "features"
            for kind in ("weight", "bias"):
                halves = [getattr(self._layer(t, name), kind).grad.cpu() for t in self.towers]
                out[f"{prefix}.{name}.{kind}"] = torch.cat(halves, 0)
        out["classifier.fc8.weight"] = self.fc8.weight.grad.cpu()
        out["classifier.fc8.bias"] = self.fc8.bias.grad.cpu()
        return out


def parse_devices(text: str) -> list[torch.device]:
    """``"cuda:0,cuda:1"`` -> two devices, each checked to exist."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(names) != 2:
        raise AlexNetError(f"towers_on_devices takes two devices, e.g. cuda:0,cuda:1; got {text!r}")
    devices = []
    for name in names:
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise AlexNetError(f"towers_on_devices: unknown device {name!r}") from error
        if device.type == "cuda" and (not torch.cuda.is_available()
                                      or (device.index or 0) >= torch.cuda.device_count()):
            raise AlexNetError(f"towers_on_devices: {name} is not available here")
        devices.append(device)
    return devices
