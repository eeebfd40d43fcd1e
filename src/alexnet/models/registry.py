"""The model registry: every architecture is created by name, never by if/elif.

Each entry records what the paper (or its source) says the network is, so that tests can
check every registered model against its own published parameter count.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from alexnet.errors import AlexNetError, unknown_choice
from alexnet.models.alexnet2012 import AlexNet2012
from alexnet.models.alexnet2014 import AlexNet2014
from alexnet.models.cifar import CudaConvnetCifar
from alexnet.models.cifar_local import CudaConvnetLocal


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    source: str  # paper section or file the architecture comes from
    input_size: int  # the side of the square input it was designed for
    num_params: int  # at its default options (1000 or 10 classes), from the source
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the builder's defaults


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "alexnet2012", AlexNet2012,
            "the 2012 paper's two-tower network with LRN (Fig. 2)", "§3, Fig. 2", 224, 60_965_224,
        ),
        ModelSpec(
            "alexnet2014", AlexNet2014,
            "torchvision's single-tower alexnet ('one weird trick', 2014)",
            "arXiv:1404.5997; torchvision models/alexnet.py", 224, 61_100_840,
        ),
        ModelSpec(
            "cifar_18pct", CudaConvnetCifar,
            "cuda-convnet's CIFAR-10 net with same-map response norm (18% error)",
            "cuda-convnet example-layers/layers-18pct.cfg; §3.3", 32, 89_578,
        ),
        ModelSpec(
            "cifar_80sec", CudaConvnetCifar,
            "cuda-convnet's CIFAR-10 net without response norm (26% error in 80 s)",
            "cuda-convnet example-layers/layers-80sec.cfg", 32, 89_578, {"lrn": False},
        ),
        ModelSpec(
            "cifar_fig1", CudaConvnetCifar,
            "the four-layer CIFAR-10 net of Fig. 1 (activation relu|tanh)",
            "Fig. 1, §3.1", 32, 89_578, {"lrn": False},
        ),
        ModelSpec(
            "cifar_conv_local", CudaConvnetLocal,
            "cuda-convnet's CIFAR-10 net with locally-connected layers (13% error; lrn=True: "
            "the 11% net), the net of §3.3's CIFAR-10 claim",
            "cuda-convnet example-layers/layers-conv-local-13pct.cfg, -11pct.cfg; §3.3", 24,
            1_116_490,
        ),
    )
}


def list_models() -> list[str]:
    return list(MODELS)


def model_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts, with their defaults (the registry's overrides applied)."""
    spec = _spec(name)
    parameters = inspect.signature(spec.builder).parameters
    return {key: spec.defaults.get(key, p.default) for key, p in parameters.items()}


def create_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model; unknown names or options raise a one-line AlexNetError."""
    spec = _spec(name)
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AlexNetError(
            f"unknown option {unknown[0]!r} for model {name!r}; valid: {', '.join(valid)}"
        )
    return spec.builder(**{**spec.defaults, **options})


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_choice("model", name, MODELS)
    return MODELS[name]
