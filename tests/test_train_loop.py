"""The training loop on a tiny store: run folder contract, determinism, resume, failures,
fine-tuning. Everything runs in-process on the CPU in a few seconds."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from alexnet.errors import AlexNetError
from alexnet.models import create_model
from alexnet.models.checkpoint import load_model, load_safetensors, read_checkpoint
from alexnet.runtime.device import autocast_dtype
from alexnet.train import loop, train
from alexnet.train.checkpointing import TrainingRun, load_matching_weights, starting_weights
from alexnet.train.metrics import EPOCH_KEYS, STEP_KEYS
from train_helpers import assert_same_weights, make_store, tiny_config, weights_of


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("train-store"))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_the_run_folder_contract(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    lines: list[str] = []
    result = train(tiny_config(store, run, ten_crop_final=True), log=lines.append)
    assert result.status == "finished" and result.epochs == 2 and result.steps == 6
    for name in ("config.json", "metrics.jsonl", "summary.json", "model.safetensors",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())

    records = _records(run)
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all(tuple(r) == STEP_KEYS for r in steps)
    for r in steps:  # one step a record here: its 16 views' errors, multiples of 1/16
        for key in ("train_top1_error", "train_top5_error"):
            assert 0.0 <= r[key] <= 1.0 and (r[key] * 16) == round(r[key] * 16), key
    assert any(r["train_top1_error"] > r["train_top5_error"] for r in steps)
    assert [tuple(r) for r in epochs] == [EPOCH_KEYS] * 2 and [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        for key in ("train_top1_error", "train_top5_error", "val_top1_error", "val_top5_error",
                    "data_wait_fraction"):
            assert 0.0 <= r[key] <= 1.0, key
        assert r["images_per_s"] > 0 and math.isfinite(r["val_loss"])

    # an epoch's checkpoint carries that epoch's metrics record
    assert read_checkpoint(run / "checkpoints" / "last.pt")["training"]["metrics"] == {
        k: v for k, v in epochs[-1].items() if k != "kind"}
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "alexnet2012" and config["crop_size"] == 64
    assert {"versions", "device", "git_commit"} <= set(config)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["val_center"]["top1_error"] == result.val["top1_error"]
    assert summary["val_ten_crop"] is not None
    # what it computed in: the config's precision as this machine resolved it
    assert summary["precision"] == result.precision == {None: "fp32", torch.bfloat16: "bf16"}[
        autocast_dtype(torch.device("cpu"), tiny_config(store, run).precision)]

    # checkpoints: unwrapped names, weights_only-loadable, rebuildable, evaluation preprocess
    checkpoint = read_checkpoint(run / "checkpoints" / "best.pt")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in checkpoint["model"])
    model, info = load_model(run / "checkpoints" / "best.pt")
    assert info.model_options["num_classes"] == 4 and info.classes == ["ant", "bee", "cat", "dog"]
    assert info.preprocess["mean"].shape == (3, 72, 72) and info.preprocess["crop_size"] == 64
    assert 30 < float(info.preprocess["std"][0]) < 120  # one pixel std in 0..255 units
    exported, _ = load_safetensors(run / "model.safetensors")
    assert_same_weights(exported.state_dict(), model.state_dict())
    assert any(line.startswith("val (centre crop): top-1 error ") for line in result.summary_lines)
    assert any(line.startswith("val (10 crops): top-1 error ") for line in result.summary_lines)


def test_deterministic_runs_give_identical_curves_and_weights(store: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        train(tiny_config(store, tmp_path / name, deterministic=True), log=lambda _: None)
        runs.append(tmp_path / name)
    losses = [[r["loss"] for r in _records(run) if r["kind"] == "step"] for run in runs]
    assert losses[0] == losses[1] and len(set(losses[0])) > 1
    assert_same_weights(weights_of(runs[0] / "checkpoints/last.pt"),
                        weights_of(runs[1] / "checkpoints/last.pt"))
    # a different seed is a different run
    train(tiny_config(store, tmp_path / "c", deterministic=True, seed=1), log=lambda _: None)
    other = [r["loss"] for r in _records(tmp_path / "c") if r["kind"] == "step"]
    assert other != losses[0]


def test_fresh_with_a_mistyped_input_keeps_the_old_run(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, epochs=1), log=lambda _: None)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    for mistake in ({"data": str(tmp_path / "no-such-store")},
                    {"init_from": str(tmp_path / "no-such.pt")},
                    {"weights_file": str(tmp_path / "no-such.pth"), "weights": "torchvision",
                     "model": "alexnet2014"}):
        with pytest.raises(AlexNetError, match="no-such") as error:
            train(tiny_config(store, run, epochs=1, **mistake), fresh=True, log=lambda _: None)
        assert "\n" not in str(error.value)
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
        assert (run / "model.safetensors").is_file() and (run / "metrics.jsonl").is_file()
    # fine-tuning from the run's own best.pt with --fresh: read before the run is cleared
    best = weights_of(run / "checkpoints" / "best.pt")
    lines: list[str] = []
    train(tiny_config(store, run, epochs=1, lr=1e-9, momentum=0.0,
                      init_from=str(run / "checkpoints" / "best.pt")), fresh=True, log=lines.append)
    assert any(line.startswith("starting weights from checkpoint") for line in lines)
    again = weights_of(run / "checkpoints" / "last.pt")
    torch.testing.assert_close(again["features.conv1.weight"], best["features.conv1.weight"],
                               atol=1e-6, rtol=0)


def test_resuming_a_checkpoint_taken_at_the_end_of_an_epoch(store: Path, tmp_path: Path) -> None:
    # max_steps 3 = one whole epoch: the step checkpoint sits at the epoch's last batch,
    # before its validation (as when a run is killed while it validates)
    run = tmp_path / "run"
    first = train(tiny_config(store, run, max_steps=3), log=lambda _: None)
    assert first.status == "max_steps" and first.steps == 3 and first.epochs == 0
    result = train(tiny_config(store, run), log=lambda _: None)
    assert result.status == "finished" and result.epochs == 2 and result.steps == 6
    epochs = [r for r in _records(run) if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[0]["lr"] > 0
    # each invocation trained one epoch's images (the second not counting the restored
    # epoch 1 again); a third, on the finished run, trains none
    assert first.images_trained >= 3 * 16 and result.images_trained == first.images_trained
    assert train(tiny_config(store, run), log=lambda _: None).images_trained == 0


def test_a_stopped_run_already_has_its_best_weights_as_safetensors(store: Path,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(store, run, epochs=3, max_steps=4), log=lambda _: None)
    assert result.status == "max_steps" and result.epochs == 1
    exported, _ = load_safetensors(run / "model.safetensors")  # written with best.pt
    assert_same_weights(exported.state_dict(), weights_of(run / "checkpoints" / "best.pt"))


def test_sigterm_during_the_last_validation_stops_before_final_scoring(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"

    validations = []

    def evaluate(*args, **kwargs):  # the signal arrives while epoch 2 is being validated
        validations.append(1)
        if len(validations) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(*args, **kwargs)

    real_evaluate = loop.validate
    monkeypatch.setattr(loop, "validate", evaluate)
    stopped = train(tiny_config(store, run, ten_crop_final=True), log=lambda _: None)
    monkeypatch.undo()
    assert stopped.status == "stopped" and stopped.stopped_by == "SIGTERM"
    assert stopped.epochs == 2 and stopped.val_ten_crop is None
    finished = train(tiny_config(store, run, ten_crop_final=True), log=lambda _: None)
    assert finished.status == "finished" and finished.steps == 6  # nothing trained again
    assert finished.val_ten_crop is not None


def test_scale_augmentation_reaches_the_training_views(store: Path, tmp_path: Path) -> None:
    curves = {}
    for name, scale in (("fixed", 0.0), ("resized", 0.3), ("resized-again", 0.3)):
        config = tiny_config(store, tmp_path / name, deterministic=True, epochs=1,
                             resized_crop_scale=scale)
        train(config, log=lambda _: None)
        curves[name] = [r["loss"] for r in _records(tmp_path / name) if r["kind"] == "step"]
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["resized_crop_scale"] == scale
    assert curves["resized"] == curves["resized-again"]  # seeded like the fixed crops
    assert curves["resized"] != curves["fixed"]  # the views are not the paper's crops


def test_relaunch_resumes_mid_epoch_exactly_and_fresh_starts_over(store: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    train(tiny_config(store, reference), log=lambda _: None)

    run = tmp_path / "run"
    first = train(tiny_config(store, run, max_steps=4), log=lambda _: None)  # stops mid-epoch 2
    assert first.status == "max_steps" and first.steps == 4
    lines: list[str] = []
    second = train(tiny_config(store, run), log=lines.append)  # the same command again
    assert any("resuming" in line and "step 4" in line for line in lines)
    assert second.steps == 6
    assert_same_weights(weights_of(reference / "checkpoints/last.pt"),
                        weights_of(run / "checkpoints/last.pt"))
    # the metrics read as one uninterrupted run
    assert [r["step"] for r in _records(run) if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    ref_losses = [r["loss"] for r in _records(reference) if r["kind"] == "step"]
    assert [r["loss"] for r in _records(run) if r["kind"] == "step"] == ref_losses

    lines.clear()
    third = train(tiny_config(store, run), fresh=True, log=lines.append)
    assert not any("resuming" in line for line in lines) and third.steps == 6


def test_resuming_with_another_model_or_batch_is_refused(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, max_steps=1), log=lambda _: None)
    with pytest.raises(AlexNetError, match="trained with batch_size=16, not 8"):
        train(tiny_config(store, run, batch_size=8), log=lambda _: None)


def test_newest_corrupt_checkpoint_falls_back_to_an_older_valid_one(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, max_steps=2, checkpoint_every_steps=1), log=lambda _: None)
    folder = TrainingRun(run)
    assert [p.name for p in folder.step_files()] == ["step-0000001.pt", "step-0000002.pt"]
    # a half-written newer step file (as a non-atomic writer would leave) is ignored
    (run / "checkpoints" / "step-0000003.pt").write_bytes(b"PK\x03\x04 truncated")
    path, data = folder.newest_valid()
    assert path.name == "last.pt" and data["training"]["step"] == 2
    # even a damaged last.pt (a new file: it is a hard link to step 2) costs nothing
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.pt").write_bytes(b"garbage")
    path, data = folder.newest_valid()
    assert path.name == "step-0000002.pt" and data["training"]["step"] == 2


def test_a_step_file_newer_than_last_pt_wins(store: Path, tmp_path: Path) -> None:
    # a kill after step-2.pt is written but before last.pt is re-linked to it
    run = tmp_path / "run"
    train(tiny_config(store, run, max_steps=2, checkpoint_every_steps=1), log=lambda _: None)
    checkpoints = run / "checkpoints"
    (checkpoints / "last.pt").unlink()
    os.link(checkpoints / "step-0000001.pt", checkpoints / "last.pt")
    path, data = TrainingRun(run).newest_valid()
    assert path.name == "step-0000002.pt" and data["training"]["step"] == 2


def test_resuming_from_a_newer_step_file_relinks_last_and_best(store: Path, tmp_path: Path) -> None:
    # a kill after the last epoch's step-3.pt (the best so far) was written, before the links
    run = tmp_path / "run"
    config = tiny_config(store, run, epochs=1, checkpoint_every_steps=1)
    train(config, log=lambda _: None)
    checkpoints = run / "checkpoints"
    newest, older = checkpoints / "step-0000003.pt", checkpoints / "step-0000002.pt"
    for link in ("last.pt", "best.pt"):
        (checkpoints / link).unlink()
        os.link(older, checkpoints / link)
    (run / "model.safetensors").unlink()
    train(config, log=lambda _: None)
    assert os.path.samefile(checkpoints / "last.pt", newest)
    assert os.path.samefile(checkpoints / "best.pt", newest)
    exported = load_safetensors(run / "model.safetensors")[0].state_dict()
    expected = weights_of(newest)
    assert_same_weights(expected, {k: exported[k] for k in expected})


def test_train_keeps_freed_memory_while_it_runs_and_hands_it_back_at_the_end(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(loop, "reuse_freed_memory", lambda: calls.append("reuse"))
    monkeypatch.setattr(loop, "release_freed_memory", lambda: calls.append("release"))
    train(tiny_config(store, tmp_path / "run", max_steps=1), log=lambda _: calls.append("log"))
    assert calls[0] == "reuse" and calls[-1] == "release" and "log" in calls


def test_only_the_newest_checkpoints_are_kept(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, checkpoint_every_steps=1, keep_checkpoints=2), log=lambda _: None)
    assert [p.name for p in TrainingRun(run).step_files()] == ["step-0000005.pt", "step-0000006.pt"]
    assert (run / "checkpoints" / "best.pt").is_file()


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # lr 1e12: step 1's loss is fine (computed before the update), step 2's is not
    with pytest.raises(AlexNetError, match=r"training loss became (nan|inf)") as error:
        train(tiny_config(store, run, lr=1e12, checkpoint_every_steps=1, precision="fp32"),
              log=lambda _: None)
    assert "last good one is intact" in str(error.value) and "\n" not in str(error.value)
    _path, data = TrainingRun(run).newest_valid()
    assert data["training"]["step"] == 1
    assert all(torch.isfinite(t).all() for t in data["model"].values())


def test_flat_loss_is_reported_with_likely_causes(store: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    # the paper's init with a tiny learning rate: the loss sits at ln(4)
    config = tiny_config(store, tmp_path / "run", model_options={"width": 0.125, "init": "paper"},
                         lr=1e-6, flat_loss_steps=3, epochs=1)
    train(config, log=lines.append)
    warning = [line for line in lines if "flat loss" in line]
    assert len(warning) == 1 and "init=kaiming" in warning[0] and "ln K = 1.386" in warning[0]


def test_init_from_loads_matching_layers_and_reinitialises_another_head(store: Path, tmp_path: Path) -> None:
    pretrained = tmp_path / "pretrained"
    train(tiny_config(store, pretrained, max_steps=2), log=lambda _: None)
    three_classes = make_store(tmp_path / "three", classes=("elk", "fox", "gnu"), seed=5)
    lines: list[str] = []
    result = train(tiny_config(three_classes, tmp_path / "finetune", max_steps=1,
                               init_from=str(pretrained / "checkpoints" / "last.pt")),
                   log=lines.append)
    loaded = next(line for line in lines if line.startswith("starting weights from checkpoint"))
    assert "features.conv1" in loaded and "classifier.fc7" in loaded and "fc8" not in loaded
    assert any("not loaded" in line and "classifier.fc8" in line for line in lines)
    _tuned, info = load_model(result.last_checkpoint)
    assert info.model_options["num_classes"] == 3


def test_torchvision_weights_from_a_local_file(tmp_path: Path) -> None:
    import torchvision

    # torchvision's alexnet layout; the features alone keep the file small
    features = {k: v for k, v in torchvision.models.alexnet().state_dict().items()
                if k.startswith("features.")}
    path = tmp_path / "alexnet-owt.pth"
    torch.save(features, path)
    state, source = starting_weights(None, "torchvision", str(path))
    model = create_model("alexnet2014", num_classes=10)
    loaded, fresh = load_matching_weights(model, state, source)
    assert loaded == ["features.0", "features.3", "features.6", "features.8", "features.10"]
    assert fresh == ["classifier.1", "classifier.4", "classifier.6"]
    assert torch.equal(model.features[0].weight, features["features.0.weight"])


def test_cli_trains_then_resume_continues_with_the_saved_config(store: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from alexnet.cli import main

    run = tmp_path / "run"
    flags = ["--data", str(store), "--out", str(run), "--model-option", "width=0.125",
             "--image-size", "72", "--crop-size", "64", "--batch-size", "16", "--epochs", "2",
             "--val-batch-size", "16", "--loader-workers", "1", "--progress", "lines"]
    assert main(["train", *flags, "--max-steps", "2"]) == 0
    assert capsys.readouterr().out.startswith("max_steps: 0 epochs, 2 steps")
    assert main(["train", "--resume", str(run), "--max-steps", "0"]) == 0
    captured = capsys.readouterr()
    assert "resuming" in captured.err and "val (centre crop): top-1 error" in captured.out
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_training_sgd_is_fused_and_equals_torch_default_sgd() -> None:
    # alexnet.train.step.sgd picks torch's fused kernel (4x faster steps on the CPU); it must
    # do the arithmetic of the plain (foreach) SGD with momentum, weight decay and per-group lr.
    from alexnet.train.step import sgd

    torch.manual_seed(0)
    groups_given: list[dict[str, object]] = []
    start = [torch.randn(64, 32), torch.randn(32), torch.randn(10, 64)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]

    def run(make: type[torch.optim.SGD] | None) -> tuple[list[torch.Tensor], torch.optim.SGD]:
        params = [torch.nn.Parameter(p.clone()) for p in start]
        groups = [{"params": params[:2], "weight_decay": 5e-4},
                  {"params": params[2:], "weight_decay": 0.0, "lr": 0.02}]
        groups_given.extend(groups)
        options = {"lr": 0.01, "momentum": 0.9, "nesterov": True}
        optimizer = sgd(groups, **options) if make is None else make(groups, **options)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        return [p.detach() for p in params], optimizer

    fast, optimizer = run(None)
    assert not any("fused" in group or "foreach" in group for group in groups_given)
    plain, _ = run(torch.optim.SGD)
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5):
        assert optimizer.defaults["fused"] is True
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert not torch.equal(fast[0], start[0])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_training_learns_and_saves_plain_weights(store: Path, tmp_path: Path) -> None:
    # --compile wraps the model in torch.compile (LRN's custom backward included); the
    # checkpoint must still hold the plain module's names and load into a fresh model.
    result = train(tiny_config(store, tmp_path / "run", compile=True, epochs=1,
                               ten_crop_final=False))
    assert math.isfinite(result.val["top1_error"])
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in checkpoint["model"])
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert_same_weights(model.state_dict(), checkpoint["model"])


def test_training_optimizer_is_fused_and_resumes_any_checkpoint_exactly(tmp_path: Path) -> None:
    # The loop's optimizer uses the fused kernel; a checkpoint from a plain (foreach) SGD, or
    # with momentum buffers in another memory layout (a resume that changes --channels-last),
    # must resume fused and continue with plain SGD's arithmetic.
    from alexnet.train.loop import _optimizer
    from alexnet.train.step import load_optimizer_state

    config = tiny_config(tmp_path, tmp_path / "run")
    torch.manual_seed(0)
    model = create_model("alexnet2012", width=0.125, num_classes=4)
    nchw = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 64, 64)

    def loss_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor
                  ) -> None:
        optimizer.zero_grad()
        net(inputs).logsumexp(1).mean().backward()
        optimizer.step()

    net_a = create_model("alexnet2012", width=0.125, num_classes=4).eval()
    net_a.load_state_dict(nchw)
    plain = torch.optim.SGD([{k: v for k, v in group.items() if k not in ("fused", "foreach")}
                             for group in _optimizer(net_a, config).param_groups])
    assert not plain.defaults.get("fused")
    loss_step(net_a, plain, x)  # NCHW momentum buffers, no fused flag
    saved = plain.state_dict()

    def channels_last_copy() -> torch.nn.Module:
        net = create_model("alexnet2012", width=0.125, num_classes=4).eval()
        net.load_state_dict(net_a.state_dict())
        return net.to(memory_format=torch.channels_last)

    net_b, net_c = channels_last_copy(), channels_last_copy()
    resumed = _optimizer(net_b, config)
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5):
        assert resumed.defaults["fused"] is True
    load_optimizer_state(resumed, copy.deepcopy(saved))  # as if read from disk: no sharing
    assert all(group.get("fused") == resumed.defaults.get("fused")
               for group in resumed.param_groups)
    conv = net_b.features.conv2.weight
    assert resumed.state[conv]["momentum_buffer"].stride() == conv.stride()
    reference = torch.optim.SGD([{k: v for k, v in group.items() if k not in ("fused", "foreach")}
                                 for group in _optimizer(net_c, config).param_groups])
    reference.load_state_dict(copy.deepcopy(saved))  # plain SGD copes with any layout

    x_last = x.contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        loss_step(net_b, resumed, x_last)
        loss_step(net_c, reference, x_last)
    for (name, b), c in zip(net_b.state_dict().items(), net_c.state_dict().values(), strict=True):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
