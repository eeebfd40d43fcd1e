"""cuda-convnet's CIFAR-10 net with locally-connected layers, the net of §3.3's CIFAR-10 claim.

§3.3: "a four-layer CNN achieved a 13% test error rate without normalization and 11% with
normalization"; its footnote points to cuda-convnet, whose example-layers/ hold exactly
these two nets: layers-conv-local-13pct.cfg (no normalisation) and layers-conv-local-11pct.cfg
(the same plus a cross-map response normalisation after conv1 and conv2). Both train on
24x24 crops of the 32x32 images with reflections (cuda-convnet's CroppedCIFARDataProvider,
crop_border 4; convdata_cifar.py), so ``input_size`` is 24. Shapes (B = batch):

    conv1 64x5x5 pad 2, ReLU (-> rnorm1)  -> max-pool 3/2     (B, 64, 12, 12)
    conv2 64x5x5 pad 2, ReLU (-> rnorm2)  -> max-pool 3/2     (B, 64, 6, 6)
    local3 32x3x3 pad 1, unshared, ReLU                       (B, 32, 6, 6)
    local4 32x3x3 pad 1, unshared, ReLU                       (B, 32, 6, 6)
    fc10                                                      (B, 10)

cuda-convnet rounds pooled sizes up (layer.py PoolLayerParser: ceil((24 - 3) / 2) + 1 = 12),
hence ``ceil_mode=True``. Its ``local`` layer is a convolution whose filters are not shared:
every output position has its own weights and biases (layer.py LocalUnsharedLayerParser:
weights modules x filterPixels x filterChannels per filter, biases modules x filters).
The 11pct net's ``rnorm`` is ``crossMap=1, size=5, scale=0.001, pow=0.75`` with cuda-convnet's
default ``minDiv`` 1 and ``scale /= size`` (layer.py NormLayerParser): exactly
``LocalResponseNorm(5, alpha=0.001, beta=0.75, k=1)`` here.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models.init import initialize
from alexnet.models.layers import LocalResponseNorm, scaled

# cuda-convnet initW per layer (layers-conv-local-13pct.cfg); biases start at 0.
PAPER_INIT = {"conv1": (1e-4, 0.0), "conv2": (0.01, 0.0), "local3": (0.04, 0.0),
              "local4": (0.04, 0.0), "fc10": (0.01, 0.0)}

PAPER_SECTIONS = {
    "conv": "cuda-convnet layers-conv-local-13pct", "relu": "§3.1",
    "norm": "§3.3 (layers-conv-local-11pct rnorm, crossMap)", "pool": "cuda-convnet",
    "local": "cuda-convnet type=local", "flatten": "-", "fc10": "cuda-convnet",
}  # fmt: skip


class LocallyConnected2d(nn.Module):
    """A convolution with unshared weights: output position (i, j) has its own filters.

    ``weight``: (out_h, out_w, out_channels, in_channels, k, k); ``bias``: one per filter and
    position as cuda-convnet's local layer has, stored flat (out_channels * out_h * out_w,)
    so that the optimizer treats it as a bias (no weight decay, cuda-convnet's epsB). The
    input side is fixed when the layer is built (there is one set of weights per position).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: int,
                 padding: int = 0, stride: int = 1) -> None:
        super().__init__()
        out = (input_size + 2 * padding - kernel_size) // stride + 1
        if out < 1:
            raise AlexNetError(f"locally-connected layer: a {input_size}px input with kernel "
                               f"{kernel_size}, padding {padding} gives no output; use a larger input")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.input_size, self.padding, self.stride, self.output_size = input_size, padding, stride, out
        self.weight = nn.Parameter(torch.empty(out, out, out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels * out * out))
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size**2

    def reset_parameters(self) -> None:
        """PyTorch's Conv2d default (uniform, bound 1 / sqrt(fan_in)) per position."""
        bound = 1.0 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise AlexNetError(f"locally-connected layer built for {self.input_size}x"
                               f"{self.input_size} maps got {tuple(x.shape[-2:])}; build the "
                               "model with input_size= the crop size")
        batch, out, positions = x.shape[0], self.output_size, self.output_size**2
        # im2col: (B, C*k*k, L), (C, kh, kw) flattened as the weight's last three dimensions;
        # F.unfold's backward is col2im, ~5x faster here than that of Tensor.unfold windows
        # (contiguous operands throughout: torch's CPU bmm and im2col fall back to slow
        # per-slice copies on permuted or channels_last ones, ~50x slower here)
        columns = F.unfold(x.contiguous(), self.kernel_size, padding=self.padding,
                           stride=self.stride)
        columns = columns.permute(2, 0, 1).contiguous()  # (L, B, C*k*k)
        weight = self.weight.reshape(positions, self.out_channels, -1).to(columns.dtype)
        y = torch.bmm(columns, weight.transpose(1, 2).contiguous())  # (L, B, O): one per position
        y = y.permute(1, 2, 0).reshape(batch, self.out_channels, out, out)
        bias = self.bias.view(self.out_channels, out, out)
        return y + bias.to(y.dtype)  # (B, O, out, out)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"input_size={self.input_size}, padding={self.padding}, stride={self.stride}")


class CudaConvnetLocal(nn.Module):
    """conv-(rnorm)-pool-conv-(rnorm)-pool-local-local-fc, ``input_size`` x ``input_size`` inputs."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        lrn: bool = False,
        input_size: int = 24,
        width: float = 1.0,
        init: str = "paper",
    ) -> None:
        super().__init__()
        if width <= 0:
            raise AlexNetError(f"width must be positive, got {width}")
        c1, c2, c3 = scaled(64, width), scaled(64, width), scaled(32, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        size, previous = input_size, in_channels
        for i, channels in ((1, c1), (2, c2)):
            layers[f"conv{i}"] = nn.Conv2d(previous, channels, 5, padding=2)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            if lrn:  # layers-conv-local-11pct.cfg: rnorm between the ReLU and the pooling
                layers[f"norm{i}"] = LocalResponseNorm(size=5, alpha=1e-3, beta=0.75, k=1.0)
            layers[f"pool{i}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
            size = math.ceil((size - 3) / 2) + 1
            previous = channels
        if size < 1:
            raise AlexNetError(f"input_size {input_size} is too small for cifar_conv_local")
        for i in (3, 4):
            layers[f"local{i}"] = LocallyConnected2d(previous, c3, 3, size, padding=1)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            previous = c3
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(), fc10=nn.Linear(previous * size * size, num_classes)))
        named = dict(self.named_layers())
        shared = {n: m for n, m in named.items() if isinstance(m, nn.Conv2d | nn.Linear)}
        initialize(shared, init, {"paper": PAPER_INIT}, "relu", "fc10")
        for name, layer in named.items():
            if isinstance(layer, LocallyConnected2d):
                _initialize_local(layer, name, init)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        return [*self.features.named_children(), *self.classifier.named_children()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)


def _initialize_local(layer: LocallyConnected2d, name: str, scheme: str) -> None:
    """The schemes of models/init.py for a layer torch's fan-in rule cannot read (its weight
    has the positions in front): paper = cuda-convnet's initW, kaiming = He fan-in normal."""
    if scheme == "pytorch":
        layer.reset_parameters()
        return
    std = PAPER_INIT[name][0] if scheme == "paper" else math.sqrt(2.0 / layer.fan_in)
    with torch.no_grad():
        layer.weight.normal_(0.0, std)
        layer.bias.zero_()
