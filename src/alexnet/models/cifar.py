"""Krizhevsky's small CIFAR-10 networks (cuda-convnet, 2011-2012), for the paper's
CIFAR-10 claims: Fig. 1 (ReLU vs tanh) and §3.3 (LRN: 13% -> 11% test error).

``cifar_18pct`` is cuda-convnet's example-layers/layers-18pct.cfg ("18% error on CIFAR-10
in 20 minutes"), 32x32 input (B = batch):

    conv1 32x5x5 pad 2 -> max-pool 3/2 -> ReLU -> rnorm      (B, 32, 16, 16)
    conv2 32x5x5 pad 2 -> ReLU -> avg-pool 3/2 -> rnorm      (B, 32, 8, 8)
    conv3 64x5x5 pad 2 -> ReLU -> avg-pool 3/2               (B, 64, 4, 4)
    fc10                                                     (B, 10)

cuda-convnet rounds pooled sizes up (32 -> 16 -> 8 -> 4), hence ``ceil_mode=True``. Its
``rnorm`` is a *same-map* normalisation over a 3x3 spatial window (size 3, scale 5e-5,
pow 0.75), not the cross-channel LRN of the ImageNet net. The ReLU of conv1 sits after its
max-pool there; max-pooling commutes with ReLU, so it is placed right after conv1 here.

``cifar_80sec`` is layers-80sec.cfg ("26% error in 80 seconds"): the same without rnorm.
``cifar_fig1`` is the "four-layer convolutional neural network" of Fig. 1 (three conv layers
and one fc layer). The paper gives no more detail, so we use Krizhevsky's own four-layer
CIFAR-10 net of the time, layers-80sec, with the activation selectable (relu | tanh).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.init import initialize
from alexnet.models.layers import ACTIVATIONS, SameMapResponseNorm, activation_layer, scaled

# cuda-convnet initW per layer (layers-18pct.cfg / layers-80sec.cfg); biases start at 0.
PAPER_INIT = {"conv1": (1e-4, 0.0), "conv2": (0.01, 0.0), "conv3": (0.01, 0.0), "fc10": (0.01, 0.0)}

PAPER_SECTIONS = {
    "conv": "cuda-convnet layers-18pct", "relu": "§3.1 / Fig. 1", "norm": "§3.3 (same-map rnorm)",
    "pool": "cuda-convnet layers-18pct", "drop": "§4.2", "flatten": "-", "fc10": "cuda-convnet",
}  # fmt: skip


class CudaConvnetCifar(nn.Module):
    """conv-pool-(rnorm)-conv-pool-(rnorm)-conv-pool-fc, 32x32 inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        activation: str = "relu",
        lrn: bool = True,
        overlapping_pooling: bool = True,
        dropout: float = 0.0,
        width: float = 1.0,
        init: str = "paper",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise AlexNetError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise AlexNetError(f"dropout must be in [0, 1), got {dropout}")
        if width <= 0:
            raise AlexNetError(f"width must be positive, got {width}")
        size, stride = (3, 2) if overlapping_pooling else (2, 2)
        c1, c2, c3 = scaled(32, width), scaled(32, width), scaled(64, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        previous = in_channels
        for i, (channels, pool) in enumerate(((c1, "max"), (c2, "avg"), (c3, "avg")), start=1):
            layers[f"conv{i}"] = nn.Conv2d(previous, channels, 5, padding=2)
            layers[f"relu{i}"] = activation_layer(activation)
            layers[f"pool{i}"] = (
                nn.MaxPool2d(size, stride, ceil_mode=True)
                if pool == "max"
                else nn.AvgPool2d(size, stride, ceil_mode=True, count_include_pad=False)
            )
            if lrn and i in (1, 2):
                layers[f"norm{i}"] = SameMapResponseNorm(size=3, alpha=5e-5, beta=0.75, k=1.0)
            previous = channels
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                drop=nn.Dropout(dropout),
                fc10=nn.Linear(previous * 4 * 4, num_classes),
            )
        )
        learned = {name: m for name, m in self.named_layers() if isinstance(m, nn.Conv2d | nn.Linear)}
        initialize(learned, init, {"paper": PAPER_INIT}, activation, "fc10")

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [*self.features.named_children(), *self.classifier.named_children()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)
