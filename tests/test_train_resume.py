"""Killing training: SIGKILL mid-epoch then resume == uninterrupted, SIGTERM checkpoints and
exits cleanly, and a kill while a checkpoint is written never corrupts the latest one.
These run `alexnet train` in a subprocess, as a user (or torchrun) would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alexnet.train import train
from alexnet.train.checkpointing import TrainingRun
from train_helpers import assert_same_weights, make_store, tiny_config, weights_of


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("resume-store"))


def _command(store: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "alexnet", "train", "--data", str(store), "--out", str(out),
            "--model", "alexnet2012", "--model-option", "width=0.125",
            "--model-option", "init=kaiming", "--image-size", "72", "--crop-size", "64",
            "--batch-size", "8", "--epochs", "5", "--lr", "0.01", "--schedule", "cosine",
            "--val-batch-size", "16", "--loader-workers", "1", "--deterministic",
            "--checkpoint-every-steps", "1", "--keep-checkpoints", "100",
            "--log-every-steps", "1", "--progress", "lines",
            *extra]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before {path.name}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.005)


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "CI": "true"}


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(store: Path, tmp_path: Path) -> None:
    # 48 images / 8 = 6 steps an epoch, 30 in all
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(store, killed), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_environment())
    _wait_for(killed / "checkpoints" / "step-0000008.pt", process)  # in epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    step = TrainingRun(killed).newest_valid()[1]["training"]["step"]
    assert 8 <= step < 30, f"the kill came too late (step {step})"

    # the same command again resumes; meanwhile the reference runs through in this process
    resumed = subprocess.run(_command(store, killed), capture_output=True, text=True,
                             env=_environment(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {step}" in resumed.stderr and "resuming" in resumed.stderr
    config = tiny_config(store, reference, batch_size=8, epochs=5, deterministic=True,
                         checkpoint_every_steps=1, keep_checkpoints=100, lr=0.01)
    train(config, log=lambda _: None)
    assert_same_weights(weights_of(reference / "checkpoints" / "last.pt"),
                        weights_of(killed / "checkpoints" / "last.pt"))
    assert "val (centre crop): top-1 error" in resumed.stdout


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_writes_a_checkpoint_and_exits_cleanly(
        store: Path, tmp_path: Path, signum: signal.Signals, code: int) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(_command(store, run), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_environment())
    _wait_for(run / "checkpoints" / "step-0000003.pt", process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr  # the shell's 128 + signal number
    assert "Traceback" not in stderr and f"stopped by {signum.name} at step" in stderr
    data = TrainingRun(run).newest_valid()[1]
    assert data["training"]["step"] >= 3
    assert "stopped" in stdout.splitlines()[0]


def test_a_kill_while_writing_checkpoints_never_corrupts_the_latest(tmp_path: Path) -> None:
    """A writer saving checkpoints as fast as it can, killed at random moments, 5 times."""
    writer = tmp_path / "writer.py"
    writer.write_text(textwrap.dedent(f"""
        import torch
        from alexnet.models.checkpoint import Checkpoint
        from alexnet.models import create_model
        from alexnet.train.checkpointing import TrainingRun

        model = create_model("alexnet2012", num_classes=10, width=0.5)  # ~16 MB a file
        info = Checkpoint("alexnet2012", {{"num_classes": 10, "width": 0.5}}, [], [], {{}})
        run = TrainingRun({str(tmp_path / "run")!r})
        start = run.newest_valid()
        step = start[1]["training"]["step"] if start else 0
        while True:
            step += 1
            with torch.no_grad():
                model.features.conv1.bias.fill_(step)
            run.save(model, info, {{"step": step}}, step, keep=2, best=step % 3 == 0)
    """))
    folder = TrainingRun(tmp_path / "run")
    last_step = 0
    for delay in (0.05, 0.13, 0.02, 0.21, 0.08):  # a write of ~16 MB takes about this long
        process = subprocess.Popen([sys.executable, str(writer)], env=_environment(),
                                   stderr=subprocess.PIPE)
        # let it write two more checkpoints than before, then kill it at some point
        deadline = time.monotonic() + 120
        while not any(int(p.stem[5:]) >= last_step + 2 for p in folder.step_files()):
            assert process.poll() is None and time.monotonic() < deadline, "the writer stalled"
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        path, data = folder.newest_valid()
        assert path == folder.last  # the newest is always the complete last.pt
        step = data["training"]["step"]
        assert step >= last_step + 2 and float(data["model"]["features.conv1.bias"][0]) == step
        last_step = step
