"""The fast path is chosen by what this CPU can do and measures, and said in the header."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.runtime import machine
from alexnet.runtime.device import autocast_dtype
from alexnet.train import train
from train_helpers import make_store, tiny_config


def test_the_cpu_is_named_with_its_matrix_features() -> None:
    text = machine.describe_cpu()
    assert text.startswith(machine.cpu_name()) and " cores: " in text
    features = machine.cpu_features()
    assert set(features) == {"AMX", "AVX-512 BF16", "AVX-512", "VNNI", "AVX2"}
    for name in ("AMX", "AVX-512 BF16"):
        assert (f"no {name}" in text) == (not features[name])


@pytest.mark.parametrize("speedup, chosen", [(None, None), (1.05, None), (3.0, torch.bfloat16)])
def test_bf16_only_where_native_and_measured_faster(monkeypatch: pytest.MonkeyPatch,
                                                    speedup: float | None,
                                                    chosen: torch.dtype | None) -> None:
    monkeypatch.setattr(machine, "bf16_speedup", lambda: speedup)
    assert autocast_dtype(torch.device("cpu"), "auto") == chosen
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16  # asked for: given
    reason = machine.cpu_precision_reason()
    assert reason.startswith("auto: ")
    assert reason.endswith("so bf16" if chosen else ("so fp32" if speedup is None else "did not pay)"))


def test_the_measurement_is_real_where_the_cpu_has_bf16() -> None:
    speedup = machine.bf16_speedup()
    features = machine.cpu_features()
    if not (features["AMX"] or features["AVX-512 BF16"]):
        assert speedup is None
    else:
        assert speedup is not None and speedup > 0


def test_every_run_says_its_precision_choice(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    lines: list[str] = []
    train(tiny_config(store, tmp_path / "run", epochs=1, max_steps=1), log=lines.append)
    assert f"precision: {machine.cpu_precision_reason()}" in lines
