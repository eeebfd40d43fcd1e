"""`alexnet bench train` runs end to end and reports a ratio for each candidate."""

from __future__ import annotations

import torch

from alexnet.cli import main
from alexnet.runtime.device import autocast_dtype
from alexnet.train.bench import TrainBenchConfig, run_train_benchmark


def test_bench_train_interleaves_baseline_and_candidates_and_prints_ratios(capsys) -> None:
    config = TrainBenchConfig(image_size=64, batch_size=2, rounds=2, steps=1, warmup=0,
                              num_classes=10)
    lines: list[str] = []
    result = run_train_benchmark(config, log=lines.append)
    rounds = [line for line in lines if line.startswith("round")]
    # baseline, the plain-PyTorch peer, alexnet2012, alexnet2014 in every round, in that order
    assert [line.split(": ")[1].split(" (")[0] for line in rounds] == \
        ["torchvision", "torchvision-peer", "alexnet2012", "alexnet2014"] * 2
    summary = result.summary()
    assert "torchvision alexnet (fp32, eager, NCHW)" in summary
    peer = "bf16 autocast" if autocast_dtype(torch.device("cpu"), "auto") else "fp32"
    assert f"torchvision alexnet ({peer}, channels_last)" in summary
    assert "strongest plain-PyTorch peer" in summary
    assert summary.count("x fp32") == 3  # the peer and each candidate against the fp32 baseline
    assert summary.count("x peer") == 2  # each candidate against the peer
    assert "cores" in result.device_name  # the CPU named, with its matrix features
    assert all(len(rates) == 2 and min(rates) > 0 for rates in result.images_per_s.values())


def test_bench_train_rejects_bad_arguments(capsys) -> None:
    assert main(["bench", "train", "--models", "alexnet3"]) == 2
    assert "unknown model 'alexnet3'" in capsys.readouterr().err
    assert main(["bench", "train", "--batch-size", "0"]) == 2
    capsys.readouterr()
    # a candidate that takes 24 px, but the torchvision baseline does not
    assert main(["bench", "train", "--models", "cifar_conv_local", "--image-size", "24"]) == 2
    assert "too small for torchvision's alexnet" in capsys.readouterr().err
    assert main(["bench", "train", "--image-size", "62"]) == 2
    assert "at least 63x63" in capsys.readouterr().err


def test_the_baseline_step_runs_in_true_fp32(monkeypatch) -> None:
    import torch

    from alexnet.train import bench

    seen: list[tuple[bool, bool]] = []
    cross_entropy = bench.F.cross_entropy

    def spy(*args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(bench.F, "cross_entropy", spy)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        step = bench._baseline_step(torch.device("cpu"), TrainBenchConfig(
            image_size=64, batch_size=2, num_classes=10))
        step()
        assert seen == [(False, False)]  # TF32 off inside the baseline's step ...
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_profile_splits_each_step_by_kind_of_kernel() -> None:
    from alexnet.train.bench import CONVOLUTION, MATMUL, kernel_class

    assert kernel_class("aten::mkldnn_convolution") == CONVOLUTION
    assert kernel_class("aten::convolution_backward") == CONVOLUTION
    assert kernel_class("aten::cudnn_convolution") == CONVOLUTION
    assert kernel_class("aten::addmm") == kernel_class("aten::mm") == MATMUL
    assert kernel_class("aten::max_pool2d_with_indices") == "max_pool2d_with_indices"
    config = TrainBenchConfig(image_size=64, batch_size=2, rounds=1, steps=1, warmup=0,
                              num_classes=10, profile=True)
    result = run_train_benchmark(config, log=lambda _: None)
    assert list(result.profiles) == list(result.images_per_s)  # every variant, in order
    for times in result.profiles.values():
        assert times[CONVOLUTION] > 0 and times[MATMUL] > 0
        assert "addmm" not in times and "mkldnn_convolution" not in times  # classified
    summary = result.summary()
    assert "one profiled step" in summary and summary.count("GEMM bound: ") == 3  # peer too
    assert set(result.step_flops) == set(result.images_per_s)
    assert set(result.peak_flops) == {"fp32", "bf16"} or set(result.peak_flops) == {"fp32"}
    assert summary.count("would need") == 2 and summary.count("of the fp32 peak") >= 1


def test_gpu_kernel_times_count_each_kernel_once() -> None:
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from alexnet.train.bench import CONVOLUTION, MATMUL, kernel_times

    def event(key: str, device: DeviceType, cpu: float, gpu: float) -> SimpleNamespace:
        return SimpleNamespace(key=key, device_type=device, self_cpu_time_total=cpu,
                               self_device_time_total=gpu)

    events = [event("aten::cudnn_convolution", DeviceType.CPU, 50.0, 3000.0),
              event("sm90_xmma_fprop_implicit_gemm", DeviceType.CUDA, 0.0, 3000.0),
              event("aten::addmm", DeviceType.CPU, 20.0, 1000.0),
              event("ampere_bf16_gemm", DeviceType.CUDA, 0.0, 1000.0),
              event("aten::relu_", DeviceType.CPU, 10.0, 500.0)]
    assert kernel_times(events, on_gpu=True) == {CONVOLUTION: 3.0, MATMUL: 1.0, "relu_": 0.5}
    assert kernel_times(events, on_gpu=False) == {CONVOLUTION: 0.05, MATMUL: 0.02, "relu_": 0.01}


def test_training_flops_count_forward_and_both_gradients_but_no_image_gradient() -> None:
    import torch
    import torchvision
    from torch import nn

    from alexnet.train.bench import training_flops

    model = nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5))
    conv_macs = 4 * 6 * 6 * 3 * 3 * 3  # outputs x (in channels x kernel) per output
    linear_macs = 4 * 6 * 6 * 5
    # conv1: forward + weight gradient (the image needs none); fc: all three, 2 FLOP per MAC
    assert training_flops(model, 8) == 2 * (2 * conv_macs + 3 * linear_macs)
    # torchvision's alexnet: 714.2M multiply-adds per image of which conv1's are 70.3M
    tv = training_flops(torchvision.models.alexnet(), 224)
    assert tv == 2 * (3 * 714_188_480 - 70_276_800)
    assert not any(p.grad is not None for p in model.parameters())  # counting trains nothing
    assert torch.is_grad_enabled()


def test_matmul_peak_is_the_fastest_timed_product(monkeypatch) -> None:
    import torch

    from alexnet.train import bench

    durations = iter([9.0, 4.0, 2.0, 3.0])  # the first (warm-up) is ignored even if slowest
    monkeypatch.setattr(bench, "_time", lambda step, steps, batch, device: (step(), 1 / next(durations))[1])
    peak = bench.matmul_peak(torch.float32, torch.device("cpu"), repeats=3, size=16)
    assert peak == 2 * 16**3 / 2.0


def test_peak_lines_say_what_fraction_the_target_needs() -> None:
    from alexnet.train.bench import TrainBenchConfig, TrainBenchResult

    result = TrainBenchResult(TrainBenchConfig(target_ratio=5.0), "test CPU")
    result.images_per_s = {"torchvision": [100.0], "alexnet2012 (bf16, channels_last, eager)": [300.0]}
    result.precisions = {"torchvision": "fp32", "alexnet2012 (bf16, channels_last, eager)": "bf16"}
    result.profiles = {name: {"convolutions": 1.0} for name in result.images_per_s}
    result.step_flops = {"torchvision": 4 * 10**9, "alexnet2012 (bf16, channels_last, eager)": 4 * 10**9}
    result.peak_flops = {"fp32": 0.5e12, "bf16": 4e12}
    summary = result.summary()
    assert "fp32 0.50 TFLOP/s, bf16 4.00 TFLOP/s" in summary
    assert "0.40 TFLOP/s = 80% of the fp32 peak" in summary  # 100 images/s x 4 GFLOP
    # 300 images/s x 4 GFLOP = 1.2 TFLOP/s = 30% of bf16; 5x = 500 images/s = 2 TFLOP/s = 50%
    assert "1.20 TFLOP/s = 30% of the bf16 peak; 5x would need 50%" in summary


def test_the_peer_is_torchvision_with_this_machines_fast_path(monkeypatch) -> None:
    from alexnet.train import bench

    seen: list[tuple[bool, bool]] = []
    cross_entropy = bench.F.cross_entropy

    def spy(logits, labels):
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype == torch.bfloat16))
        return cross_entropy(logits.float(), labels)

    monkeypatch.setattr(bench.F, "cross_entropy", spy)
    step, precision = bench._peer_step(torch.device("cpu"), TrainBenchConfig(
        image_size=64, batch_size=2, num_classes=10))
    step()
    fast = autocast_dtype(torch.device("cpu"), "auto") is not None
    assert precision == ("bf16" if fast else "fp32")
    assert seen == [(fast, fast)]  # autocast on (and bf16 logits) exactly where bf16 is fast


def test_the_peak_is_the_best_probe_and_a_step_above_it_is_flagged(monkeypatch) -> None:
    from alexnet.train import bench
    from alexnet.train.bench import TrainBenchResult

    products = iter([1.0e12, 3.0e12, 2.0e12, 2.5e12])  # three squares, conv2's gradient shape
    monkeypatch.setattr(bench, "matmul_peak", lambda *args, **kwargs: next(products))
    monkeypatch.setattr(bench, "conv_peak", lambda *args, **kwargs: 3.5e12)
    assert bench.machine_peak(torch.bfloat16, torch.device("cpu")) == 3.5e12
    result = TrainBenchResult(TrainBenchConfig(), "test CPU")
    result.images_per_s = {"torchvision": [100.0], "torchvision-peer (bf16 autocast, channels_last)": [150.0],
                           "alexnet2012 (bf16, channels_last, eager)": [300.0]}
    result.precisions = {"torchvision": "fp32", "torchvision-peer (bf16 autocast, channels_last)": "bf16",
                         "alexnet2012 (bf16, channels_last, eager)": "bf16"}
    result.step_flops = dict.fromkeys(result.images_per_s, 4 * 10**9)
    result.peak_flops = {"fp32": 0.3e12, "bf16": 4e12}  # 100 images/s x 4 GFLOP = 0.4 > 0.3
    lines = [line for line in result.summary().splitlines() if "of the fp32 peak" in line]
    assert len(lines) == 1 and "ABOVE the measured peak" in lines[0]
    below = [line for line in result.summary().splitlines() if "of the bf16 peak" in line]
    assert len(below) == 2 and not any("ABOVE" in line for line in below)
