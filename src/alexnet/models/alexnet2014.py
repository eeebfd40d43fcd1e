"""The single-tower AlexNet of Krizhevsky (2014), "One weird trick for parallelizing
convolutional neural networks" - the network torchvision calls ``alexnet``.

Widths 64/192/384/256/256, no towers, no LRN. The module layout is torchvision's, so the
state_dict has the same keys and shapes and IMAGENET1K_V1 weights load unchanged
(61,100,840 parameters at 1000 classes). Like torchvision, dropout sits *before* fc6 and
fc7; the 2012 paper puts it after them (§4.2) - kept here for weight compatibility.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.init import initialize
from alexnet.models.layers import ACTIVATIONS, activation_layer, max_pool, scaled

# The 2012 paper's init rule applied to the same layers (bias 1 in conv2, conv4, conv5, fc6, fc7).
PAPER_INIT = {
    "features.0": (0.01, 0.0), "features.3": (0.01, 1.0), "features.6": (0.01, 0.0),
    "features.8": (0.01, 1.0), "features.10": (0.01, 1.0), "classifier.1": (0.01, 1.0),
    "classifier.4": (0.01, 1.0), "classifier.6": (0.01, 0.0),
}  # fmt: skip

# Readable names for torchvision's numbered layers (used by `alexnet info`).
LAYER_NAMES = {
    "features.0": "conv1", "features.1": "relu1", "features.2": "pool1",
    "features.3": "conv2", "features.4": "relu2", "features.5": "pool2",
    "features.6": "conv3", "features.7": "relu3", "features.8": "conv4", "features.9": "relu4",
    "features.10": "conv5", "features.11": "relu5", "features.12": "pool5",
    "avgpool": "avgpool", "classifier.0": "drop6", "classifier.1": "fc6",
    "classifier.2": "relu6", "classifier.3": "drop7", "classifier.4": "fc7",
    "classifier.5": "relu7", "classifier.6": "fc8",
}  # fmt: skip


class AlexNet2014(nn.Module):
    """torchvision-compatible single-tower AlexNet."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        activation: str = "relu",
        overlapping_pooling: bool = True,
        dropout: float = 0.5,
        width: float = 1.0,
        init: str = "pytorch",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise AlexNetError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise AlexNetError(f"dropout must be in [0, 1), got {dropout}")
        if width <= 0:
            raise AlexNetError(f"width must be positive, got {width}")
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in (64, 192, 384, 256, 256))
        hidden = scaled(4096, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2),
            activation_layer(activation),
            max_pool(overlapping_pooling),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            activation_layer(activation),
            max_pool(overlapping_pooling),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            activation_layer(activation),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            activation_layer(activation),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            activation_layer(activation),
            max_pool(overlapping_pooling),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, hidden),
            activation_layer(activation),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            activation_layer(activation),
            nn.Linear(hidden, num_classes),
        )
        learned = {n: m for n, m in self.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
        initialize(learned, init, {"paper": PAPER_INIT}, activation, "classifier.6")

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """(short name, module) for every layer in forward order, named as in the paper."""
        modules = dict(self.named_modules())
        return [(short, modules[full]) for full, short in LAYER_NAMES.items()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 256, 6, 6) at 224
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
