"""``alexnet evaluate | predict | features | neighbors | export``: using a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexnet.errors import AlexNetError, check_non_negative, check_positive
from alexnet.runtime.device import PRECISIONS
from alexnet.runtime.outputs import check_figure_path, check_output_file, write_json


def _model_arguments(parser: argparse.ArgumentParser, several: bool = True) -> None:
    if several:
        parser.add_argument("checkpoints", nargs="*", metavar="CKPT",
                            help="checkpoint file(s); several are an ensemble (softmax averaged)")
    parser.add_argument("--weights", choices=["torchvision"], default=None,
                        help="torchvision's IMAGENET1K_V1 AlexNet weights (downloaded once) in alexnet2014")
    parser.add_argument("--weights-file", default=None, metavar="PATH",
                        help="with --weights torchvision: a local copy of the weights (.pth)")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX-512-bf16, else fp32")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _data_arguments(parser: argparse.ArgumentParser, split: str = "val") -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="a prepared store, or a folder of class sub-folders (or of SPLIT/<class>/)")
    parser.add_argument("--split", default=split, help=f"store split or sub-folder (default {split})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")


def _load(args: argparse.Namespace, checkpoints: list[str]) -> list:
    from alexnet.evaluate.scoring import load_models

    return load_models(checkpoints, args.weights, args.weights_file)


def _open(args: argparse.Namespace, models: list, split: str | None = None):
    from alexnet.evaluate.inputs import open_images

    size = max(int(m.info.preprocess.get("image_size", 256)) for m in models)
    return open_images(args.data, split or args.split, size)


def _inputs(args: argparse.Namespace, *more: str) -> list[str]:
    """The files a command reads, which its outputs must never overwrite: the models and,
    for a prepared store, every file of it (a handful; an image folder is not listed)."""
    data = getattr(args, "data", None)
    is_store = data is not None and (Path(data) / "manifest.json").is_file()
    store_files = [str(p) for p in Path(data).rglob("*") if p.is_file()] if is_store else []
    return [*getattr(args, "checkpoints", []), *([args.weights_file] if args.weights_file else []),
            *store_files, *more]


def _check_json(target: str | None, inputs: list[str]) -> None:
    """Refuse a bad --json location before any work (an input, a folder, unwritable)."""
    if target is not None and target != "-":
        check_output_file(target, inputs=inputs, flag="--json")


def _write_json(target: str | None, payload: object, inputs: list[str] | None = None) -> None:
    if target is None:
        return
    if target == "-":
        print(json.dumps(payload, indent=2, default=str))
        return
    path = write_json(target, payload, inputs=inputs or [], flag="--json")
    print(f"wrote {path}", file=sys.stderr)


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for file, reason in skipped:
        print(f"skipped {file}: {reason}", file=sys.stderr)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _model_arguments(parser)
    _data_arguments(parser)
    parser.add_argument("--views", default="center", choices=["center", "10crop", "ten_crop"],
                        help="centre crop, or the paper's 10 patches averaged (§4.1)")
    parser.add_argument("--label-space", default="data", choices=["data", "model"],
                        help="data: softmax restricted to the dataset's classes; model: all outputs "
                             "(e.g. 1000-way ImageNet for Imagenette)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the full result as JSON ('-' = stdout)")
    parser.add_argument("--no-paper-rows", action="store_true", help="leave the paper's Table 2 rows out")
    _run_arguments(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    from alexnet.evaluate.accuracy import evaluate, format_per_class, format_table

    check_positive(limit=args.limit, batch_size=args.batch_size)
    _check_json(args.json, _inputs(args))
    models = _load(args, args.checkpoints)
    source = _open(args, models)
    result = evaluate(models, source, args.views, args.label_space, args.batch_size, args.device,
                      args.precision, args.limit, progress=not args.no_progress)
    _report_skipped(result.skipped)
    if args.json != "-":
        print(format_table(result, paper_rows=not args.no_paper_rows))
        print(format_per_class(result))
        print(f"{result.n_images} images in {result.seconds:.1f} s ({result.images_per_s:.0f} images/s)")
    _write_json(args.json, result.to_json(), _inputs(args))
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="CKPT IMAGE",
                        help="a checkpoint then image files (only images with --weights torchvision)")
    _model_arguments(parser, several=False)
    parser.add_argument("--top", type=int, default=5, help="how many classes per image")
    parser.add_argument("--views", default="center", choices=["center", "10crop", "ten_crop"])
    parser.add_argument("--json", default=None, metavar="FILE", help="write predictions as JSON ('-' = stdout)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)


def run_predict(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from alexnet.evaluate.inference import predict_files

    checkpoints, images = ([], args.inputs) if args.weights else (args.inputs[:1], args.inputs[1:])
    if not images:
        raise AlexNetError("no image given: alexnet predict CKPT IMAGE [IMAGE ...]")
    check_positive(top=args.top)
    _check_json(args.json, [*checkpoints, *images, *([args.weights_file] if args.weights_file else [])])
    models = _load(args, checkpoints)
    predictions = predict_files(models, images, args.top, args.views, args.device, args.precision)
    for p in predictions:
        if p.error:
            print(f"alexnet predict: error: {p.file}: {p.error}", file=sys.stderr)
        elif args.json != "-":
            print(p.file)
            for class_id, name, probability in p.top:
                label = class_id if class_id == name else f"{class_id} {name}"
                print(f"  {probability:7.2%}  {label}")
    _write_json(args.json, [asdict(p) for p in predictions], [*checkpoints, *images])
    return 2 if any(p.error for p in predictions) else 0


def add_features_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="CKPT", help="one checkpoint")
    _model_arguments(parser, several=False)
    _data_arguments(parser)
    parser.add_argument("--layer", default=None, help="conv1..conv5, fc6, fc7 (after ReLU), fc8, pool5, ... "
                                                      "(default: fc7, or the layer feeding the classifier "
                                                      "of a net without one)")
    parser.add_argument("--out", required=True, metavar="FILE.npz")
    _run_arguments(parser)


def run_features(args: argparse.Namespace) -> int:
    from alexnet.evaluate.inference import extract_features

    check_positive(limit=args.limit, batch_size=args.batch_size)
    check_output_file(args.out, inputs=_inputs(args), flag="--out", suffixes=[".npz"])
    models = _one_model(args)
    features = extract_features(models[0], _open(args, models), args.layer, args.batch_size,
                                args.device, args.precision, args.limit, progress=not args.no_progress)
    path = features.save(args.out, inputs=_inputs(args))
    print(f"wrote {path}: {features.features.shape[0]} x {features.features.shape[1]} {features.layer} features")
    return 0


def _one_model(args: argparse.Namespace) -> list:
    if len(args.checkpoints) + bool(args.weights) != 1:
        raise AlexNetError("give exactly one model: a checkpoint or --weights torchvision")
    return _load(args, args.checkpoints)


def add_neighbors_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="CKPT", help="one checkpoint")
    _model_arguments(parser, several=False)
    parser.add_argument("--data", required=True, metavar="DIR", help="store or folder with both splits")
    parser.add_argument("--gallery-split", default="train")
    parser.add_argument("--query-split", default="val")
    parser.add_argument("--gallery-limit", type=int, default=None, help="only the first N gallery images")
    parser.add_argument("--queries", type=int, default=8, help="query images from the query split, classes in turn")
    parser.add_argument("--query", nargs="+", default=None, metavar="IMAGE", help="query image files instead")
    parser.add_argument("--k", type=int, default=6, help="neighbours per query")
    parser.add_argument("--layer", default=None, help="default: fc7, or the layer feeding the "
                                                      "classifier of a net without one")
    parser.add_argument("--code-bits", type=int, default=64,
                        help="train an auto-encoder to BITS-bit codes and measure their recall (0: off)")
    parser.add_argument("--code-steps", type=int, default=400, help="auto-encoder training steps")
    parser.add_argument("--recall-queries", type=int, default=500, help="query-split images for the recall")
    parser.add_argument("--figure", default=None, metavar="PNG", help="draw the neighbour rows")
    parser.add_argument("--json", default=None, metavar="FILE")
    _run_arguments(parser)


def run_neighbors(args: argparse.Namespace) -> int:
    from alexnet.evaluate.inputs import image_files, spread_indices
    from alexnet.evaluate.neighbors import NoQueryImages, search_neighbors

    check_positive(gallery_limit=args.gallery_limit, queries=args.queries, k=args.k,
                   code_steps=args.code_steps, recall_queries=args.recall_queries,
                   batch_size=args.batch_size)
    check_non_negative(code_bits=args.code_bits)
    inputs = _inputs(args, *(args.query or []))
    _check_json(args.json, inputs)
    if args.figure:
        check_figure_path(args.figure, inputs=inputs, flag="--figure")
    models = _one_model(args)
    options = dict(layer=args.layer, batch_size=args.batch_size, device=args.device,
                   precision=args.precision, progress=not args.no_progress)
    gallery_source = _open(args, models, args.gallery_split)
    query_source = _open(args, models, args.query_split) if args.query is None else None
    if args.query is not None:
        shown_source = image_files(args.query, gallery_source.size)
    else:
        shown_source = query_source.subset(spread_indices(query_source.labels, args.queries))
    # recall of the codes on the first held-out images of the query split (none for files)
    recall_source = (None if query_source is None else
                     query_source.subset(range(min(args.recall_queries, len(query_source)))))
    try:
        search = search_neighbors(models[0], gallery_source, shown_source, args.k,
                                  gallery_limit=args.gallery_limit, recall_source=recall_source,
                                  code_bits=args.code_bits, code_steps=args.code_steps, **options)
    except NoQueryImages:
        if args.query is None:
            raise
        raise AlexNetError(f"none of the {len(args.query)} --query files can be read (each is "
                           "listed above with its reason)") from None
    finally:  # every unreadable file is named, not only the first
        _report_skipped(gallery_source.skipped)
        _report_skipped(shown_source.skipped)
    result = search.result
    for file, cls, row in zip(result.query_files, result.query_classes, result.neighbors, strict=True):
        print(f"{file} ({cls})")
        for n in row:
            print(f"  {n.distance:10.2f}  {n.class_id:<12} {n.file}")
    if result.same_class_fraction is not None:
        print(f"{result.same_class_fraction:.1%} of the neighbours shown are of the query's class")
    payload: dict[str, object] = {"neighbors": result.to_json()}
    if search.codes is not None:
        print(search.codes.summary())
        payload["codes"] = search.codes.to_json()
    if args.figure:
        from alexnet.evaluate.scoring import ScoringModel
        from alexnet.report.build import neighbor_figure
        from alexnet.runtime.device import resolve_device

        scorer = ScoringModel(models[0], resolve_device(args.device), args.precision)
        print(f"wrote {neighbor_figure(result, gallery_source, shown_source, scorer, Path(args.figure), inputs)}")
    _write_json(args.json, payload, inputs)
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="RUN_OR_CKPT",
                        help="one checkpoint, or a run folder (its best checkpoint)")
    _model_arguments(parser, several=False)
    parser.add_argument("--format", required=True, choices=["onnx", "safetensors", "torchscript", "hf"],
                        help="hf: config.json + model.safetensors + README.md model card in the folder --out")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="default: beside the checkpoint (--format hf: a folder, required)")
    parser.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")
    parser.add_argument("--int8", action="store_true",
                        help="with --format onnx: static int8 quantisation (onnxruntime), for the CPU")
    parser.add_argument("--calibration", default=None, metavar="DIR",
                        help="--int8: store or image folder to calibrate on (default: the run's training data)")
    parser.add_argument("--calibration-split", default="train")
    parser.add_argument("--calibration-images", type=int, default=300)
    parser.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"])


def run_export(args: argparse.Namespace) -> int:
    from alexnet.evaluate.export import export_model
    from alexnet.report.card import export_hf, resolve_run

    if args.int8 and args.format != "onnx":
        raise AlexNetError(f"--int8 quantises the ONNX graph; use --format onnx, not --format {args.format}")
    if args.format == "hf":
        if args.out is None or len(args.checkpoints) != 1:
            raise AlexNetError("alexnet export RUN_OR_CKPT --format hf --out DIR: one run folder or "
                               "checkpoint and the folder to write")
        print(export_hf(args.checkpoints[0], args.out).summary())
        return 0
    args.checkpoints = [str(resolve_run(path)[0]) for path in args.checkpoints]
    if args.int8:
        from alexnet.evaluate.quantize import QuantizeConfig, quantize_model

        config = QuantizeConfig(args.calibration, args.calibration_split, args.calibration_images,
                                method=args.calibration_method)
        print(quantize_model(_one_model(args)[0], args.out, config).summary())
        return 0
    result = export_model(_one_model(args)[0], args.format, args.out, check=not args.no_check)
    print(result.summary())
    return 0


def add_bench_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="alexnet2012,alexnet2014")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--views", default="center", choices=["center", "10crop", "ten_crop"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per variant per round")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also the int8 ONNX graph of each model (CPU; alexnet export --int8)")
    parser.add_argument("--latency-repeats", type=int, default=20,
                        help="batch-1 calls timed per candidate (what predict on one photo costs); 0: none")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="a trained model instead: top-1 and images/s of alexnet evaluate on --data")
    parser.add_argument("--int8-model", default=None, metavar="FILE",
                        help="with --checkpoint: its int8 graph (default: quantised on its training data)")
    parser.add_argument("--data", default=None, metavar="DIR", help="with --checkpoint: store or image folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="with --checkpoint: only the first N images")


def run_bench_evaluate(args: argparse.Namespace) -> int:
    from alexnet.evaluate.bench import EvalBenchConfig, run_eval_bench

    config = EvalBenchConfig(tuple(m.strip() for m in args.models.split(",") if m.strip()), args.batch_size,
                             args.views, args.device, args.precision, args.rounds, args.batches,
                             int8=args.int8, latency_repeats=args.latency_repeats, checkpoint=args.checkpoint,
                             data=args.data, split=args.split, limit=args.limit, int8_model=args.int8_model)
    print(run_eval_bench(config).summary())
    return 0
