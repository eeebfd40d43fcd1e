"""The model registry: every architecture is created by name, never by if/elif.

Each entry records what the paper (or its source) says the network is, so that tests can
check every registered model against its own published parameter count.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alexnet.errors import AlexNetError, short_reason, unknown_choice
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
    _check_option_types(spec, options)
    return spec.builder(**{**spec.defaults, **options})


def _check_option_types(spec: ModelSpec, options: dict[str, Any]) -> None:
    """Each option of the builder's annotated type: ``width=abc`` is a one-line error, not a
    TypeError deep in the constructor. An int is accepted where a float is expected."""
    hints = typing.get_type_hints(spec.builder.__init__ if inspect.isclass(spec.builder) else spec.builder)
    for key, value in options.items():
        kinds = _accepted_types(hints.get(key))
        if kinds is None or (value is None and type(None) in kinds):
            continue
        fits = any(isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
                   for kind in kinds)
        if not fits:
            names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            raise AlexNetError(f"model option {key}={value!r} for {spec.name} must be {names}")
        if isinstance(value, float) and not math.isfinite(value):
            raise AlexNetError(f"model option {key}={value!r} for {spec.name} must be a finite number")


def _accepted_types(hint: Any) -> tuple[type, ...] | None:
    """The plain types an annotation allows (float also takes int); None: not checked."""
    if hint is None:
        return None
    arguments = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds: list[type] = []
    for argument in arguments:
        if argument is type(None) or argument in (bool, int, str):
            kinds.append(argument)
        elif argument is float:
            kinds += [float, int]
        else:
            return None  # anything richer is the builder's to check
    return tuple(kinds)


class _ShapeCheck:
    """Whether ``name`` takes (1, C, size, size) inputs, by one forward of a model built
    on the meta device (no memory, no init arithmetic). Up to twice the size it was
    designed for, the forward runs on the CPU with uninitialised weights (tens of ms);
    beyond, on the meta device (shapes only: any size without allocating, but torch's first
    meta operations take seconds to load)."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name, self.options, self.models = name, dict(options), {}
        if "init" in model_options(name):
            self.options["init"] = "pytorch"  # shapes do not depend on it; normal_ on meta is slow
        self.channels = int(self.options.get("in_channels", 3))

    def model(self, device: str) -> nn.Module:
        if device not in self.models:
            with torch.device("meta"):
                model = create_model(self.name, **self.options).eval()
            if device != "meta":  # zeros: uninitialised memory may hold slow nan / denormals
                model = model.to_empty(device=device)
                for tensor in (*model.parameters(), *model.buffers()):
                    tensor.detach().zero_()
            self.models[device] = model
        return self.models[device]

    def device(self, size: int) -> str:
        return "cpu" if size <= 2 * _spec(self.name).input_size else "meta"

    def __call__(self, size: int) -> str | None:
        """None when ``size`` fits, else why not."""
        device = self.device(size)
        try:
            with torch.no_grad():
                self.model(device)(torch.zeros(1, self.channels, size, size, device=device))
        except (RuntimeError, AlexNetError) as error:
            return short_reason(error)
        return None


def shape_model(name: str, size: int, **options: Any) -> tuple[nn.Module, str]:
    """``name`` with uninitialised (zeroed) weights, for shapes and counts only, and the
    device an input of ``size`` should be on: "cpu", or "meta" for sizes whose activations
    would not fit in memory (see ``_ShapeCheck``)."""
    check = _ShapeCheck(name, options)
    device = check.device(size)
    return check.model(device), device


def parameter_names(name: str, **options: Any) -> list[str]:
    """The names of ``name``'s parameters (with ``options``), from a model on the meta device:
    no memory, no initialisation."""
    return [n for n, _ in _ShapeCheck(name, options).model("meta").named_parameters()]


_FITTING: dict[tuple[Any, ...], None] = {}  # (name, size, options) already found to fit


def check_input_size(name: str, size: int, what: str = "input size", **options: Any) -> None:
    """One-line error when ``name`` (with ``options``) cannot take ``size`` x ``size`` inputs:
    too small for its pooling (alexnet2012 needs 63 px: pool5 of a 3x3 map, Fig. 2) or,
    for a net whose classifier is sized for one input (cuda-convnet's 32 px), not that size."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise AlexNetError(f"{what} must be positive (a whole number of pixels), got {size!r}")
    key = (name, size, repr(sorted(options.items())))
    if key in _FITTING:
        return
    fits = _ShapeCheck(name, options)
    reason = fits(size)
    if reason is None:
        _FITTING[key] = None
        return
    design = _spec(name).input_size
    if size > design or fits(design) is not None:  # larger fails: a classifier sized for it
        raise AlexNetError(f"{what} {size} does not fit {name}, whose classifier is sized for "
                           f"{design}x{design} inputs ({reason})")
    low, high = 1, design  # the smallest size that fits, by bisection
    while low < high:
        middle = (low + high) // 2
        if fits(middle) is None:
            high = middle
        else:
            low = middle + 1
    if size >= low:  # not monotonic in the size: name the size it was made for
        raise AlexNetError(f"{what} {size} does not fit {name} ({reason}); it was made for "
                           f"{design}x{design}")
    raise AlexNetError(f"{what} {size} is too small for {name}: it needs at least {low}x{low} "
                       f"pixels ({reason})")


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_choice("model", name, MODELS)
    return MODELS[name]
