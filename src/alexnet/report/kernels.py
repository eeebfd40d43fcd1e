"""Two numbers for Fig. 3: are the first-layer kernels learned structure, and is one tower
colour-agnostic while the other is colour-specific (§6.1)?

- ``adjacent_correlation``: the Pearson correlation of horizontally and of vertically
  adjacent weights within each kernel (over its three colour planes), the two averaged,
  then averaged over the kernels. Independent random weights give about 0; the smooth
  Gabor-like and colour-blob kernels of Fig. 3 give a large positive value.
- ``colour_specificity``: how much of a kernel is colour rather than grey. Per kernel, the
  root-mean-square deviation of its R, G, B weights from their mean at each pixel (the
  spread across RGB) over the root-mean-square deviation of all its weights from the kernel
  mean (the kernel's spread), averaged over the kernels: 0 for a grey kernel (the same
  pattern in R, G and B), sqrt(2/3) ~ 0.82 for independent random weights, up to 1 for a
  kernel whose colour planes cancel (an opponent-colour blob).

Both take conv weights (K, 3, h, w); the towers are the first and second halves of K, as
conv2 reads them (§3.2). With two towers, ``tower_difference`` is tower 2's mean colour
specificity minus tower 1's with a 95% bootstrap interval over the kernels (each tower's
kernels resampled on their own): whether the towers differ at all, and by how much.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alexnet.models import create_model


def _pair_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per kernel (K, n) x (K, n) -> (K,): Pearson correlation of the paired values."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denominator = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt().clamp_min(1e-30)
    return (a * b).sum(1) / denominator


def adjacent_correlation(weight: torch.Tensor) -> float:
    """Mean over kernels of (horizontal + vertical adjacent-weight correlation) / 2."""
    w = weight.detach().double()  # (K, C, h, w)
    kernels = w.shape[0]
    horizontal = _pair_correlation(w[..., :, :-1].reshape(kernels, -1),
                                   w[..., :, 1:].reshape(kernels, -1))
    vertical = _pair_correlation(w[..., :-1, :].reshape(kernels, -1),
                                 w[..., 1:, :].reshape(kernels, -1))
    return float(((horizontal + vertical) / 2).mean())


def kernel_colour_specificity(weight: torch.Tensor) -> torch.Tensor:
    """Per kernel (K,): rms(RGB spread at each pixel) / rms(spread of the kernel)."""
    w = weight.detach().double()  # (K, 3, h, w)
    colour = w - w.mean(1, keepdim=True)  # deviation from the grey value at each pixel
    whole = w - w.mean((1, 2, 3), keepdim=True)
    return colour.pow(2).sum((1, 2, 3)).sqrt() / whole.pow(2).sum((1, 2, 3)).sqrt().clamp_min(1e-30)


def colour_specificity(weight: torch.Tensor) -> float:
    """Mean over kernels of rms(RGB spread at each pixel) / rms(spread of the kernel)."""
    return float(kernel_colour_specificity(weight).mean())


def tower_difference(first: torch.Tensor, second: torch.Tensor, resamples: int = 10_000,
                     seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Mean colour specificity of ``second``'s kernels minus ``first``'s, with a percentile
    bootstrap interval: each tower's kernels are resampled with replacement on their own
    (the towers are two groups of kernels, not pairs)."""
    a, b = kernel_colour_specificity(first), kernel_colour_specificity(second)
    generator = torch.Generator().manual_seed(seed)
    draws_a = a[torch.randint(len(a), (resamples, len(a)), generator=generator)].mean(1)
    draws_b = b[torch.randint(len(b), (resamples, len(b)), generator=generator)].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(draws_b - draws_a, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return {"difference": float(b.mean() - a.mean()), "interval": [float(low), float(high)],
            "level": level, "resamples": resamples}


def conv1_weight(model: nn.Module) -> torch.Tensor:
    """The first convolution's weight (K, 3, h, w) of any of our models."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight
    raise ValueError("the model has no convolution")


def kernel_measures(weight: torch.Tensor, towers: int = 1,
                    initial: torch.Tensor | None = None) -> dict[str, Any]:
    """Both measures of ``weight``, over all kernels and per tower, and (if given) of the
    ``initial`` weights the run started from."""
    halves = torch.chunk(weight, towers, dim=0)
    result: dict[str, Any] = {
        "adjacent_correlation": adjacent_correlation(weight),
        "colour_specificity": colour_specificity(weight),
        "towers": [{"tower": t + 1, "kernels": len(h),
                    "adjacent_correlation": adjacent_correlation(h),
                    "colour_specificity": colour_specificity(h)} for t, h in enumerate(halves)],
    }
    if towers == 2:
        result["tower_difference"] = tower_difference(*halves)
    if initial is not None:
        result["initial"] = {"adjacent_correlation": adjacent_correlation(initial),
                             "colour_specificity": colour_specificity(initial)}
    return result


def initial_conv1(model_name: str, model_options: dict[str, Any], config: dict[str, Any]
                  ) -> torch.Tensor | None:
    """conv1 as the run started: the model rebuilt from its options and the run's seed, in
    the order the training loop builds it (``torch.manual_seed(seed)``, then
    ``create_model``). None when the run started from other weights (init_from / weights)
    or its config.json has no seed."""
    if config.get("init_from") or config.get("weights") or "seed" not in config:
        return None
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(config["seed"]))
        model = create_model(model_name, **model_options)
    finally:
        torch.random.set_rng_state(state)
    return conv1_weight(model).detach()


def measures_table_rows(measures: dict[str, Any]) -> list[list[str]]:
    """Rows (what, kernels, adjacent-weight correlation, colour specificity) for the page."""
    rows = [["all kernels", str(sum(t["kernels"] for t in measures["towers"])),
             f"{measures['adjacent_correlation']:.3f}", f"{measures['colour_specificity']:.3f}"]]
    if len(measures["towers"]) > 1:
        rows += [[f"tower {t['tower']}", str(t["kernels"]), f"{t['adjacent_correlation']:.3f}",
                  f"{t['colour_specificity']:.3f}"] for t in measures["towers"]]
    difference = measures.get("tower_difference")
    if difference is not None:
        low, high = difference["interval"]
        rows.append(["tower 2 - tower 1", "", "",
                     f"{difference['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"])
    initial = measures.get("initial")
    if initial is not None:
        rows.append(["at initialisation (same seed)", rows[0][1],
                     f"{initial['adjacent_correlation']:.3f}", f"{initial['colour_specificity']:.3f}"])
    return rows
