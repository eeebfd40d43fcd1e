"""``alexnet prepare SRC DEST`` and ``alexnet bench data``."""

from __future__ import annotations

import argparse

from alexnet.data.images import DEFAULT_MAX_PIXELS


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="folder (CLASS/IMAGE, or train/ val/ test/ of them; an ILSVRC "
                                    "flat val/ with its label file) or torchvision:NAME "
                                    "(imagenette, imagenette-320px, imagenette-160px, cifar10)")
    parser.add_argument("dest", help="store folder to write (resumable: re-run to continue)")
    parser.add_argument("--size", type=int, default=256,
                        help="side of the stored square images (paper: 256; 64 or 128 for quick "
                             "CPU runs, 32 for CIFAR-10)")
    parser.add_argument("--splits", default=None,
                        help="comma-separated splits to prepare, e.g. train,val (default: all found)")
    parser.add_argument("--per-class", type=int, default=None, metavar="N",
                        help="at most N images of each class per split (quick runs)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N images per split, taken evenly over the classes")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: one per available core)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="skip images with more pixels than this (decompression-bomb guard; "
                             "default: Pillow's, %(default)s)")
    parser.add_argument("--no-jpeg-draft", action="store_true",
                        help="decode JPEGs at full size before resizing (slower, identical to "
                             "torchvision's Resize+CenterCrop to the pixel)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with an error if any file had to be skipped")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a store in DEST prepared with other settings or files")
    parser.add_argument("--val-labels", default=None, metavar="FILE",
                        help="labels of a flat ILSVRC validation folder: the devkit's "
                             "ILSVRC2012_validation_ground_truth.txt, one wnid per line, or "
                             "LOC_val_solution.csv")
    parser.add_argument("--devkit", default=None, metavar="DIR",
                        help="the unpacked ILSVRC2012_devkit_t12 (for meta.mat and labels)")
    parser.add_argument("--class-names", default=None, metavar="FILE",
                        help="'CLASS_ID NAME, ...' lines (synset_words.txt style) for class names")
    parser.add_argument("--download", action="store_true",
                        help="for torchvision:NAME, download the dataset (needs the network)")
    parser.add_argument("--download-dir", default=None, metavar="DIR",
                        help="for torchvision:NAME, where the dataset is or goes "
                             "(default: data/torchvision)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    from alexnet.data.prepare import prepare

    report = prepare(
        args.src, args.dest, size=args.size,
        splits=args.splits.split(",") if args.splits else None,
        per_class=args.per_class, limit=args.limit, workers=args.workers,
        max_pixels=args.max_pixels, jpeg_draft=not args.no_jpeg_draft, strict=args.strict,
        overwrite=args.overwrite, val_labels=args.val_labels, devkit=args.devkit,
        class_names_file=args.class_names, download=args.download,
        download_dir=args.download_dir, progress=not args.quiet,
    )
    print(report.summary())
    return 0


def add_bench_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="../shared/data/imagenette",
                        help="ImageFolder dataset with train/ (default: %(default)s)")
    parser.add_argument("--store", default="runs/stores/imagenette-256",
                        help="prepared store of the same data (prepared first if missing; "
                             "default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="store image size (default 256)")
    parser.add_argument("--crop", type=int, default=224, help="training crop (default 224)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers and StoreLoader threads (default: cores)")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of baseline and candidate (median reported)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads while the store pipeline runs (default 1: "
                             "its parallelism is one augmenting reader thread per worker)")


def run_bench_data(args: argparse.Namespace) -> int:
    from alexnet.data.bench import DataBenchConfig, run_data_benchmark

    config = DataBenchConfig(
        source=args.source, store=args.store, size=args.size, crop=args.crop,
        batch_size=args.batch_size, workers=args.workers, batches=args.batches,
        rounds=args.rounds, torch_threads=args.torch_threads,
    )
    result = run_data_benchmark(config, log=print)
    print(result.summary())
    return 0
