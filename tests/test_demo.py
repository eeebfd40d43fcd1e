"""`alexnet demo` (what `make demo` runs) end to end on a few real Imagenette images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alexnet.cli import main


def _tiny_imagenette(shared_data: Path, root: Path, train: int = 4, val: int = 2) -> Path:
    for split, count in (("train", train), ("val", val)):
        for class_dir in sorted((shared_data / "imagenette" / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:count]:
                shutil.copy(image, target / image.name)
    return root


def test_demo_trains_evaluates_and_writes_the_report(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _tiny_imagenette(shared_data, tmp_path / "imagenette")
    run = tmp_path / "run"
    overrides = ["epochs=1", "image_size=72", "crop_size=64", "batch_size=8", "warmup_epochs=0",
                 f"store_dir={tmp_path / 'stores'}", "progress=lines"]
    argv = ["demo", "--data", str(data), "--out", str(run)]
    assert main([*argv, *(a for o in overrides for a in ("--set", o))]) == 0
    out = capsys.readouterr().out
    report = run / "report.html"
    assert f"report: {report.resolve()}" in out
    assert "top-1 error" in out
    html = report.read_text()
    assert "conv1" in html.lower() and "<table" in html
    assert (run / "checkpoints" / "best.pt").exists() and (run / "metrics.jsonl").exists()


def test_demo_without_data_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Imagenette not found" in err and "--download" in err
