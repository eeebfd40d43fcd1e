"""The ``original2012`` preset against the facts of the 2012 code, written out by hand.

Source: computerhistory/AlexNet-Source-Code (commit 2f8b81f). Each fact carries its file and
line; L = layers/layers-145.cfg, P = layers/layer-params-145.cfg. One tower's layer (the
"a" half) is cited; its "b" twin has the same values. Output channels are the two towers'
filters together.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet.data.augment import AugmentConfig, TrainAugment, lighting_shift
from alexnet.data.store import StoreStats
from alexnet.errors import AlexNetError
from alexnet.models import create_model
from alexnet.models.layers import LocalResponseNorm, SameMapResponseNorm
from alexnet.train.config import PRESETS, resolve_config
from alexnet.train.schedule import LearningRate, lighting_at, parameter_groups
from alexnet.train.step import CudaConvnetSGD

L, P = "layers/layers-145.cfg", "layers/layer-params-145.cfg"

# layer: (kernel, stride, padding, output channels, groups, init std, bias), with sources
CONV_FACTS = {
    # conv1a: filterSize=11 L:16, stride=4 L:15, padding=0 L:14, filters=48 L:13, reads all
    # 3 channels of data L:11-12, initW=0.01 L:17, no initB (layer.py:833 default 0)
    "conv1": (11, 4, 0, 96, 1, 0.01, 0.0),
    # conv2a: filterSize=5 L:71, stride=1 L:70, padding=2 L:69, filters=128 L:68, reads its
    # own tower's pool1a (channels=48) L:67,72, initW=0.01 L:73, initB=1 L:74
    "conv2": (5, 1, 2, 256, 2, 0.01, 1.0),
    # conv3a: filterSize=3,3 L:141, stride=1,1 L:140, padding=1,1 L:139, filters=192,192
    # L:138 from both towers' pool2a,pool2b L:137, initW=0.03,0.03 L:143, no initB
    "conv3": (3, 1, 1, 384, 1, 0.03, 0.0),
    # conv4a: filterSize=3 L:169, stride=1 L:168, padding=1 L:167, filters=192 L:166, reads
    # conv3a only L:165, initW=0.03 L:172, initB=1 L:173
    "conv4": (3, 1, 1, 384, 2, 0.03, 1.0),
    # conv5a: filterSize=3 L:198, stride=1 L:197, padding=1 L:196, filters=128 L:195, reads
    # conv4a only L:194, initW=0.03 L:200, initB=1 L:201
    "conv5": (3, 1, 1, 256, 2, 0.03, 1.0),
}
# layer: (outputs, init std, bias)
FC_FACTS = {
    "fc6": (4096, 0.01, 1.0),  # fc2048a outputs=2048 L:241, initW=0.01 L:242, initB=1 L:243
    "fc7": (4096, 0.01, 1.0),  # fc2048ba outputs=2048 L:269, initW=0.01 L:270, initB=1 L:271
    "fc8": (1000, 0.01, 0.0),  # fc1000 outputs=1000 L:296, initW=0.01 L:298, no initB
}
# cross-map norms (cmrnorm): size L:39 / L:99, per tower (channels=48 L:38, 128 L:98);
# scale=0.0001 P:138 / P:148 (divided by size in layer.py:1183, as torch's alpha is),
# pow=0.75 P:139 / P:149, minDiv=2 P:140 / P:150 (k)
LRN_FACTS = {"norm1": (5, 1e-4, 0.75, 2.0, 2), "norm2": (5, 1e-4, 0.75, 2.0, 2)}
# cnorm2a: type=rnorm (same map) L:108, size=5 L:111, scale=0.001 P:158 (divided by size**2
# in layer.py:1183), pow=0.75 P:159, no minDiv for rnorm (k = 1)
CNORM_FACTS = (5, 0.001, 0.75, 1.0)
# the order of layers-145.cfg: rnorm1a reads conv1a L:37 (conv1a has no neuron), pool1a
# reads rnorm1a L:50 and carries the ReLU L:54; conv2a has neuron=relu L:77, rnorm2a reads
# conv2a L:97, cnorm2a reads rnorm2a L:109, pool2a reads cnorm2a L:122; pool3a carries
# conv5's ReLU L:227 (ReLU commutes with max-pooling, so it may sit before the pool)
LAYER_ORDER = ["pad1", "conv1", "norm1", "relu1", "pool1", "conv2", "relu2", "norm2", "cnorm2",
               "pool2", "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5"]
DROPOUT = 0.5  # hs1a keep=0.5 L:258, hs2a keep=0.5 L:286

# Rates: the file holds the state at the end of training; its comments log the changes.
# epsW (weights): 0.01 at the start, "epoch 25: set epsw to 0.001 from 0.01" P:169, "epoch 51:
# ... 0.0001" P:174, "epoch 79: ... 0.00001" P:180, "epoch 91: killed" P:181; the restart
# "start epsw 0.001 (still 0 on conv1)" P:195, "epoch 107: ... 0.0001" P:198, "epoch 124:
# ... 0.00001" P:199, "epoch 135: killed" P:201 (so the preset ends with epoch 134).
WEIGHT_RATES = [(1, 0.01), (25, 1e-3), (51, 1e-4), (79, 1e-5), (91, 1e-3), (107, 1e-4),
                (124, 1e-5)]
# conv1: "epoch 67: set epsw to 0.00001 from 0.0001 on conv1" P:177, "epoch 72: set epsw to 0
# on conv1" P:179; its epsB is 0.0 in the file P:3 (taken as set at epoch 72 too).
CONV1_WEIGHT_RATES = [(1, 0.01), (25, 1e-3), (51, 1e-4), (67, 1e-5), (72, 0.0)]
BIAS_RATE = 0.02  # epsB=0.02 P:19, 35, 51, 67, 83, 99, 115 while epsW is 1e-5
CONV1_BIAS_RATES = [(1, 0.02), (72, 0.0)]
WEIGHT_DECAY = 0.0005  # wc=0.0005 P:6, 22, 38, 54, 70, 86, 102, 118; biases: none (layer.cu)
MOMENTUM = 0.9  # momW=0.9, momB=0.9 P:4-5 and every layer
# colour noise: "set color noise to 0 from 0.1" at epoch 67 P:178, "color noise put back to
# 0.1" at the restart P:196, "set color noise to 0 from 0.1" at epoch 124 P:200
COLOUR_NOISE = [(1, 0.1), (67, 0.0), (91, 0.1), (124, 0.0)]
LAST_EPOCH = 134


def _at(table: list[tuple[int, float]], epoch: int) -> float:
    return [rate for start, rate in table if start <= epoch][-1]


@pytest.fixture(scope="module")
def preset_model() -> nn.Module:
    config = resolve_config("original2012", data="unused")
    torch.manual_seed(0)
    return create_model(config.model, num_classes=1000, **config.model_options)


def test_the_presets_network_is_layers_145(preset_model: nn.Module) -> None:
    layers = dict(preset_model.named_layers())
    assert [name for name in layers if name in LAYER_ORDER or name.startswith(("conv", "norm"))
            ][:len(LAYER_ORDER)] == LAYER_ORDER
    for name, (kernel, stride, padding, out, groups, std, bias) in CONV_FACTS.items():
        conv = layers[name]
        assert conv.kernel_size == (kernel, kernel) and conv.stride == (stride, stride), name
        assert conv.padding == (padding, padding) and conv.out_channels == out, name
        assert conv.groups == groups, name
        assert conv.weight.std().item() == pytest.approx(std, rel=0.02), name
        assert torch.all(conv.bias == bias), name
    for name, (out, std, bias) in FC_FACTS.items():
        fc = layers[name]
        assert fc.out_features == out and fc.weight.std().item() == pytest.approx(std, rel=0.02)
        assert torch.all(fc.bias == bias), name
    for name, (size, alpha, beta, k, towers) in LRN_FACTS.items():
        norm = layers[name]
        assert isinstance(norm, LocalResponseNorm)
        assert (norm.size, norm.alpha, norm.beta, norm.k, norm.groups) == (size, alpha, beta, k, towers)
    cnorm = layers["cnorm2"]
    assert isinstance(cnorm, SameMapResponseNorm)
    assert (cnorm.size, cnorm.alpha, cnorm.beta, cnorm.k) == CNORM_FACTS
    assert layers["drop6"].p == DROPOUT and layers["drop7"].p == DROPOUT
    # layer.py: modulesX = 1 + ceil((2 * padding + imgSize - filterSize) / stride): 224 -> 55
    x = torch.zeros(1, 3, 224, 224)
    assert preset_model.features[:2](x).shape[-2:] == (1 + math.ceil((224 - 11) / 4),) * 2 == (55, 55)


def test_lrn1_sits_before_relu_and_cnorm2_after_norm2() -> None:
    # the order matters: LRN of a negative input stays negative and the ReLU then zeroes it
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    options = {"num_classes": 3, "width": 0.25, "conv1_ceil_padding": True}
    before = create_model("alexnet2012", lrn1_before_relu=True, **options)
    after = create_model("alexnet2012", **options)
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        conv = before.features.conv1(before.features.pad1(x))
        norm = before.features.norm1
        assert torch.equal(before.features[:4](x), torch.relu(norm(conv)))
        assert torch.equal(after.features[:4](x), norm(torch.relu(conv)))
        layers = create_model("alexnet2012", same_map_norm2=True, **options).features
        names = [n for n, _ in layers.named_children()]
        assert names.index("cnorm2") == names.index("norm2") + 1 == names.index("pool2") - 1


def test_default_network_is_unchanged_by_the_new_options() -> None:
    torch.manual_seed(2)
    plain = create_model("alexnet2012", num_classes=5, width=0.25)
    torch.manual_seed(2)
    explicit = create_model("alexnet2012", num_classes=5, width=0.25, lrn1_before_relu=False,
                            same_map_norm2=False, conv1_ceil_padding=False, conv1_init_std=None)
    assert [n for n, _ in plain.named_layers()] == [n for n, _ in explicit.named_layers()]
    for (name, a), b in zip(plain.state_dict().items(), explicit.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_conv1_init_std_replaces_only_conv1() -> None:
    torch.manual_seed(3)
    base = create_model("alexnet2012", num_classes=5, width=0.25)
    torch.manual_seed(3)
    small = create_model("alexnet2012", num_classes=5, width=0.25, conv1_init_std=0.01)
    assert small.features.conv1.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(base.features.conv2.weight, small.features.conv2.weight)
    with pytest.raises(AlexNetError, match="conv1_init_std must be positive"):
        create_model("alexnet2012", conv1_init_std=0.0)


def test_the_presets_rates_and_decays_per_layer_at_every_epoch(preset_model: nn.Module) -> None:
    config = resolve_config("original2012", data="unused")
    assert config.epochs == LAST_EPOCH and config.momentum == MOMENTUM
    assert config.update_rule == "cuda_convnet" and config.batch_size == 128
    groups = parameter_groups(preset_model.named_parameters(), config)
    name_of = {id(p): n for n, p in preset_model.named_parameters()}
    steps_per_epoch = 7
    schedule = LearningRate(config, steps_per_epoch)
    for epoch in range(1, LAST_EPOCH + 1):
        for step in ((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch - 1):
            lr = schedule.at(step)
            for group in groups:
                rate = schedule.group_lr(group, lr, step)
                for parameter in group["params"]:
                    name = name_of[id(parameter)]
                    bias, conv1 = name.endswith("bias"), name.startswith("features.conv1.")
                    table = ((CONV1_BIAS_RATES if conv1 else [(1, BIAS_RATE)]) if bias
                             else (CONV1_WEIGHT_RATES if conv1 else WEIGHT_RATES))
                    assert rate == pytest.approx(_at(table, epoch), rel=1e-12), (name, epoch)
                    assert group["weight_decay"] == (0.0 if bias else WEIGHT_DECAY), name
        assert lighting_at(config, epoch) == _at(COLOUR_NOISE, epoch), epoch
    # the file's own values are the state of the last epoch: epsW 1e-5 (conv1 0), epsB 0.02
    # (conv1 0.0) P:2-3, 18-19
    assert _at(WEIGHT_RATES, LAST_EPOCH) == 1e-5 and _at(CONV1_WEIGHT_RATES, LAST_EPOCH) == 0.0


def test_each_2012_field_switches_on_alone() -> None:
    base = resolve_config("imagenette")
    for field, value in (("bias_lr", 0.02), ("update_rule", "cuda_convnet"),
                         ("lighting_units", "cuda_convnet"), ("lighting_epochs", "5=0"),
                         ("layer_lr_epochs", "features.conv1@3=0")):
        changed = resolve_config("imagenette", {field: value})
        differing = [f for f in base.to_dict() if getattr(base, f) != getattr(changed, f)]
        assert differing == [field]
    # the logged rates are a schedule of their own: the table and the schedule that reads it
    changed = resolve_config("imagenette", {"schedule": "epochs", "lr_epochs": "1=0.01,5=0.001"})
    assert [f for f in base.to_dict() if getattr(base, f) != getattr(changed, f)] == \
        ["schedule", "lr_epochs"]
    with pytest.raises(AlexNetError, match="read by schedule 'epochs' only"):
        resolve_config("imagenette", lr_epochs={"1": 0.01, "5": 0.001})
    # a preset's table is cleared with an empty value when another schedule is chosen
    assert resolve_config("original2012", {"data": "x", "schedule": "cosine",
                                           "lr_epochs": ""}).lr_epochs == {}
    # prefixes name whole layers or parameters of the model, or fail before any work
    with pytest.raises(AlexNetError, match=r"'features\.conv9' names no parameter of alexnet2012"):
        resolve_config("imagenette", layer_lr_epochs={"features.conv9@3": 0.0})
    with pytest.raises(AlexNetError, match=r"layer_weight_decay: 'features\.conv' names no"):
        resolve_config("imagenette", layer_weight_decay={"features.conv": 0.0})
    # where a parameter's and its layer's names both match, the longest wins (in any order);
    # the layer's name covers its bias
    config = resolve_config("imagenette", layer_weight_decay={"features.conv1.weight": 0.0,
                                                              "features.conv1": 1e-3})
    model = create_model("alexnet2012", num_classes=10, width=0.125)
    name_of = {id(p): n for n, p in model.named_parameters()}
    decay = {name_of[id(p)]: group["weight_decay"]
             for group in parameter_groups(model.named_parameters(), config) for p in group["params"]}
    assert decay["features.conv1.weight"] == 0.0 and decay["features.conv1.bias"] == 1e-3
    assert decay["features.conv2.weight"] == config.weight_decay and decay["features.conv2.bias"] == 0.0
    assert PRESETS["original2012"].values["model_options"]["init"] == "original2012"
    with pytest.raises(AlexNetError, match="NAME@EPOCH"):
        resolve_config("imagenette", layer_lr_epochs={"features.conv1": 0.0})
    with pytest.raises(AlexNetError, match="not an epoch number"):
        resolve_config("imagenette", lr_epochs={"0": 0.1})
    with pytest.raises(AlexNetError, match="needs lr_epochs"):
        resolve_config("imagenette", schedule="epochs")
    with pytest.raises(AlexNetError, match="unknown update_rule"):
        resolve_config("imagenette", update_rule="adam")


def test_2012_update_rule_is_torch_sgd_at_a_constant_rate_and_keeps_velocity_after_a_cut() -> None:
    torch.manual_seed(4)
    start = torch.randn(50)
    grads = [torch.randn(50) for _ in range(6)]

    def run(optimizer_class: type, rates: list[float], grads_used: int = 6) -> torch.Tensor:
        w = nn.Parameter(start.clone())
        optimizer = optimizer_class([w], lr=rates[0], momentum=0.9, weight_decay=5e-4)
        for grad, rate in zip(grads[:grads_used], rates, strict=True):
            optimizer.param_groups[0]["lr"] = rate
            w.grad = grad.clone()
            optimizer.step()
        return w.detach()

    constant = [0.01] * 6
    torch.testing.assert_close(run(CudaConvnetSGD, constant), run(torch.optim.SGD, constant))
    cut = [0.01] * 3 + [0.001] * 3
    # weights.cu by hand: inc = 0.9 inc - eps (g + wc w); w += inc
    w, inc = start.clone().double(), torch.zeros(50, dtype=torch.float64)
    for grad, rate in zip(grads, cut, strict=True):
        inc = 0.9 * inc - rate * (grad.double() + 5e-4 * w)
        w = w + inc
    torch.testing.assert_close(run(CudaConvnetSGD, cut).double(), w)
    assert not torch.allclose(run(torch.optim.SGD, cut), run(CudaConvnetSGD, cut))
    # eps 0 freezes a layer completely (weights.cu updates only when the base rate is > 0):
    # the velocity left from the 0.01 steps moves nothing, so the weights stay at step 3's
    frozen = run(CudaConvnetSGD, [0.01] * 3 + [0.0] * 3)
    three = run(CudaConvnetSGD, [0.01] * 3, grads_used=3)
    assert torch.equal(frozen, three) and not torch.equal(three, start)
    w = nn.Parameter(start.clone())
    optimizer = CudaConvnetSGD([w], lr=0.0, momentum=0.9, weight_decay=5e-4)
    w.grad = grads[0].clone()
    optimizer.step()
    assert torch.equal(w.detach(), start)


def _stats(eigval: list[float]) -> StoreStats:
    size = 16
    return StoreStats(mean_image=torch.full((size, size, 3), 100.0), channel_mean=torch.full((3,), 100.0),
                      channel_std=torch.full((3,), 50.0), rgb_covariance=torch.eye(3),
                      pca_eigval=torch.tensor(eigval), pca_eigvec=torch.eye(3), count=1)


def test_colour_noise_in_the_2012_units_scales_by_the_stdev_and_rescales_by_1_1() -> None:
    eigval = torch.tensor([14535.0, 1148.0, 230.0])
    generator = torch.Generator().manual_seed(5)
    shift = lighting_shift(4, eigval, torch.eye(3), 0.1, generator, units="cuda_convnet")
    alphas = torch.randn(4, 3, generator=torch.Generator().manual_seed(5)) * 0.1
    torch.testing.assert_close(shift, alphas * eigval.sqrt())
    # with eigval = 255^2 both units give the same shift, so the views differ by 1/1.1 only
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    stats = _stats([255.0**2, 255.0**2, 255.0**2])
    views = {}
    for units in ("fb_resnet", "cuda_convnet"):
        augment = TrainAugment(stats, AugmentConfig(crop_size=12, lighting_units=units))
        views[units] = augment(images, torch.Generator().manual_seed(6))
    torch.testing.assert_close(views["cuda_convnet"] * 1.1, views["fb_resnet"])
    # the noise off: no rescale either (convdata_jpeg.py rescales only when it adds noise)
    augment = TrainAugment(stats, AugmentConfig(crop_size=12, lighting_units="cuda_convnet"))
    augment.set_lighting_std(0.0)
    plain = TrainAugment(stats, AugmentConfig(crop_size=12, lighting_std=0.0))
    torch.testing.assert_close(augment(images, torch.Generator().manual_seed(7)),
                               plain(images, torch.Generator().manual_seed(7)))


def test_original2012_trains_end_to_end_on_a_tiny_store_and_resumes_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alexnet.train import train
    from train_helpers import assert_same_weights, make_store, weights_of

    store = make_store(tmp_path)

    def config(out: str, **more: object) -> object:
        return resolve_config("original2012", {
            "data": str(store), "image_size": 72, "crop_size": 64, "batch_size": 16, "epochs": 3,
            "model_options": {"width": 0.125}, "lr_epochs": {"1": 0.01, "2": 0.001},
            "layer_lr_epochs": {"features.conv1@3": 0.0}, "lighting_epochs": {"2": 0.0},
            "ten_crop_final": False, "val_batch_size": 16, "progress": "lines",
            "log_every_steps": 1, "out": str(tmp_path / out), "flat_loss_steps": 0,
            "loader_workers": 1, "checkpoint_every_steps": 0, "deterministic": True, **more})

    noise: list[float] = []  # the colour noise's std set at each epoch's start
    set_std = TrainAugment.set_lighting_std
    monkeypatch.setattr(TrainAugment, "set_lighting_std",
                        lambda self, std: (noise.append(std), set_std(self, std))[1])
    result = train(config("run"), log=lambda _: None)
    assert result.status == "finished" and result.epochs == 3
    assert noise == [0.1, 0.0, 0.0]  # on in epoch 1, off from epoch 2 (lighting_epochs)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    second, third = (torch.load(p, weights_only=True)["model"] for p in checkpoints[-2:])
    # conv1 frozen in epoch 3 (rate 0), the rest still learning
    assert torch.equal(second["features.conv1.weight"], third["features.conv1.weight"])
    assert not torch.equal(second["features.conv2.weight"], third["features.conv2.weight"])
    # stopped mid-epoch 2 and relaunched: the 2012 update's increments and the per-epoch
    # rates and colour noise come back exactly
    assert train(config("resumed", max_steps=4), log=lambda _: None).status == "max_steps"
    assert train(config("resumed"), log=lambda _: None).steps == result.steps
    assert_same_weights(weights_of(tmp_path / "run" / "checkpoints/last.pt"),
                        weights_of(tmp_path / "resumed" / "checkpoints/last.pt"))


def test_the_presets_network_splits_into_the_two_device_towers() -> None:
    from alexnet.train.towers import TowerParallelAlexNet2012

    options = resolve_config("original2012", data="unused").model_options
    torch.manual_seed(8)
    grouped = create_model("alexnet2012", num_classes=10, width=0.25, dropout=0.0, **options)
    towers = TowerParallelAlexNet2012(grouped, ["cpu", "cpu"])
    x = torch.randn(2, 3, 96, 96) * 50  # raw 0..255 - mean units, as the preset trains
    torch.testing.assert_close(towers(x), grouped(x), rtol=1e-4, atol=1e-5)


# Each piece of the 2012 code as an arm of an experiment: its Variant overrides and the
# config fields (or model options) it changes. The logged rates need their schedule too.
PIECES_2012: dict[str, tuple[dict[str, object], list[str]]] = {
    "lrn1-before-relu": ({"model_options": {"lrn1_before_relu": True}}, ["lrn1_before_relu"]),
    "cnorm2": ({"model_options": {"same_map_norm2": True}}, ["same_map_norm2"]),
    "conv1-rounded-up": ({"model_options": {"conv1_ceil_padding": True}}, ["conv1_ceil_padding"]),
    "init-2012": ({"model_options": {"init": "original2012"}}, ["init"]),
    "bias-rate": ({"bias_lr": 0.02}, ["bias_lr"]),
    "update-rule": ({"update_rule": "cuda_convnet"}, ["update_rule"]),
    "colour-noise-units": ({"lighting_units": "cuda_convnet"}, ["lighting_units"]),
    "colour-noise-off-late": ({"lighting_epochs": {"2": 0.0}}, ["lighting_epochs"]),
    "logged-rates": ({"schedule": "epochs", "lr_epochs": {"1": 0.01, "2": 0.001}},
                     ["schedule", "lr_epochs"]),
    "conv1-frozen-late": ({"layer_lr_epochs": {"features.conv1@2": 0.0}}, ["layer_lr_epochs"]),
}


def test_an_experiment_can_switch_on_each_2012_piece_alone() -> None:
    import dataclasses

    from alexnet.experiments import get_experiment
    from alexnet.experiments.registry import Comparison, Variant, check_experiment

    base_experiment = get_experiment("ten-crop")  # an alexnet2012 experiment; its test scale
    experiment = dataclasses.replace(
        base_experiment, name="the-2012-code",
        variants=(Variant("paper"), *(Variant(name, o) for name, (o, _) in PIECES_2012.items())),
        comparisons=tuple(Comparison("paper", name, None, "the paper's text: no difference")
                          for name in PIECES_2012))
    check_experiment(experiment)
    paper = experiment.config("paper", "test")
    for name, (_, changed) in PIECES_2012.items():
        config = experiment.config(name, "test")  # validated as `alexnet train` validates
        fields = [f for f in paper.to_dict() if getattr(paper, f) != getattr(config, f)]
        options = [k for k in {**paper.model_options, **config.model_options}
                   if paper.model_options.get(k) != config.model_options.get(k)]
        assert (options if fields == ["model_options"] else fields) == changed, name
    # together they cover the preset's model options and the 2012 recipe's fields
    preset = PRESETS["original2012"].values
    switched = {key for overrides, _ in PIECES_2012.values() for key in overrides}
    switched |= {k for o, _ in PIECES_2012.values() for k in o.get("model_options", {})}
    assert set(preset["model_options"]) <= switched
    assert {"bias_lr", "update_rule", "lighting_units", "lighting_epochs", "lr_epochs",
            "layer_lr_epochs", "schedule"} <= switched
