"""Which int8 path for `alexnet export --int8`: onnxruntime static QDQ vs PT2E + inductor.

    .venv/bin/pip install torchao   # PT2E lives in torchao for torch >= 2.10
    .venv/bin/python scripts/compare-int8-backends.py RUN_DIR/checkpoints/best.pt STORE

Both int8 models are calibrated on the same 300 training images (the scorer's centre views),
then timed interleaved with the bf16 eager model (what `alexnet evaluate` runs) on one batch of
validation views, median of the rounds, and scored on the first `--val` validation images.
Network only: the uint8 -> float views cost the same for all three and are left out.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from alexnet.evaluate.inputs import open_images, spread_indices
from alexnet.evaluate.quantize import QuantizeConfig, quantize_model
from alexnet.evaluate.scoring import ScoringModel, load_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("store")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--val", type=int, default=1000, help="validation images scored (classes in turn)")
    args = parser.parse_args()

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    loaded = load_models([args.checkpoint])[0]
    fp32 = ScoringModel(loaded, torch.device("cpu"), "fp32")
    bf16 = ScoringModel(load_models([args.checkpoint])[0], torch.device("cpu"), "auto")
    train = open_images(args.store, "train", fp32.image_size)
    val = open_images(args.store, "val", fp32.image_size)
    calibration = train.subset(spread_indices(train.labels, 300))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.int8.onnx"
        quantize_model(loaded, path, QuantizeConfig(images=300, min_agreement=0.0), calibration)
        onnx_scorer = ScoringModel(load_models([path])[0], torch.device("cpu"))
    onnx_seconds = time.perf_counter() - started

    started = time.perf_counter()
    model = load_models([args.checkpoint])[0].model.eval()
    crop = fp32.crop_size
    with torch.no_grad():
        exported = torch.export.export(model, (torch.randn(2, 3, crop, crop),),
                                       dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)).module()
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for batch in calibration.batches(100):
            prepared(fp32.views(batch.images).contiguous())
        converted = convert_pt2e(prepared)
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # folds the int8 weights so inductor emits oneDNN qconv/qlinear
        pt2e = torch.compile(converted)
        views = fp32.views(next(val.batches(args.batch_size)).images).contiguous()
        pt2e(views)
        pt2e(views[:1])
    pt2e_seconds = time.perf_counter() - started

    candidates = {
        "bf16 eager, channels_last (alexnet evaluate)": bf16.logits,
        "int8 onnxruntime QDQ (alexnet export --int8)": onnx_scorer.logits,
        "int8 PT2E x86 inductor, torch.compile": lambda x: pt2e(x.contiguous()),
    }
    scored = val.subset(spread_indices(val.labels, args.val))
    for name, run in candidates.items():
        correct = total = 0
        with torch.no_grad():
            for batch in scored.batches(args.batch_size):
                correct += int((run(fp32.views(batch.images)).argmax(1) == batch.labels).sum())
                total += len(batch.labels)
        print(f"{name:<46} top-1 {correct / total:.2%} on {total} val images")
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    latency: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.no_grad():
        for run in candidates.values():
            run(views)
        for _ in range(args.rounds):
            for name, run in candidates.items():
                start = time.perf_counter()
                run(views)
                rates[name].append(len(views) / (time.perf_counter() - start))
                start = time.perf_counter()
                run(views[:1])
                latency[name].append(1000 * (time.perf_counter() - start))
    print(f"setup: onnxruntime export + calibration {onnx_seconds:.0f} s; PT2E prepare + calibration + "
          f"compile {pt2e_seconds:.0f} s (paid again by every process that loads it)")
    for name in candidates:
        print(f"{name:<46} {statistics.median(rates[name]):8.1f} images/s  batch 1: "
              f"{statistics.median(latency[name]):6.1f} ms  (batch {len(views)}, median of {args.rounds})")


if __name__ == "__main__":
    main()
