"""The network of Krizhevsky, Sutskever & Hinton (2012), as §3 and Fig. 2 describe it.

Two towers (one per GTX 580 in the paper) are expressed as grouped convolutions: conv2,
conv4 and conv5 see only their own tower's kernel maps (groups=2), conv3 and the fully
connected layers see both (§3.2); LRN sums over the maps of its own tower, as the 2012
code's rnorm1a/rnorm1b do. Shapes for a 224x224 input (B = batch):

    conv1 96x11x11/4 (pad 2) -> ReLU -> LRN -> max-pool 3/2   (B, 96, 27, 27)
    conv2 256x5x5 pad 2, 2 towers -> ReLU -> LRN -> max-pool    (B, 256, 13, 13)
    conv3 384x3x3 both towers -> ReLU                           (B, 384, 13, 13)
    conv4 384x3x3, 2 towers -> ReLU                             (B, 384, 13, 13)
    conv5 256x3x3, 2 towers -> ReLU -> max-pool                 (B, 256, 6, 6)
    fc6 4096 -> ReLU -> dropout; fc7 4096 -> ReLU -> dropout; fc8 (B, num_classes)

Input size: the paper says 224, but with no padding 224 gives (224 - 11) / 4 + 1 = 54.25.
Like torchvision we pad conv1 by 2, so 224 gives 55 exactly as in Fig. 2; the original
code rounds up instead and Caffe feeds 227x227 with no padding. A 227 input also works here
(conv1 gives 56, and every later map the same size as at 224).
60,965,224 parameters at 1000 classes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.init import initialize
from alexnet.models.layers import (
    ACTIVATIONS,
    CeilModePad,
    LocalResponseNorm,
    SameMapResponseNorm,
    activation_layer,
    max_pool,
    scaled,
)

# §5: N(0, 0.01); bias 1 in conv2, conv4, conv5 and fc6/fc7 "to accelerate the early stages
# of learning by providing the ReLUs with positive inputs", 0 elsewhere.
PAPER_INIT = {
    "conv1": (0.01, 0.0), "conv2": (0.01, 1.0), "conv3": (0.01, 0.0), "conv4": (0.01, 1.0),
    "conv5": (0.01, 1.0), "fc6": (0.01, 1.0), "fc7": (0.01, 1.0), "fc8": (0.01, 0.0),
}  # fmt: skip
# BVLC Caffe models/bvlc_alexnet: fc6/fc7 std 0.005 and bias 0.1 where the paper says 1.
CAFFE_INIT = {
    "conv1": (0.01, 0.0), "conv2": (0.01, 0.1), "conv3": (0.01, 0.0), "conv4": (0.01, 0.1),
    "conv5": (0.01, 0.1), "fc6": (0.005, 0.1), "fc7": (0.005, 0.1), "fc8": (0.01, 0.0),
}  # fmt: skip
# The 2012 code's own init (layers-145.cfg initW / initB; initB defaults to 0, layer.py):
# conv3-5 std 0.03 where the paper says 0.01; biases as §5 except conv3 (0) and fc8 (0).
ORIGINAL2012_INIT = {
    "conv1": (0.01, 0.0), "conv2": (0.01, 1.0), "conv3": (0.03, 0.0), "conv4": (0.03, 1.0),
    "conv5": (0.03, 1.0), "fc6": (0.01, 1.0), "fc7": (0.01, 1.0), "fc8": (0.01, 0.0),
}  # fmt: skip

PAPER_SECTIONS = {
    "conv": "§3.5 Fig. 2", "relu": "§3.1", "norm": "§3.3", "pool": "§3.4",
    "avgpool": "torchvision (identity at 224/227)", "flatten": "§3.5", "fc": "§3.5 Fig. 2",
    "drop": "§4.2", "fc8": "§3.5 (softmax in the loss)",
}  # fmt: skip

# The layers the depth ablation of §7 may remove ("removing any of the middle layers").
REMOVABLE_CONV = (2, 3, 4, 5)


class AlexNet2012(nn.Module):
    """The 2012 paper's network; every option defaults to the paper's choice."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        activation: str = "relu",
        lrn: bool = True,
        overlapping_pooling: bool = True,
        dropout: float = 0.5,
        drop_conv: int | None = None,
        towers: int = 2,
        width: float = 1.0,
        init: str = "kaiming",
        lrn1_before_relu: bool = False,
        same_map_norm2: bool = False,
        conv1_ceil_padding: bool = False,
        conv1_init_std: float | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise AlexNetError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if towers not in (1, 2):
            raise AlexNetError(f"towers must be 2 (the paper, §3.2) or 1 (half the kernels), got {towers}")
        if drop_conv is not None and drop_conv not in REMOVABLE_CONV:
            raise AlexNetError(f"drop_conv must be one of {REMOVABLE_CONV} or None, got {drop_conv}")
        if not 0.0 <= dropout < 1.0:
            raise AlexNetError(f"dropout must be in [0, 1), got {dropout}")
        if width <= 0:
            raise AlexNetError(f"width must be positive, got {width}")
        if conv1_init_std is not None and conv1_init_std <= 0:
            raise AlexNetError(f"conv1_init_std must be positive (or None: the init scheme's), "
                               f"got {conv1_init_std}")
        self.towers = towers
        self.drop_conv = drop_conv

        # §3.2: the one-tower comparison net halves every conv layer's kernels except
        # conv5's (and the fc layers'), so that both nets have about the same parameters.
        half = 0.5 if towers == 1 else 1.0
        channels = {
            1: scaled(96 * half, width, towers), 2: scaled(256 * half, width, towers),
            3: scaled(384 * half, width, towers), 4: scaled(384 * half, width, towers),
            5: scaled(256, width, towers),
        }  # fmt: skip
        hidden = scaled(4096, width)
        # Tower structure (§3.2): conv2, conv4, conv5 connect within a tower only.
        groups = {1: 1, 2: towers, 3: 1, 4: towers, 5: towers}
        kernel = {1: 11, 2: 5, 3: 3, 4: 3, 5: 3}

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        previous = in_channels
        for i in range(1, 6):
            norm = None
            if i in (1, 2) and lrn:  # §3.3: LRN after the ReLU of conv1 and conv2, per tower
                norm = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=towers)
            # layers-145.cfg: rnorm1a reads conv1a (no neuron) and the ReLU sits on pool1a, so
            # the 2012 code normalises conv1 before its ReLU (max-pooling commutes with ReLU)
            norm_first = i == 1 and lrn1_before_relu and norm is not None
            if i != drop_conv:
                stride, padding = (4, 2) if i == 1 else (1, kernel[i] // 2)
                if i == 1 and conv1_ceil_padding:
                    # layers-145.cfg conv1a padding=0; layer.py rounds the output size up
                    # (modulesX = 1 + ceil(...)): zeros only past the right and bottom edges
                    layers["pad1"] = CeilModePad(kernel[i], stride)
                    padding = 0
                layers[f"conv{i}"] = nn.Conv2d(
                    previous, channels[i], kernel[i], stride, padding, groups=groups[i]
                )
                if norm_first:
                    layers[f"norm{i}"] = norm
                layers[f"relu{i}"] = activation_layer(activation)
                previous = channels[i]
            if norm is not None and not norm_first:
                layers[f"norm{i}"] = norm
            if i == 2 and same_map_norm2:
                # layers-145.cfg cnorm2a/b (type=rnorm) after rnorm2: each map divided by its
                # own 5x5 neighbourhood, scale 0.001 (/ 25 in layer.py), pow 0.75, k 1
                layers["cnorm2"] = SameMapResponseNorm(size=5, alpha=0.001, beta=0.75, k=1.0)
            if i in (1, 2, 5):  # §3.4 / §3.5: max-pooling after both LRNs and after conv5
                layers[f"pool{i}"] = max_pool(overlapping_pooling)
        self.features = nn.Sequential(layers)
        # (B, C, 6, 6) at 224 or 227 already; other input sizes are pooled to 6x6.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc6=nn.Linear(previous * 6 * 6, hidden),
                relu6=activation_layer(activation),
                drop6=nn.Dropout(dropout),  # §4.2: dropout on the outputs of fc6 and fc7
                fc7=nn.Linear(hidden, hidden),
                relu7=activation_layer(activation),
                drop7=nn.Dropout(dropout),
                fc8=nn.Linear(hidden, num_classes),
            )
        )
        learned = {name: m for name, m in self.named_layers() if isinstance(m, nn.Conv2d | nn.Linear)}
        initialize(learned, init, {"paper": PAPER_INIT, "caffe": CAFFE_INIT,
                                   "original2012": ORIGINAL2012_INIT}, activation, "fc8")
        if conv1_init_std is not None and "conv1" in learned:
            # §5's N(0, 0.01) for conv1 alone: a small start lets the learned part of the
            # kernels dominate what Fig. 3 shows (docs/models.md)
            nn.init.normal_(learned["conv1"].weight, 0.0, conv1_init_std)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """(short name, module) for every layer in forward order: conv1, relu1, ..., fc8."""
        return [*self.features.named_children(), ("avgpool", self.avgpool),
                *self.classifier.named_children()]  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 256, 6, 6) at 224
        x = self.avgpool(x)
        return self.classifier(x)  # (B, num_classes) logits; softmax is in the loss
