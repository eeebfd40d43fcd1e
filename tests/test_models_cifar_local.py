"""cifar_conv_local: cuda-convnet's layers-conv-local-13pct.cfg / -11pct.cfg (§3.3's CIFAR-10 net).

The facts below are read from the cfg files (file:line); the net's shapes and parameter count
are checked against them, and the locally-connected layer against an independent
im2col (``F.unfold``) reference.

| fact | value | source |
|---|---|---|
| conv1: 64 filters 5x5, padding 2, stride 1, on 3 channels | | 13pct.cfg:15-19 |
| pool1 / pool2: max, sizeX 3, stride 2, start 0, outputsX 0 (computed, rounded up) | | 13pct.cfg:27-32, 50-55 |
| conv2: 64 filters 5x5, padding 2, on 64 channels | | 13pct.cfg:38-42 |
| local3: type=local, 32 filters 3x3, padding 1, on 64 channels | | 13pct.cfg:59-65 |
| local4: type=local, 32 filters 3x3, padding 1, on 32 channels | | 13pct.cfg:70-76 |
| fc10: 10 outputs | | 13pct.cfg:82 |
| initW conv1 1e-4, conv2 0.01, local3 / local4 0.04, fc10 0.01 | | 13pct.cfg:21, 44, 67, 78, 84 |
| epsW 0.001, epsB 0.002, momentum 0.9 for every layer | | layer-params-13pct.cfg:5-8 ... 33-36 |
| wc 0 for conv1 / conv2, 0.004 for local3, local4, fc10 | | layer-params-13pct.cfg:9, 16, 23, 30, 37 |
| 11pct: rnorm1 after conv1, rnorm2 after conv2, before the pools: crossMap, size 5, scale 0.001, pow 0.75 | | 11pct.cfg:22-29, 54-61 |
| crops: crop_border 4 -> 24x24, random position and flip (training) | | convdata_cifar.py (CroppedCIFARDataProvider) |
| local layer: weights per position (modules x filterPixels x filterChannels), biases modules x filters | | layer.py LocalUnsharedLayerParser |
| pooled size ceil((size - sizeX) / stride) + 1 | | layer.py PoolLayerParser |

13pct files: computerhistory/AlexNet-Source-Code example-layers/; the 11pct file (not in that
release) from cuda-convnet's own example-layers/ (the dnouri/cuda-convnet mirror).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import AlexNetError
from alexnet.models import MODELS, create_model
from alexnet.models.cifar_local import LocallyConnected2d
from alexnet.models.layers import LocalResponseNorm

# (layer, output shape for a 24x24 input, weights, biases), from the cfg facts above:
# 24 -> pool ceil(21 / 2) + 1 = 12 -> pool ceil(9 / 2) + 1 = 6; a local layer has
# 6 * 6 positions, each with filters x (channels * 3 * 3) weights and one bias per filter.
CFG_LAYERS = [
    ("conv1", (64, 24, 24), 64 * 3 * 5 * 5, 64),
    ("pool1", (64, 12, 12), 0, 0),
    ("conv2", (64, 12, 12), 64 * 64 * 5 * 5, 64),
    ("pool2", (64, 6, 6), 0, 0),
    ("local3", (32, 6, 6), 36 * 32 * 64 * 3 * 3, 36 * 32),
    ("local4", (32, 6, 6), 36 * 32 * 32 * 3 * 3, 36 * 32),
    ("fc10", (10,), 32 * 6 * 6 * 10, 10),
]


def _reference_local(x: torch.Tensor, layer: LocallyConnected2d) -> torch.Tensor:
    """im2col with F.unfold, then one matrix product per output position."""
    k, out = layer.kernel_size, layer.output_size
    columns = F.unfold(x, k, padding=layer.padding, stride=layer.stride)  # (B, C*k*k, L)
    weight = layer.weight.reshape(out * out, layer.out_channels, -1)  # (L, O, C*k*k)
    y = torch.stack([columns[:, :, p] @ weight[p].T for p in range(out * out)], dim=2)
    bias = layer.bias.view(layer.out_channels, out * out)
    return (y + bias).view(x.shape[0], layer.out_channels, out, out)


@pytest.mark.parametrize(("channels", "size", "padding", "stride"), [(3, 6, 1, 1), (4, 7, 0, 2),
                                                                      (2, 5, 2, 1)])
def test_locally_connected_layer_matches_an_unfold_reference(channels: int, size: int,
                                                             padding: int, stride: int) -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(channels, 5, 3, size, padding=padding, stride=stride).double()
    x = torch.randn(2, channels, size, size, dtype=torch.float64, requires_grad=True)
    ours, reference = layer(x), _reference_local(x, layer)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (x, layer.weight, layer.bias), grad)
    reference_grads = torch.autograd.grad(reference, (x, layer.weight, layer.bias), grad)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_locally_connected_with_the_same_weights_everywhere_is_a_convolution() -> None:
    torch.manual_seed(1)
    layer = LocallyConnected2d(3, 4, 3, 8, padding=1).double()
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    with torch.no_grad():
        layer.weight.copy_(conv.weight.expand_as(layer.weight))
        layer.bias.copy_(conv.bias.view(4, 1, 1).expand(4, 8, 8).reshape(-1))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), conv(x))
    # channels_last inputs (the training views' layout) give the same numbers
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), conv(x))


def test_locally_connected_weights_differ_per_position() -> None:
    layer = LocallyConnected2d(1, 1, 1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(4.0).view(2, 2, 1, 1, 1, 1))
        layer.bias.zero_()
    y = layer(torch.ones(1, 1, 2, 2))
    assert y.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("lrn", [False, True])
def test_the_net_s_shapes_and_parameters_are_the_cfg_s(lrn: bool) -> None:
    model = create_model("cifar_conv_local", lrn=lrn).eval()
    x = torch.randn(2, 3, 24, 24)
    shapes = {}
    for name, layer in model.named_layers():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    layers = dict(model.named_layers())
    for name, shape, weights, biases in CFG_LAYERS:
        assert shapes[name] == shape, name
        if weights:
            assert layers[name].weight.numel() == weights and layers[name].bias.numel() == biases
    total = sum(w + b for _, _, w, b in CFG_LAYERS)
    assert sum(p.numel() for p in model.parameters()) == total == MODELS["cifar_conv_local"].num_params
    assert MODELS["cifar_conv_local"].input_size == 24
    norms = [m for m in model.modules() if isinstance(m, LocalResponseNorm)]
    assert len(norms) == (2 if lrn else 0)
    if lrn:
        # 11pct.cfg: rnorm after the ReLU of conv1 / conv2, before the pooling
        names = [n for n, _ in model.named_layers()]
        assert names[:4] == ["conv1", "relu1", "norm1", "pool1"]
        assert names[4:8] == ["conv2", "relu2", "norm2", "pool2"]


def test_the_11pct_rnorm_is_cuda_convnet_s_cross_map_norm() -> None:
    """cuda-convnet: b = a / (minDiv + scale / size * sum a^2) ** pow, minDiv 1 (layer.py)."""
    norm = create_model("cifar_conv_local", lrn=True).features.norm1
    x = torch.randn(2, 64, 5, 5, dtype=torch.float64) * 30
    torch.testing.assert_close(norm(x), nn.LocalResponseNorm(5, alpha=1e-3, beta=0.75, k=1.0)(x))


def test_paper_init_uses_the_cfg_s_initw() -> None:
    torch.manual_seed(0)
    model = create_model("cifar_conv_local")
    layers = dict(model.named_layers())
    for name, std in (("conv1", 1e-4), ("conv2", 0.01), ("local3", 0.04), ("local4", 0.04),
                      ("fc10", 0.01)):
        assert layers[name].weight.std().item() == pytest.approx(std, rel=0.1), name
        assert layers[name].bias.abs().max().item() == 0.0


def test_a_wrong_input_size_is_a_one_line_error() -> None:
    model = create_model("cifar_conv_local")
    with pytest.raises(AlexNetError, match="built for 6x6 maps got"):
        model(torch.randn(1, 3, 32, 32))
    assert create_model("cifar_conv_local", input_size=32)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_alexnet_info_counts_the_local_layers() -> None:
    from alexnet.models.info import layer_table

    rows = {row.name: row for row in layer_table("cifar_conv_local")}
    # a local layer does a convolution's work: positions x filters x (channels x 3 x 3)
    assert rows["local3"].mult_adds == 36 * 32 * 64 * 9 and rows["local4"].mult_adds == 36 * 32 * 32 * 9
    assert rows["local3"].source == "cuda-convnet type=local" and rows["local3"].output_shape == (32, 6, 6)
