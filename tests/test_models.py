"""Models: parameter counts, shapes, every option, LRN parity, towers, init, bad input."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from alexnet import AlexNetError, create_model, list_models
from alexnet.cli import main
from alexnet.models import MODELS, layers, model_options
from alexnet.models.init import INIT_SCHEMES
from alexnet.models.layers import local_response_norm, same_map_response_norm


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- parameter counts and shapes -------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_source(name: str) -> None:
    assert count_params(create_model(name)) == MODELS[name].num_params


def test_published_parameter_counts() -> None:
    # Golden numbers from PAPER_FACTS.md (grouped 2012 net; torchvision's alexnet).
    assert count_params(create_model("alexnet2012")) == 60_965_224
    assert count_params(create_model("alexnet2014")) == 61_100_840
    assert count_params(torchvision.models.alexnet()) == 61_100_840


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet2014"])
@pytest.mark.parametrize("size", [224, 227])
def test_imagenet_shapes(name: str, size: int) -> None:
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    assert features.shape == (2, 256, 6, 6)  # pool5, §3.5
    assert logits.shape == (2, 7)


def test_alexnet2012_feature_map_sizes_follow_fig2() -> None:
    model = create_model("alexnet2012").eval()
    sizes = {}
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        for name, layer in model.features.named_children():
            x = layer(x)
            sizes[name] = tuple(x.shape[1:])
    assert sizes["conv1"] == (96, 55, 55)
    assert sizes["pool1"] == (96, 27, 27)
    assert sizes["conv2"] == (256, 27, 27)
    assert sizes["pool2"] == (256, 13, 13)
    assert sizes["conv3"] == (384, 13, 13)
    assert sizes["conv4"] == (384, 13, 13)
    assert sizes["conv5"] == (256, 13, 13)
    assert sizes["pool5"] == (256, 6, 6)


@pytest.mark.parametrize("name", ["cifar_18pct", "cifar_80sec", "cifar_fig1"])
def test_cifar_shapes(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        assert model.features(torch.zeros(3, 3, 32, 32)).shape == (3, 64, 4, 4)
        assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_cifar_variants_differ_only_in_lrn() -> None:
    with_lrn = [type(m).__name__ for m in create_model("cifar_18pct").features]
    without = [type(m).__name__ for m in create_model("cifar_80sec").features]
    assert with_lrn.count("SameMapResponseNorm") == 2
    assert "SameMapResponseNorm" not in without
    assert [n for n in with_lrn if n != "SameMapResponseNorm"] == without


# --- every option combination builds, runs forward and backward --------------------------


def _forward_backward(model: nn.Module, size: int, in_channels: int = 3) -> torch.Tensor:
    model.train()
    x = torch.randn(2, in_channels, size, size)
    out = model(x)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return out


ALEXNET2012_GRID = list(
    itertools.product(["relu", "tanh"], [True, False], [True, False], [None, 2, 3, 4, 5], [1, 2])
)


@pytest.mark.parametrize(("activation", "lrn", "overlapping", "drop_conv", "towers"), ALEXNET2012_GRID)
def test_alexnet2012_every_option_combination(
    activation: str, lrn: bool, overlapping: bool, drop_conv: int | None, towers: int
) -> None:
    model = create_model(
        "alexnet2012", num_classes=5, in_channels=1, activation=activation, lrn=lrn,
        overlapping_pooling=overlapping, dropout=0.3, drop_conv=drop_conv, towers=towers,
        width=1 / 16,
    )  # fmt: skip
    out = _forward_backward(model, 67, in_channels=1)
    assert out.shape == (2, 5)
    convs = [n for n, m in model.named_layers() if isinstance(m, nn.Conv2d)]
    expected = [f"conv{i}" for i in range(1, 6) if i != drop_conv]
    assert convs == expected
    norms = [n for n, _ in model.named_layers() if n.startswith("norm")]
    assert norms == (["norm1", "norm2"] if lrn else [])
    pools = [m for _, m in model.named_layers() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == (3 if overlapping else 2) for p in pools)


@pytest.mark.parametrize(
    ("activation", "overlapping", "dropout"),
    list(itertools.product(["relu", "tanh"], [True, False], [0.0, 0.5])),
)
def test_alexnet2014_every_option_combination(activation: str, overlapping: bool, dropout: float) -> None:
    model = create_model(
        "alexnet2014", num_classes=4, in_channels=2, activation=activation,
        overlapping_pooling=overlapping, dropout=dropout, width=1 / 16,
    )  # fmt: skip
    assert _forward_backward(model, 64, in_channels=2).shape == (2, 4)


@pytest.mark.parametrize("name", ["cifar_18pct", "cifar_80sec", "cifar_fig1"])
@pytest.mark.parametrize(
    ("activation", "lrn", "overlapping", "dropout"),
    list(itertools.product(["relu", "tanh"], [True, False], [True, False], [0.0, 0.5])),
)
def test_cifar_every_option_combination(
    name: str, activation: str, lrn: bool, overlapping: bool, dropout: float
) -> None:
    model = create_model(
        name, num_classes=3, in_channels=1, activation=activation, lrn=lrn,
        overlapping_pooling=overlapping, dropout=dropout, width=0.5,
    )  # fmt: skip
    assert _forward_backward(model, 32, in_channels=1).shape == (2, 3)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("init", INIT_SCHEMES)
def test_every_init_scheme_builds_or_is_rejected_clearly(name: str, init: str) -> None:
    # Caffe's variant exists only for the network Caffe ships (bvlc_alexnet = alexnet2012).
    if init == "caffe" and name != "alexnet2012":
        with pytest.raises(AlexNetError, match=r"init scheme 'caffe'; valid: paper, kaiming, pytorch"):
            create_model(name, init=init)
        return
    model = create_model(name, init=init, width=1 / 8)
    size = MODELS[name].input_size
    _forward_backward(model, size)


def test_one_tower_halves_the_kernels_but_not_conv5() -> None:
    # §3.2: the one-GPU comparison net halves every conv layer except the last.
    model = create_model("alexnet2012", towers=1)
    widths = {n: m.out_channels for n, m in model.named_layers() if isinstance(m, nn.Conv2d)}
    assert widths == {"conv1": 48, "conv2": 128, "conv3": 192, "conv4": 192, "conv5": 256}
    assert all(m.groups == 1 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.classifier.fc6.out_features == 4096


def test_width_multiplier_keeps_towers_even() -> None:
    model = create_model("alexnet2012", width=0.3)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 2 == 0
            assert m.in_channels % m.groups == 0


# --- local response normalisation (§3.3) ------------------------------------------------


def lrn_by_loops(a: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """The formula written out: b[c] = a[c] / (k + alpha/size * sum_{window} a^2)^beta,
    the window of `size` channels centred on c clipped at both ends."""
    out = torch.empty_like(a)
    channels = a.shape[1]
    for c in range(channels):
        lo = max(0, c - size // 2)
        hi = min(channels - 1, c + (size - 1) // 2)
        total = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, c] = a[:, c] / (k + alpha / size * total) ** beta
    return out


@pytest.mark.parametrize("channels", [1, 3, 7, 16])
def test_lrn_matches_the_formula_including_edges(channels: int) -> None:
    torch.manual_seed(0)
    # Values near 100 so that alpha/n * sum a^2 (~1) matters as much as k = 2.
    a = torch.randn(2, channels, 5, 4, dtype=torch.float64) * 100
    expected = lrn_by_loops(a, 5, 1e-4, 0.75, 2.0)
    got = local_response_norm(a, 5, 1e-4, 0.75, 2.0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # The edge channels really see a clipped window: dropping channel 1 changes channel 0
    # only when it is inside the window.
    assert (expected != a / 2.0**0.75).any()


def test_lrn_equals_torch_module_in_the_original_code_convention() -> None:
    torch.manual_seed(1)
    a = torch.randn(4, 96, 9, 9) * 50
    torch_lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    reference = torch_lrn(a)
    torch.testing.assert_close(local_response_norm(a), reference)
    # The model normalises each tower's 48 maps on its own, as the 2012 code does (§3.2).
    model_layer = create_model("alexnet2012").features.norm1
    per_tower = torch.cat([torch_lrn(a[:, :48]), torch_lrn(a[:, 48:])], dim=1)
    torch.testing.assert_close(model_layer(a), per_tower)
    assert not torch.allclose(model_layer(a), reference)  # the tower edge matters


def test_lrn_paper_formula_needs_alpha_times_n() -> None:
    # Read literally, the paper has no /n: that is alpha = 5e-4 in the /n convention.
    torch.manual_seed(2)
    a = torch.randn(1, 8, 3, 3, dtype=torch.float64) * 100
    channels = a.shape[1]
    literal = torch.empty_like(a)
    for c in range(channels):
        window = range(max(0, c - 2), min(channels, c + 3))
        literal[:, c] = a[:, c] / (2 + 1e-4 * sum(a[:, j] ** 2 for j in window)) ** 0.75
    torch.testing.assert_close(local_response_norm(a, 5, 5e-4, 0.75, 2.0), literal)
    assert not torch.allclose(local_response_norm(a, 5, 1e-4, 0.75, 2.0), literal)


@pytest.mark.parametrize(("size", "groups"), [(5, 1), (5, 2), (4, 1), (3, 3)])
def test_lrn_hand_written_gradient_is_exact(size: int, groups: int) -> None:
    # The training path uses a custom backward (_LocalResponseNormFunction); gradcheck
    # compares it with finite differences in float64. An even size makes the band
    # asymmetric, so a backward that forgot to transpose it would fail here.
    torch.manual_seed(4)
    a = (torch.randn(2, 12, 4, 3, dtype=torch.float64) * 40).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: local_response_norm(t, size, 1e-4, 0.75, 2.0, groups), (a,))
    trained = local_response_norm(a, size, groups=groups)
    assert type(trained.grad_fn).__name__ == "_LocalResponseNormFunctionBackward"
    # inference takes the plain formula (no custom Function): the same values as the loops,
    # tower by tower
    per_tower = torch.cat([lrn_by_loops(t, size, 1e-4, 0.75, 2.0)
                           for t in a.detach().chunk(groups, dim=1)], dim=1)
    with torch.no_grad():
        plain = local_response_norm(a, size, groups=groups)
    assert plain.grad_fn is None
    torch.testing.assert_close(plain, per_tower, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(trained.detach(), per_tower, rtol=1e-10, atol=1e-10)


@pytest.fixture
def fused_lrn(monkeypatch: pytest.MonkeyPatch) -> layers._FusedKernels:
    """The fused (torch.compile'd) LRN kernels for every size, fresh for this test."""
    kernels = layers._FusedKernels()
    monkeypatch.setattr(layers, "_FUSED", kernels)
    monkeypatch.setattr(layers, "FUSE_MIN_ELEMENTS", 0)
    return kernels


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_fused_kernels_give_the_formula_and_its_gradient(fused_lrn: layers._FusedKernels,
                                                             beta: float) -> None:
    # large CPU tensors take compiled kernels (float32 math, s^-0.75 from square roots);
    # they must match float64 autograd through the plain formula, towers and edges included
    torch.manual_seed(6)
    a = (torch.randn(2, 16, 5, 6) * 40).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(a)
    fast = a.clone().requires_grad_()
    out = local_response_norm(fast, 5, 1e-4, beta, 2.0, groups=2)
    out.backward(upstream)
    assert fused_lrn.compiled is not None and fused_lrn.failed is None
    reference = a.double().requires_grad_()
    expected = torch.cat([lrn_by_loops(t, 5, 1e-4, beta, 2.0) for t in reference.chunk(2, dim=1)], 1)
    expected.backward(upstream.double())
    torch.testing.assert_close(out.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.grad.double(), reference.grad, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():  # inference (evaluate, predict) uses the fused forward too
        torch.testing.assert_close(local_response_norm(a, 5, 1e-4, beta, 2.0, groups=2), out.detach())
    assert fused_lrn.failed is None


def test_lrn_falls_back_to_eager_when_compiling_fails(fused_lrn: layers._FusedKernels,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    a = torch.randn(2, 8, 3, 3) * 40
    with pytest.warns(RuntimeWarning, match="fused kernels unavailable here .*no C\\+\\+ compiler"):
        out = local_response_norm(a)
    assert fused_lrn.failed is not None and not fused_lrn.wanted(a)
    torch.testing.assert_close(out, lrn_by_loops(a.double(), 5, 1e-4, 0.75, 2.0).float())


def test_lrn_in_fp16_does_not_overflow() -> None:
    # fp16 autocast (GPUs without bf16): a^2 overflows above 256, which must not give NaN
    a = torch.tensor([300.0, -280.0, 5.0, 0.0]).view(1, 4, 1, 1).repeat(2, 1, 3, 3)
    expected = lrn_by_loops(a.double(), 5, 1e-4, 0.75, 2.0)
    half = a.half().requires_grad_()
    out = local_response_norm(half)
    out.float().sum().backward()
    assert out.dtype == torch.float16 and half.grad is not None
    assert torch.isfinite(half.grad).all()
    torch.testing.assert_close(out.double(), expected, rtol=2e-3, atol=1e-2)


def test_lrn_hand_written_gradient_matches_autograd_in_bf16() -> None:
    torch.manual_seed(5)
    a = (torch.randn(2, 96, 7, 7) * 30).to(torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    upstream = torch.randn_like(a)
    fast = a.clone().requires_grad_()
    local_response_norm(fast, groups=2).backward(upstream)
    reference = a.float().requires_grad_()
    nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(reference[:, :48]).backward(upstream[:, :48].float())
    nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(reference[:, 48:]).backward(upstream[:, 48:].float())
    assert fast.grad is not None and reference.grad is not None
    torch.testing.assert_close(fast.grad.float(), reference.grad, rtol=3e-2, atol=3e-2)


def test_lrn_in_bf16_channels_last_is_close_to_fp32() -> None:
    torch.manual_seed(3)
    a = torch.randn(2, 96, 11, 11) * 30
    reference = local_response_norm(a)
    fast = local_response_norm(a.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert fast.dtype == torch.bfloat16 and fast.is_contiguous(memory_format=torch.channels_last)
    # bf16 keeps 8 bits of mantissa: about 0.4% per rounding, a few roundings deep.
    torch.testing.assert_close(fast.float(), reference, rtol=2e-2, atol=5e-2)


def test_lrn_runs_under_cpu_autocast_with_gradients() -> None:
    model = create_model("alexnet2012", width=1 / 8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_same_map_response_norm_matches_loops() -> None:
    torch.manual_seed(4)
    a = torch.randn(2, 3, 6, 5, dtype=torch.float64) * 100
    size, alpha, beta, k = 3, 5e-5, 0.75, 1.0
    expected = torch.empty_like(a)
    h, w = a.shape[2:]
    for y in range(h):
        for x in range(w):
            window = a[:, :, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
            total = (window**2).sum(dim=(2, 3))
            expected[:, :, y, x] = a[:, :, y, x] / (k + alpha / size**2 * total) ** beta
    torch.testing.assert_close(same_map_response_norm(a, size, alpha, beta, k), expected)


# --- alexnet2014 is torchvision's alexnet ------------------------------------------------


def test_alexnet2014_state_dict_matches_torchvision() -> None:
    ours = create_model("alexnet2014").state_dict()
    theirs = torchvision.models.alexnet().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_alexnet2014_outputs_equal_torchvision_with_the_same_weights() -> None:
    torch.manual_seed(5)
    reference = torchvision.models.alexnet(num_classes=1000).eval()
    ours = create_model("alexnet2014").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


# --- towers: grouped conv2/4/5 have no cross-tower connections (§3.2) ---------------------


def test_towers_do_not_mix_in_conv2_conv4_conv5() -> None:
    torch.manual_seed(6)
    model = create_model("alexnet2012").eval()
    f = model.features
    for conv, width in ((f.conv2, 96), (f.conv4, 384), (f.conv5, 384)):
        x = torch.randn(1, width, 13, 13)
        cut = x.clone()
        cut[:, width // 2 :] = 0  # silence tower 2's input
        with torch.no_grad():
            full, partial = conv(x), conv(cut)
        half = conv.out_channels // 2
        torch.testing.assert_close(partial[:, :half], full[:, :half])  # tower 1 untouched
        assert not torch.allclose(partial[:, half:], full[:, half:])  # tower 2 changed


def test_conv3_connects_both_towers() -> None:
    torch.manual_seed(7)
    conv3 = create_model("alexnet2012").features.conv3
    x = torch.randn(1, 256, 13, 13)
    cut = x.clone()
    cut[:, 128:] = 0
    with torch.no_grad():
        assert not torch.allclose(conv3(cut)[:, :192], conv3(x)[:, :192])


# --- initialisation statistics (§5) -----------------------------------------------------


def _learned(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_layers() if isinstance(m, nn.Conv2d | nn.Linear)}


def _assert_std(weight: torch.Tensor, std: float) -> None:
    # Relative tolerance from the sampling error of the std of n normal draws (~1/sqrt(2n)),
    # at least 2% for the big layers.
    tolerance = max(0.02, 5 / (2 * weight.numel()) ** 0.5)
    assert abs(weight.std().item() / std - 1) < tolerance, (weight.std().item(), std)
    assert abs(weight.mean().item()) < 5 * std / weight.numel() ** 0.5 + 1e-6


def test_paper_init_statistics() -> None:
    torch.manual_seed(8)
    layers = _learned(create_model("alexnet2012", init="paper"))
    bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # §5
    for name, layer in layers.items():
        _assert_std(layer.weight, 0.01)
        expected = 1.0 if name in bias_one else 0.0
        assert torch.all(layer.bias == expected), name


def test_caffe_init_statistics() -> None:
    torch.manual_seed(9)
    layers = _learned(create_model("alexnet2012", init="caffe"))
    for name, layer in layers.items():
        _assert_std(layer.weight, 0.005 if name in ("fc6", "fc7") else 0.01)
        expected = 0.1 if name in {"conv2", "conv4", "conv5", "fc6", "fc7"} else 0.0
        assert torch.all(layer.bias == expected), name


def test_kaiming_init_statistics() -> None:
    torch.manual_seed(10)
    layers = _learned(create_model("alexnet2012", init="kaiming"))
    for name, layer in layers.items():
        fan_in = layer.weight[0].numel()
        _assert_std(layer.weight, 0.01 if name == "fc8" else (2 / fan_in) ** 0.5)
        assert torch.all(layer.bias == 0), name


def test_alexnet2014_paper_init_and_cifar_cuda_convnet_init() -> None:
    torch.manual_seed(11)
    layers = dict(create_model("alexnet2014", init="paper").named_modules())
    for key in ("features.3", "features.8", "features.10", "classifier.1", "classifier.4"):
        assert torch.all(layers[key].bias == 1.0)
        _assert_std(layers[key].weight, 0.01)
    cifar = _learned(create_model("cifar_18pct"))
    _assert_std(cifar["conv1"].weight, 1e-4)  # initW=0.0001 in layers-18pct.cfg
    _assert_std(cifar["conv2"].weight, 0.01)


# --- bad input ------------------------------------------------------------------------------


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(AlexNetError) as error:
        create_model("alexnet2013")
    message = str(error.value)
    assert "\n" not in message and "alexnet2013" in message
    assert all(name in message for name in list_models())


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(AlexNetError) as error:
        create_model("alexnet2012", num_clases=10)
    message = str(error.value)
    assert "num_clases" in message and all(key in message for key in model_options("alexnet2012"))


@pytest.mark.parametrize(
    "options",
    [{"activation": "sigmoid"}, {"towers": 3}, {"drop_conv": 1}, {"dropout": 1.5}, {"width": 0},
     {"init": "xavier"}],
)  # fmt: skip
def test_bad_option_values_are_one_line_errors(options: dict) -> None:
    with pytest.raises(AlexNetError) as error:
        create_model("alexnet2012", **options)
    assert "\n" not in str(error.value)


def test_cli_info_prints_the_layer_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "alexnet2012"]) == 0
    out = capsys.readouterr().out
    assert "60,965,224" in out and "conv1" in out and "§3.3" in out and "96x55x55" in out
    assert main(["info", "cifar_fig1", "-o", "activation=tanh", "-o", "num_classes=10"]) == 0


def test_cli_bad_model_is_one_line_with_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alexnet", "info", "resnet50"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "valid: alexnet2012" in result.stderr
    assert "Traceback" not in result.stderr
