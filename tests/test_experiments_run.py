"""``alexnet experiment`` end to end at the ``test`` scale: a few steps on a handful of images.

One run through the CLI on real CIFAR-10 images (relu-vs-tanh, the Fig. 1 curves), and the
runner's two scoring paths that share training runs (10-crop and the ensemble) on a tiny
synthetic store.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.errors import AlexNetError
from alexnet.experiments import get_experiment
from alexnet.experiments.measure import VERDICTS
from alexnet.experiments.registry import Scale
from alexnet.experiments.runner import _subset_store, definition_key, run_experiment
from evaluate_helpers import make_folder
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
    # the test scale trains in fp32 on every machine, and the result says what the runs used
    assert record["precision"] == "fp32"
    assert json.loads((runs / "relu-seed0" / "experiment.json").read_text())["precisions"] == ["fp32"]
    for name, activation in (("relu", "relu"), ("tanh", "tanh")):
        variant = record["variants"][name]
        assert variant["config"]["model_options"]["activation"] == activation
        outcome = variant["outcomes"][0]
        assert [r["epoch"] for r in outcome["epochs"]] == [1, 2]  # the Fig. 1 curve
        assert 0 <= outcome["top1_error"] <= 1 and outcome["n_images"] == 40
        assert (runs / f"{name}-seed0" / "checkpoints" / "last.pt").is_file()
    # each activation chose its own lr: 1e9's enormous loss loses the sweep
    for name in ("relu", "tanh"):
        entry = record["sweep"]["variants"][name]
        assert entry["chosen"] == 0.001 and record["variants"][name]["config"]["lr"] == 0.001
        assert entry["train_loss"]["1000000000.0"] > 1e3 > entry["train_loss"]["0.001"]
        assert (runs / "sweep" / f"{name}-lr0.001" / "checkpoints" / "last.pt").is_file()
    markdown = (out / "relu-vs-tanh-test.md").read_text()
    assert "**Sweep**: each variant's lr" in markdown
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
    assert again_seconds >= seconds and again["precision"] == "fp32"
    assert "- precision of the training runs: fp32" in (out / "relu-vs-tanh-test.md").read_text()


def test_cli_user_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["experiment", "no-such"]) == 2
    assert "unknown experiment 'no-such'" in capsys.readouterr().err
    assert main(["experiment", "ensemble", "--scale", "test", "--seeds", "1",
                 "--runs-dir", str(tmp_path / "r")]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work
    assert main(["experiment", "lrn", "--scale", "huge"]) == 2
    (tmp_path / "plain.md").write_text("no table markers\n")
    assert main(["experiment", "all", "--scale", "test", "--readme", str(tmp_path / "plain.md"),
                 "--runs-dir", str(tmp_path / "r")]) == 2
    assert "no '<!-- experiments:begin -->'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["experiment", "lrn", "--readme", "README.md"]) == 2
    assert "--readme goes with" in capsys.readouterr().err
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


def test_every_run_keeps_its_per_image_outcomes(tiny_cifar: Path, tmp_path: Path) -> None:
    """The LRN experiment on the net of §3.3's footnote (cifar_conv_local, 24 px crops)."""
    result = run_experiment(get_experiment("lrn"), "test", runs_dir=tmp_path, data=str(tiny_cifar),
                            log=lambda _line: None)
    with_norm, without = result.variants["lrn"], result.variants["no-lrn"]
    assert with_norm.config["model"] == "cifar_conv_local" and with_norm.config["crop_size"] == 24
    first, second = with_norm.outcomes[0].per_image, without.outcomes[0].per_image
    assert first is not None and second is not None and len(first.indices) == 40
    assert first.images == second.images  # the same 40 test images, in the same order
    assert with_norm.outcomes[0].top1_error == pytest.approx(1 - first.top1_correct.mean())
    effect = result.effects[0].paired
    assert effect.method == "bootstrap over images and seeds" and effect.interval is not None
    assert effect.value == pytest.approx(100 * (without.outcomes[0].top1_error
                                                - with_norm.outcomes[0].top1_error))


def test_all_runs_every_experiment_resumably_and_rewrites_the_readme(tiny_store: Path,
                                                                     tmp_path: Path) -> None:
    from alexnet.experiments.suite import run_all

    out, runs, readme = tmp_path / "results", tmp_path / "runs", tmp_path / "README.md"
    readme.write_text("intro\n<!-- experiments:begin -->\n<!-- experiments:end -->\nend\n")
    names = ["dropout", "ten-crop"]
    lines: list[str] = []
    first = run_all("test", out, runs_root=runs, data=str(tiny_store), readme=readme,
                    log=lines.append, names=names)
    assert first.ran == names and not first.skipped
    # dropout's plateau rule trained its baseline in chunks and gave every run that length
    regime = json.loads((runs / "dropout-test" / "regime.json").read_text())
    assert regime["decided"] and regime["rule"] == "plateau" and 1 <= regime["epochs"] <= 3
    record = json.loads((out / "dropout-test.json").read_text())
    assert record["regime"]["epochs"] == regime["epochs"]
    for variant in record["variants"].values():
        assert len(variant["outcomes"][0]["epochs"]) == regime["epochs"]
        assert variant["outcomes"][0]["regime"] == {"rule": "plateau", "epochs": regime["epochs"]}
        assert variant["outcomes"][0]["per_image"]["n"] == 16
    assert record["effects"][0]["interval"] is not None and record["verdict"] in VERDICTS
    assert "Intel" in record["machine"] or "AMD" in record["machine"] or "CPU" in record["machine"]
    table = readme.read_text()
    assert table.startswith("intro\n<!-- experiments:begin -->\n| experiment |")
    assert "[dropout](results/dropout-test.md)" in table and "[ten-crop](results/ten-crop-test.md)" in table

    # interrupted before ten-crop was written: the next run skips dropout and redoes only ten-crop
    (out / "ten-crop-test.json").unlink()
    checkpoint = runs / "dropout-test" / "dropout-0.5-seed0" / "checkpoints" / "last.pt"
    mtime = checkpoint.stat().st_mtime_ns
    again = run_all("test", out, runs_root=runs, data=str(tiny_store), readme=readme,
                    log=lines.append, names=names)
    assert again.skipped == ["dropout"] and again.ran == ["ten-crop"]
    assert checkpoint.stat().st_mtime_ns == mtime
    assert (out / "ten-crop-test.json").is_file()
    assert any("is current; skipped" in line for line in lines)


def test_a_diverging_sweep_value_loses_and_is_not_retried(tmp_path: Path) -> None:
    from alexnet.errors import AlexNetError
    from alexnet.experiments.registry import Sweep
    from alexnet.experiments.runner import _sweep

    experiment = get_experiment("relu-vs-tanh")
    calls: list[tuple[str, float]] = []

    def fake_train(variant, config, run_dir, first):
        calls.append((variant.name, config.lr))
        if config.lr > 1:  # the loop's own message for a NaN loss (train/loop.py)
            raise AlexNetError("the training loss became nan: stopped before writing a checkpoint")
        run_dir.mkdir(parents=True, exist_ok=True)
        loss = 1.0 + config.lr * (1 if variant.name == "relu" else -100)
        (run_dir / "metrics.jsonl").write_text(json.dumps(
            {"kind": "epoch", "epoch": 1, "train_loss": loss, "train_top1_error": 0.5}) + "\n")

    sweep = Sweep("lr", (0.001, 0.002, 10.0), epochs=1)
    record = _sweep(experiment, "test", sweep, tmp_path, None, fake_train, lambda _line: None)
    relu, tanh = record["variants"]["relu"], record["variants"]["tanh"]
    assert relu["chosen"] == 0.001 and tanh["chosen"] == 0.002  # each its own best
    assert relu["train_loss"]["10.0"] is None and (tmp_path / "sweep" / "relu-lr10.0" / "diverged.txt").is_file()
    assert json.loads((tmp_path / "sweep.json").read_text()) == record
    calls.clear()
    with pytest.raises(AlexNetError, match="not a divergence"):
        def broken(variant, config, run_dir, first):
            raise AlexNetError("not a divergence: no such data")
        _sweep(experiment, "test", Sweep("lr", (0.005, 0.006), epochs=1), tmp_path / "b", None,
               broken, lambda _line: None)
    again = _sweep(experiment, "test", sweep, tmp_path, None, fake_train, lambda _line: None)
    assert again == record and calls == []  # finished and diverged runs are not trained again


def test_all_through_the_cli(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    import alexnet.experiments.suite as suite

    monkeypatch.setattr(suite, "EXPERIMENTS", {"ten-crop": get_experiment("ten-crop")})
    readme = tmp_path / "README.md"
    readme.write_text("<!-- experiments:begin -->\n<!-- experiments:end -->\n")
    argv = ["experiment", "all", "--scale", "test", "--data", str(tiny_store), "--out",
            str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"), "--readme", str(readme)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "  ten-crop: " in printed and f"README table: {readme}" in printed
    assert "[ten-crop](results/ten-crop-test.md)" in readme.read_text()
    assert "alexnet experiment all --scale test" in readme.read_text()
    assert (tmp_path / "runs" / "ten-crop-test" / "centre-crop-seed0").is_dir()
    assert main(argv) == 0
    assert "(current result, not run again)" in capsys.readouterr().out


def test_the_test_scale_trains_on_a_handful_and_writes_only_into_its_runs_folder(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default store_dir (runs/stores) would land here
    runs = tmp_path / "exp" / "runs"
    result = run_experiment(get_experiment("cifar10-18pct"), "test", runs_dir=runs,
                            log=lambda _line: None)
    assert not (tmp_path / "runs").exists()  # nothing in ./runs/stores
    stores = list((runs / "stores").iterdir())
    assert [s.name for s in stores] == ["cifar10-32-8-per-class"]
    train = json.loads((stores[0] / "manifest.json").read_text())["splits"]["train"]
    assert train["count"] == 80  # 8 of each of the 10 classes
    assert all(o.n_images == 80 for v in result.variants.values() for o in v.outcomes)  # test split


def test_train_per_class_cuts_the_training_split_only(tmp_path: Path) -> None:
    """dropout's regime: few training images (overfitting), scored on the whole test split."""
    folder = make_folder(tmp_path / "images", per_class=3)  # train: 5 per class, val: 3
    dropout = get_experiment("dropout")
    test = dataclasses.replace(dropout.scales["test"], per_class=None, train_per_class=2)
    experiment = dataclasses.replace(dropout, scales={**dropout.scales, "test": test})
    runs = tmp_path / "runs"
    store = _subset_store(experiment, "test", runs, str(folder), log=lambda _line: None)
    assert store == str(runs / "stores" / "images-72-train-2-per-class")
    counts = {name: split["count"] for name, split in
              json.loads((Path(store) / "manifest.json").read_text())["splits"].items()}
    assert counts == {"train": 2 * 4, "val": 3 * 4}
    # the cut is part of what the result answers; the scales without one keep their digests
    assert definition_key(experiment, "test", [0], store) != \
        definition_key(dropout, "test", [0], store)
    with pytest.raises(AlexNetError, match="give --data an image folder, not the prepared"):
        _subset_store(experiment, "test", runs, store, log=lambda _line: None)
    with pytest.raises(ValueError, match="not both"):
        Scale("both", None, {}, per_class=2, train_per_class=2)


def test_the_result_names_the_precision_every_run_trained_in(tmp_path: Path) -> None:
    from alexnet.experiments.runner import _add_training, _precision

    bf16, mixed, old = tmp_path / "bf16", tmp_path / "mixed", tmp_path / "old"
    for run in (bf16, mixed, old):
        run.mkdir()
    assert _add_training(bf16, 10.0, "bf16", fresh=False) == 10.0
    _add_training(mixed, 5.0, "bf16", fresh=False)
    assert _add_training(mixed, 5.0, "fp32", fresh=False) == 10.0  # resumed on another machine
    (old / "experiment.json").write_text('{"train_seconds": 3.0}\n')  # before it was recorded
    assert _precision([str(bf16)]) == "bf16"
    assert _precision([str(bf16), str(mixed)]) == "bf16, fp32"
    assert _precision([str(old)]) == "not recorded"
    assert _precision([str(bf16), str(old)]) == "bf16 (1 of 2 runs: not recorded)"
    _add_training(bf16, 2.0, None, fresh=False)  # an invocation that trained nothing (re-scored)
    assert _precision([str(bf16)]) == "bf16"
    _add_training(mixed, 1.0, "bf16", fresh=True)  # --fresh trains it again from nothing
    assert _precision([str(mixed)]) == "bf16"
