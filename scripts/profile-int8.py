"""Where an int8 graph's time goes: onnxruntime's per-node profile, summed by op type.

    .venv/bin/python scripts/profile-int8.py alexnet2012 --crop 224        # random weights
    .venv/bin/python scripts/profile-int8.py runs/x/checkpoints/best.int8.onnx --crop 112

A registered model name is quantised first (random weights, 1000 classes, calibrated on
random views: speed only). Prints each op type's share of the run time of `--runs` batches.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from alexnet.evaluate.inputs import FolderImages
from alexnet.evaluate.quantize import QuantizeConfig, quantize_model
from alexnet.evaluate.scoring import LoadedModel
from alexnet.models import create_model, list_models
from alexnet.models.checkpoint import Checkpoint
from alexnet.models.pretrained import torchvision_preprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .int8.onnx file or a registered model name")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.model)
        if args.model in list_models():
            classes = [str(i) for i in range(1000)]
            info = Checkpoint(args.model, {"num_classes": 1000}, classes, classes,
                              {**torchvision_preprocess(), "crop_size": args.crop, "image_size": args.crop + 32})
            images = np.random.default_rng(0).integers(0, 256, (64, args.crop + 32, args.crop + 32, 3), np.uint8)
            calibration = FolderImages(Path("random"), ["0"], ["0"], args.crop + 32, [str(i) for i in range(64)],
                                       np.zeros(64, dtype=np.int64), images)
            path = Path(folder) / "model.int8.onnx"
            loaded = LoadedModel(create_model(args.model, num_classes=1000).eval(), info, args.model)
            quantize_model(loaded, path, QuantizeConfig(images=48, check_images=16, min_agreement=0.0), calibration)
        options = onnxruntime.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(1).standard_normal((args.batch_size, 3, args.crop, args.crop), np.float32)
        session.run(None, {"images": x})
        for _ in range(args.runs):
            session.run(None, {"images": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    print(f"{args.model}: {args.runs + 1} runs of batch {args.batch_size} at {args.crop} px, "
          f"{total / 1e6 / (args.runs + 1):.2f} s a batch in graph nodes; {torch.__version__=}")
    for op, micros in by_op.most_common():
        print(f"  {op:<28} {100 * micros / total:5.1f}%")


if __name__ == "__main__":
    main()
