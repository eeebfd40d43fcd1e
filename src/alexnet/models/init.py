"""Weight initialisation schemes, selectable per model with ``init=...``.

- ``paper`` (§5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fc
  layers (to give the ReLUs positive inputs early), 0 elsewhere. Many reimplementations
  see a flat loss with it (Caffe's bvlc_alexnet readme; caffe issues #59, #401, #2085): with
  fixed std 0.01 through eight layers the logits start ~1e-3 small and bias 1 drowns the
  signal, so SGD at lr 0.01 barely moves for many steps.
- ``caffe``: BVLC Caffe's working variant: fc6/fc7 std 0.005 and biases 0.1 instead of 1.
- ``original2012``: what the 2012 code set (layers-145.cfg initW / initB): std 0.03 for
  conv3-5, 0.01 elsewhere; biases 1 in conv2, conv4, conv5, fc6, fc7, 0 elsewhere.
- ``kaiming`` (the presets' default): He et al. 2015 fan-in normal for every ReLU/tanh
  layer, so the activation scale is kept from layer to layer whatever the width, biases 0,
  and the classifier's last layer N(0, 0.01) so the first softmax is near uniform.
- ``pytorch``: PyTorch's own defaults (what torchvision's alexnet gets).

A model passes its own table of (std, bias) per layer for ``paper`` and ``caffe`` (and for
a scheme of its own, such as alexnet2012's ``original2012``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from alexnet.errors import unknown_choice

INIT_SCHEMES = ("paper", "caffe", "kaiming", "pytorch")  # plus any model-specific table

# (weight std, bias value) for a layer
LayerInit = tuple[float, float]


def initialize(
    layers: Mapping[str, nn.Module],
    scheme: str,
    tables: Mapping[str, Mapping[str, LayerInit]],
    activation: str = "relu",
    output_layer: str | None = None,
) -> None:
    """Initialise the named conv/linear ``layers`` with ``scheme``.

    ``tables`` maps a scheme name (``paper``, ``caffe``) to {layer name: (std, bias)};
    ``output_layer`` names the classifier's last layer (N(0, 0.01) under ``kaiming``).
    """
    valid = [s for s in INIT_SCHEMES if s in tables or s in ("kaiming", "pytorch")]
    valid += [s for s in tables if s not in INIT_SCHEMES]  # a model's own (original2012)
    if scheme not in valid:
        raise unknown_choice("init scheme", scheme, valid)
    for name, layer in layers.items():
        if scheme == "pytorch":
            layer.reset_parameters()
        elif scheme == "kaiming":
            if name == output_layer:
                nn.init.normal_(layer.weight, 0.0, 0.01)
            else:
                nonlinearity = "tanh" if activation == "tanh" else "relu"
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
            nn.init.zeros_(layer.bias)
        else:
            std, bias = tables[scheme][name]
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.constant_(layer.bias, bias)
