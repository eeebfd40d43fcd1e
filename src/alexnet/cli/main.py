"""The ``alexnet`` command: a thin layer over the Python API.

Each subcommand parses its arguments, calls one function of the package and prints the
result. User mistakes surface as ``AlexNetError`` and are printed as one line with exit
status 2, never as a traceback.

``COMMANDS`` below is the one table of subcommands: name -> (help, add_arguments, run),
in the order ``alexnet --help`` lists them. The command modules import the stage they run
inside their ``run`` function, not at the top, so a command loads only its own stage and
``alexnet --help`` or a mistyped flag answers without importing training, evaluation,
matplotlib and onnxruntime (7.3 s instead of 10.4 s on the 2-core AMD EPYC while busy;
torch itself is loaded by ``alexnet.create_model``'s package).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from alexnet.cli import bench, checkpoint, data, demo, evaluate, experiment, info, report, train
from alexnet.errors import AlexNetError
from alexnet.runtime.allocator import reuse_freed_memory

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]

COMMANDS: dict[str, Command] = {
    "bench": (
        "speed benchmarks against a baseline measured in the same run",
        bench.add_bench_arguments, bench.run_bench),
    "convert-checkpoint": (
        "re-save a checkpoint you trust that holds pickled Python objects "
            "(numpy arrays, modules) as plain tensors, so it loads safely",
        checkpoint.add_convert_arguments, checkpoint.run_convert),
    "prepare": (
        "decode a dataset once into a fast store: shorter side to SIZE, centre crop, "
            "RGB uint8, with the training set's mean image and RGB PCA (§2, §4.1)",
        data.add_prepare_arguments, data.run_prepare),
    "demo": (
        "the main job: train the paper's network on Imagenette, evaluate, write the report",
        demo.add_demo_arguments, demo.run_demo),
    "evaluate": (
        "top-1/top-5 error (centre or 10-crop), per-class accuracy, confusion; ensembles",
        evaluate.add_evaluate_arguments, evaluate.run_evaluate),
    "predict": (
        "top-5 classes with probabilities for image files",
        evaluate.add_predict_arguments, evaluate.run_predict),
    "features": (
        "activations of a layer (default fc7, the 4096-d last hidden layer, §6.1) as .npz",
        evaluate.add_features_arguments, evaluate.run_features),
    "neighbors": (
        "nearest training images in fc7 space (Fig. 4 right), with binary-code retrieval",
        evaluate.add_neighbors_arguments, evaluate.run_neighbors),
    "export": (
        "write a model as ONNX (checked with onnxruntime; --int8: quantised), safetensors, "
            "TorchScript, or a Hugging Face folder with a model card",
        evaluate.add_export_arguments, evaluate.run_export),
    "experiment": (
        "reproduce one of the paper's claims: train the variants, write a table "
            "and a plot with a verdict",
        experiment.add_experiment_arguments, experiment.run_experiment),
    "info": (
        "layer table of a model: output shapes, parameters, multiply-adds, paper section",
        info.add_info_arguments, info.run_info),
    "report": (
        "evaluate a run's best checkpoint, draw Fig. 3 / Fig. 4 / curves, write report.html",
        report.add_report_arguments, report.run_report),
    "train": (
        "train a model: the paper's recipe (§4-5) as named presets, resumable, "
            "DDP via torchrun, the two-device towers of §3.2",
        train.add_train_arguments, train.run_train),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="Krizhevsky, Sutskever & Hinton (2012) as fast, faithful, tested software.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _run) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    reuse_freed_memory()  # before any large tensor: see alexnet/runtime/allocator.py
    try:
        return COMMANDS[args.command][2](args) or 0
    except AlexNetError as error:
        print(f"alexnet {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
