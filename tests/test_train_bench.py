"""`alexnet bench train` runs end to end and reports a ratio for each candidate."""

from __future__ import annotations

from alexnet.cli import main
from alexnet.train.bench import TrainBenchConfig, run_train_benchmark


def test_bench_train_interleaves_baseline_and_candidates_and_prints_ratios(capsys) -> None:
    config = TrainBenchConfig(image_size=64, batch_size=2, rounds=2, steps=1, warmup=0,
                              num_classes=10)
    lines: list[str] = []
    result = run_train_benchmark(config, log=lines.append)
    rounds = [line for line in lines if line.startswith("round")]
    # baseline, alexnet2012, alexnet2014 in every round, in that order
    assert [line.split(": ")[1].split(" (")[0] for line in rounds] == \
        ["torchvision", "alexnet2012", "alexnet2014"] * 2
    summary = result.summary()
    assert "torchvision alexnet (fp32, eager, NCHW)" in summary
    assert summary.count("x\n") + summary.endswith("x") == 2  # a ratio per candidate
    assert all(len(rates) == 2 and min(rates) > 0 for rates in result.images_per_s.values())


def test_bench_train_rejects_bad_arguments(capsys) -> None:
    assert main(["bench", "train", "--models", "alexnet3"]) == 2
    assert "unknown model 'alexnet3'" in capsys.readouterr().err
    assert main(["bench", "train", "--batch-size", "0"]) == 2


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
    assert "one profiled step" in summary and summary.count("GEMM bound: ") == 2


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
