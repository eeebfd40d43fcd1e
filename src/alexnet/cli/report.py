"""``alexnet report RUN_DIR``: the paper's figures and one HTML page for a training run."""

from __future__ import annotations

import argparse

from alexnet.runtime.device import PRECISIONS


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by alexnet train")
    parser.add_argument("--data", default=None, metavar="DIR", help="default: the data in config.json")
    parser.add_argument("--checkpoint", default=None, help="default: RUN_DIR/checkpoints/best.pt")
    parser.add_argument("--split", default="val", help="split to evaluate and sample from")
    parser.add_argument("--gallery-split", default="train", help="split searched for neighbours")
    parser.add_argument("--samples", type=int, default=8, help="images in the top-5 figure")
    parser.add_argument("--queries", type=int, default=6, help="rows of the neighbour figure")
    parser.add_argument("--k", type=int, default=6, help="neighbours per row")
    parser.add_argument("--gallery-limit", type=int, default=3000,
                        help="training images searched, classes in turn (0: all)")
    parser.add_argument("--layer", default=None,
                        help="features for the neighbour figure and codes (default: fc7, or the "
                             "layer feeding the classifier of a net without one, e.g. pool3)")
    parser.add_argument("--code-bits", type=int, default=64, help="binary-code length (0: no codes)")
    parser.add_argument("--code-steps", type=int, default=400, help="auto-encoder training steps")
    parser.add_argument("--ten-crop", action="store_true", help="also evaluate the 10 patches (10x time)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--embed-images", action="store_true",
                        help="put the PNGs inside report.html (one file to send)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--no-progress", action="store_true")


def run_report(args: argparse.Namespace) -> int:
    from alexnet.report import ReportOptions, build_report

    options = ReportOptions(  # checks its own values (one-line errors, as from a notebook)
        data=args.data, checkpoint=args.checkpoint, split=args.split, gallery_split=args.gallery_split,
        samples=args.samples, queries=args.queries, k=args.k,
        gallery_limit=args.gallery_limit or None, code_bits=args.code_bits, code_steps=args.code_steps,
        ten_crop=args.ten_crop, eval_limit=args.limit, batch_size=args.batch_size, device=args.device,
        precision=args.precision, embed_images=args.embed_images, progress=not args.no_progress,
        layer=args.layer,
    )
    print(build_report(args.run_dir, options))
    return 0
