"""``alexnet report RUN_DIR`` on a real (tiny) training run, opened in headless Chromium:
every figure must load and the tables must be there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.errors import AlexNetError
from alexnet.report import ReportOptions, build_report
from alexnet.train import train
from train_helpers import make_store, tiny_config

FIGURES = ("conv1_kernels.png", "curves.png", "top5.png", "confusion.png", "neighbors.png")
TABLES = ("results", "codes", "per-class", "config", "environment", "summary")
FAST = ReportOptions(samples=4, queries=2, k=3, code_bits=8, code_steps=20, ten_crop=True, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    store = make_store(root)
    # three epochs with an lr step after the first, so the curves have a step to mark
    config = tiny_config(store, root / "run", epochs=3, schedule="step", lr_milestones=[1])
    result = train(config, log=lambda _line: None)
    assert result.status == "finished"
    return result.run_dir


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed and could not be installed (make test runs "
                "scripts/ensure-chromium.sh, which needs root and Debian's package mirror)")


def render(page: Path, profile: Path) -> str:
    """The DOM after load (and after the page's image check ran), from headless Chromium."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
               "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout


def test_report_of_a_training_run_loads_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = build_report(run_dir, FAST)
    assert page == run_dir / "report.html"
    for name in FIGURES:
        assert (run_dir / "figures" / name).stat().st_size > 1000, name
    html = page.read_text()
    assert html.count("<img ") == len(FIGURES) and 'src="figures/' in html
    assert "10 crop" in html or "ten_crop" in html  # the 10-patch evaluation row
    assert "lr 0.001" not in html  # lr annotations live in the PNG, not as page text

    dom = render(page, tmp_path / "profile")
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's image check did not run"
    assert loaded.group(1) == loaded.group(2) == str(len(FIGURES))
    for table in TABLES:
        assert re.search(rf'<table id="{table}">\s*<thead>', dom), table
    assert '<p class="missing">' not in dom

    # The check is not vacuous: a missing figure is counted and shown as such.
    (run_dir / "figures" / "top5.png").unlink()
    dom = render(page, tmp_path / "profile2")
    assert f'data-images-loaded="{len(FIGURES) - 1}/{len(FIGURES)}"' in dom
    assert '<p class="missing">figure not found: top5.png' in dom


def test_embedded_report_and_the_cli(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", str(run_dir), "--embed-images", "--samples", "2", "--queries", "1",
                 "--k", "2", "--code-bits", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and str(run_dir / "report.html") in out
    html = (run_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'id="codes"' not in html  # --code-bits 0


def test_missing_data_or_run_folder(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("figures", "report.*"))
    page = build_report(copy, ReportOptions(data=str(tmp_path / "gone"), progress=False))
    html = page.read_text()
    assert "Data not found" in html and html.count("<img ") == 2  # kernels and curves still
    with pytest.raises(AlexNetError, match="run folder not found"):
        build_report(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlexNetError, match="is not a run folder"):
        build_report(tmp_path / "empty")


def test_data_from_config_prefers_the_prepared_store(tmp_path: Path) -> None:
    from alexnet.data.store import data_from_config

    images = tmp_path / "imagenette"
    images.mkdir()
    config = {"data": str(images), "store_dir": str(tmp_path / "stores"), "image_size": 128}
    assert data_from_config(config) == str(images)  # not prepared (any more): the images
    store = tmp_path / "stores" / "imagenette-128"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text("{}")
    assert data_from_config(config) == str(store)
    assert data_from_config({"data": "torchvision:imagenette", "store_dir": str(tmp_path / "stores"),
                             "image_size": 128}) == str(store)
    assert data_from_config({}) is None
