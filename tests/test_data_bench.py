"""alexnet bench data runs end to end on a tiny folder (speed itself is not tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet.cli import main
from data_helpers import image_folder


def test_bench_data_runs_and_reports_the_ratio(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = image_folder(tmp_path / "src", {"train": {"a": 6, "b": 6}}, shape=(36, 44))
    code = main(["bench", "data", "--source", str(source), "--store", str(tmp_path / "store"),
                 "--size", "32", "--crop", "24", "--batch-size", "4", "--workers", "1",
                 "--batches", "1", "--rounds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(a) torchvision" in out and "(b) store" in out and "ratio" in out
    assert "12 images of 32x32" in out


def test_bench_without_target_names_the_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench"]) == 2
    assert "data" in capsys.readouterr().err
