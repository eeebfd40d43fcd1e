"""``alexnet experiment`` end to end at the ``test`` scale: a few steps on a handful of images.

One run through the CLI on real CIFAR-10 images (relu-vs-tanh, the Fig. 1 curves), and the
runner's two scoring paths that share training runs (10-crop and the ensemble) on a tiny
synthetic store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.experiments import get_experiment
from alexnet.experiments.measure import VERDICTS
from alexnet.experiments.runner import run_experiment
from train_helpers import make_store


@pytest.fixture(scope="module")
def tiny_cifar(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cifar") / "store"
    prepare(shared_data / "cifar10", store, size=32, per_class=4, workers=1, progress=False)
    return store


def test_relu_vs_tanh_through_the_cli(tiny_cifar: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["experiment", "relu-vs-tanh", "--scale", "test", "--data", str(tiny_cifar),
            "--out", str(out), "--runs-dir", str(runs)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "relu-vs-tanh (test): " in printed and "relu-vs-tanh-test.md" in printed
    record = json.loads((out / "relu-vs-tanh-test.json").read_text())
    assert record["verdict"] in VERDICTS and record["scale"] == "test"
    assert record["metric"] == "epochs_to_25pct_train_error" and record["commit"]
    assert record["machine"] and record["wall_seconds"] > 0
    for name, activation in (("relu", "relu"), ("tanh", "tanh")):
        variant = record["variants"][name]
        assert variant["config"]["model_options"]["activation"] == activation
        outcome = variant["outcomes"][0]
        assert [r["epoch"] for r in outcome["epochs"]] == [1, 2]  # the Fig. 1 curve
        assert 0 <= outcome["top1_error"] <= 1 and outcome["n_images"] == 40
        assert (runs / f"{name}-seed0" / "checkpoints" / "last.pt").is_file()
    markdown = (out / "relu-vs-tanh-test.md").read_text()
    assert record["verdict"] in markdown.splitlines()[0] and "6" in markdown
    assert (out / "relu-vs-tanh-test.png").read_bytes()[:4] == b"\x89PNG"

    # the same command again re-scores the finished runs instead of training them again
    first = {n: v["outcomes"][0]["top1_error"] for n, v in record["variants"].items()}
    seconds = json.loads((runs / "relu-seed0" / "experiment.json").read_text())["train_seconds"]
    assert seconds > 0 and "training time of the runs over all invocations" in markdown
    mtime = (runs / "relu-seed0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(argv) == 0
    again = json.loads((out / "relu-vs-tanh-test.json").read_text())
    assert {n: v["outcomes"][0]["top1_error"] for n, v in again["variants"].items()} == first
    assert [r["epoch"] for r in again["variants"]["relu"]["outcomes"][0]["epochs"]] == [1, 2]
    assert (runs / "relu-seed0" / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime
    # the training time of the first invocation is kept, not replaced by the re-scoring's
    again_seconds = again["variants"]["relu"]["outcomes"][0]["train_seconds"]
    assert again_seconds >= seconds


def test_cli_user_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["experiment", "no-such"]) == 2
    assert "unknown experiment 'no-such'" in capsys.readouterr().err
    assert main(["experiment", "ensemble", "--scale", "test", "--seeds", "1",
                 "--runs-dir", str(tmp_path / "r")]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work
    assert main(["experiment", "lrn", "--scale", "huge"]) == 2
    assert main(["experiment"]) == 2
    assert main(["experiment", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 10 and listed[0].startswith("relu-vs-tanh")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("synthetic"))


def test_ten_crop_scores_one_run_per_seed_both_ways(tiny_store: Path, tmp_path: Path) -> None:
    result = run_experiment(get_experiment("ten-crop"), "test", runs_dir=tmp_path,
                            data=str(tiny_store), log=lambda _line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["centre-crop-seed0"]
    centre, ten = result.variants["centre-crop"], result.variants["10-crop"]
    assert (centre.views, ten.views) == ("center", "10crop")
    assert centre.run_dirs == ten.run_dirs and centre.summary.n_images == 16
    # the comparison is variant (centre) - baseline (10-crop), as the paper's 39.0 vs 37.5
    assert result.effects[0].value == pytest.approx(centre.summary.mean - ten.summary.mean)


def test_ensemble_averages_every_seed_s_model(tiny_store: Path, tmp_path: Path) -> None:
    result = run_experiment(get_experiment("ensemble"), "test", seeds=2, runs_dir=tmp_path,
                            data=str(tiny_store), log=lambda _line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble-seed0", "ensemble-seed1"]
    single, ensemble = result.variants["1-cnn"], result.variants["ensemble"]
    assert len(single.outcomes) == 2 and len(ensemble.outcomes) == 1
    assert ensemble.outcomes[0].seed is None and single.summary.std is not None
    assert result.effects[0].baseline == "ensemble" and result.verdict in VERDICTS
