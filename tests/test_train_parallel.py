"""Scale out: DDP with 2 CPU processes (gloo) == 1 process with the same global batch; the
paper's two-device towers (§3.2) == the grouped single-device model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alexnet.models import create_model
from alexnet.models.checkpoint import load_model
from alexnet.train import train
from alexnet.train.towers import TowerParallelAlexNet2012
from train_helpers import make_store, tiny_config, weights_of


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("parallel-store"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch_across_a_resume(store: Path, tmp_path: Path) -> None:
    # No randomness that depends on the rank: full-image crops, no flips / lighting / dropout.
    options = {"crop_size": 72, "flip": False, "pca_lighting": 0.0, "precision": "fp32",
               "model_options": {"width": 0.125, "init": "kaiming", "dropout": 0.0},
               "batch_size": 16, "epochs": 2, "lr": 0.02, "momentum": 0.9}
    single = tmp_path / "single"
    train(tiny_config(store, single, **options), log=lambda _: None)

    ddp = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               "-m", "alexnet", "train", "--data", str(store), "--out", str(ddp),
               "--model", "alexnet2012", "--model-option", "width=0.125",
               "--model-option", "init=kaiming", "--model-option", "dropout=0",
               "--image-size", "72", "--crop-size", "72", "--no-flip", "--pca-lighting", "0",
               "--precision", "fp32", "--batch-size", "16", "--epochs", "2", "--lr", "0.02",
               "--warmup-epochs", "0", "--schedule", "cosine", "--val-batch-size", "16",
               "--loader-workers", "1", "--progress", "lines"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true"}
    # stopped after 4 of 6 steps (mid-epoch 2), then the same command resumes under DDP
    first = subprocess.run([*command, "--max-steps", "4"], capture_output=True, text=True,
                           env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "(2 x 8)" in first.stderr  # two ranks of 8 make the global batch of 16
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr and "step 4" in result.stderr
    a, b = weights_of(single / "checkpoints/last.pt"), weights_of(ddp / "checkpoints/last.pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(a["classifier.fc8.weight"], create_model(
        "alexnet2012", num_classes=4, width=0.125).classifier.fc8.weight)  # it did train


def test_towers_on_two_devices_compute_the_grouped_models_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    grouped = create_model("alexnet2012", num_classes=10, width=0.25, dropout=0.0)
    towers = TowerParallelAlexNet2012(grouped, ["cpu", "cpu"])
    x = torch.randn(3, 3, 96, 96) * 2
    labels = torch.tensor([1, 4, 7])
    out_grouped, out_towers = grouped(x), towers(x)
    torch.testing.assert_close(out_towers, out_grouped, rtol=1e-4, atol=1e-5)
    F.cross_entropy(out_grouped, labels).backward()
    F.cross_entropy(out_towers, labels).backward()
    gradients = towers.grouped_gradients()
    for name, parameter in grouped.named_parameters():
        torch.testing.assert_close(gradients[name], parameter.grad, rtol=1e-4, atol=5e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")
    # the towers speak the grouped model's state_dict
    state = towers.state_dict()
    assert state.keys() == grouped.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in grouped.state_dict().items())


def test_towers_exchange_activations_only_at_conv3_fc6_fc7_fc8() -> None:
    grouped = create_model("alexnet2012", num_classes=10, width=0.25)
    towers = TowerParallelAlexNet2012(grouped, ["cpu", "cpu"])
    for tower in towers.towers:
        lower = [name for name, _ in tower.lower.named_children()]
        upper = [name for name, _ in tower.upper.named_children()]
        # below conv3 and between conv3 and fc6, a tower is self-contained
        assert lower == ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2"]
        assert upper == ["relu3", "conv4", "relu4", "conv5", "relu5", "pool5"]
        assert tower.lower.conv2.in_channels == grouped.features.conv2.in_channels // 2
        assert tower.conv3.in_channels == grouped.features.conv3.in_channels  # both towers
        assert tower.fc6.in_features == grouped.classifier.fc6.in_features  # both towers


def test_training_with_towers_saves_an_ordinary_alexnet2012_checkpoint(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(store, run, towers_on_devices="cpu,cpu", max_steps=2),
                   log=lambda _: None)
    assert result.steps == 2
    model, info = load_model(run / "checkpoints" / "last.pt")
    assert info.model_name == "alexnet2012"
    assert weights_of(run / "checkpoints" / "last.pt").keys() == model.state_dict().keys()


def test_per_layer_settings_reach_the_towers_parameters() -> None:
    from alexnet.train.config import TrainConfig
    from alexnet.train.loop import _optimizer

    grouped = create_model("alexnet2012", num_classes=10, width=0.125)
    towers = TowerParallelAlexNet2012(grouped, ["cpu", "cpu"])
    named = dict(towers.grouped_named_parameters())
    assert named.keys() == grouped.state_dict().keys()  # the grouped model's names
    assert len(list(towers.grouped_named_parameters())) == len(list(towers.parameters()))
    config = TrainConfig(data="x", layer_weight_decay={"features.conv2.weight": 0.123})
    decays = {}
    for group in _optimizer(towers, config).param_groups:
        for parameter in group["params"]:
            decays[id(parameter)] = group["weight_decay"]
    conv2_halves = [tower.lower.conv2.weight for tower in towers.towers]
    assert [decays[id(p)] for p in conv2_halves] == [0.123, 0.123]
    assert decays[id(towers.fc8.weight)] == config.weight_decay and decays[id(towers.fc8.bias)] == 0
