"""``alexnet report RUN_DIR``: evaluate a run's best checkpoint, draw the paper's figures
and write ``RUN_DIR/report.html`` beside ``RUN_DIR/figures/*.png``.

It reads the run folder (docs/ARCHITECTURE.md): ``config.json``, ``metrics.jsonl``,
``summary.json`` and ``checkpoints/best.pt`` (else ``last.pt``). The data comes from
``--data`` or from the data path in ``config.json``. Whatever is missing is left out with a
note on the page (a run without metrics still gets its kernels and evaluation, a run
whose data moved still gets its curves), so a report is always written.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.data.augment import center_boxes
from alexnet.data.store import data_from_config
from alexnet.errors import AlexNetError, check_non_negative, check_positive
from alexnet.evaluate.accuracy import PAPER_TABLE2, EvalResult, evaluate
from alexnet.evaluate.inputs import ImageSource, fetch_images, open_images, spread_indices
from alexnet.evaluate.neighbors import search_neighbors
from alexnet.evaluate.scoring import LoadedModel, ScoringModel, load_models
from alexnet.report import figures
from alexnet.report.html import FigureRef, Page, Table, write_page
from alexnet.report.kernels import conv1_weight, initial_conv1, kernel_measures, measures_table_rows
from alexnet.runtime import provenance
from alexnet.runtime.device import resolve_device
from alexnet.runtime.outputs import check_output_file, check_output_folder, write_json, writes_into
from alexnet.runtime.run_folder import RunFolder


@dataclass
class ReportOptions:
    data: str | None = None  # default: the data path in config.json
    checkpoint: str | None = None  # default: RUN_DIR/checkpoints/best.pt, else last.pt
    split: str = "val"
    gallery_split: str = "train"
    samples: int = 8  # images in the top-5 figure
    queries: int = 6  # rows of the neighbour figure
    k: int = 6  # neighbours per row
    gallery_limit: int | None = 3000  # training images searched (classes in turn); None: all
    code_bits: int = 64  # auto-encoder code length for the retrieval table; 0: none
    code_steps: int = 400  # auto-encoder training steps
    ten_crop: bool = False  # also evaluate with the 10 patches (10x the time)
    eval_limit: int | None = None
    batch_size: int = 128
    device: str = "auto"
    precision: str = "auto"
    embed_images: bool = False
    progress: bool = True
    # features of the neighbour figure and the codes: None = fc7 (§6.1), or for a net
    # without one (cuda-convnet's CIFAR nets) the layer feeding its classifier
    layer: str | None = None

    def __post_init__(self) -> None:
        check_positive(samples=self.samples, queries=self.queries, k=self.k,
                       gallery_limit=self.gallery_limit, code_steps=self.code_steps,
                       limit=self.eval_limit, batch_size=self.batch_size)
        check_non_negative(code_bits=self.code_bits)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def environment(device: torch.device) -> dict[str, str]:
    """This report's provenance, keyed as config.json keys the training run's (flattened)."""
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return {**provenance.versions(), "machine": provenance.machine(),
            "platform": platform.platform(), "cpu cores": str(os.cpu_count()),
            "device": str(device), "accelerator": accelerator,
            "git_commit": provenance.git_commit() or "unknown"}


def display_crop(images: np.ndarray, scorer: ScoringModel) -> np.ndarray:
    """The centre view the model sees, in colour for display: (n, crop, crop, 3) uint8."""
    if images.shape[1] != scorer.image_size:
        resized = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(),
                                                  size=scorer.image_size, mode="bilinear", antialias=True)
        images = resized.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    top, left = center_boxes(scorer.image_size, scorer.crop_size)
    return images[:, top:top + scorer.crop_size, left:left + scorer.crop_size]


def top5_figure(loaded: LoadedModel, scorer: ScoringModel, source: ImageSource, count: int,
                path: Path) -> Path:
    """Fig. 4 left for ``count`` images of ``source``, classes in turn."""
    indices = spread_indices(source.labels, count)
    subset = source.subset(indices)
    images = fetch_images(subset, range(len(subset)))
    probabilities = scorer.probabilities(torch.from_numpy(images))  # (n, C)
    names = loaded.info.class_names
    by_id = dict(zip(loaded.info.classes, names, strict=True))
    values, classes = probabilities.topk(min(5, probabilities.shape[1]), dim=1)
    top = [[(names[c], float(v)) for v, c in zip(vs, cs.tolist(), strict=True)]
           for vs, cs in zip(values, classes, strict=True)]
    truths = [by_id.get(source.classes[label], source.class_names[label]) for label in subset.labels]
    return figures.top5_bars(display_crop(images, scorer), top, truths, path)


def neighbor_figure(result: Any, gallery: ImageSource, queries: ImageSource, scorer: ScoringModel,
                    path: Path, inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Fig. 4 right from a ``find_neighbors`` result and the sources it was computed on."""
    query_images = display_crop(fetch_images(queries, result.query_indices), scorer)
    rows = [display_crop(fetch_images(gallery, [n.index for n in row]), scorer) for row in result.neighbors]
    names = {c: n for c, n in zip(gallery.classes, gallery.class_names, strict=True)}
    query_names = [names.get(c, c) for c in result.query_classes]
    neighbor_names = [[names.get(n.class_id, n.class_id) for n in row] for row in result.neighbors]
    return figures.neighbor_rows(list(query_images), [list(r) for r in rows], query_names,
                                 neighbor_names, path, result.layer, inputs)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def results_table(metrics: list[dict[str, Any]], evaluations: list[EvalResult]) -> Table:
    rows: list[list[object]] = []
    epochs = [r for r in metrics if r.get("kind") == "epoch"]
    if epochs:
        last = epochs[-1]
        rows.append([f"training log, last epoch ({last['epoch']})", _percent(last.get("val_top1_error")),
                     _percent(last.get("val_top5_error")), "-", "metrics.jsonl"])
        with_val = [r for r in epochs if r.get("val_top1_error") is not None]
        if with_val:
            best = min(with_val, key=lambda r: r["val_top1_error"])
            rows.append([f"training log, best epoch ({best['epoch']})", _percent(best["val_top1_error"]),
                         _percent(best.get("val_top5_error")), "-", "metrics.jsonl"])
    for result in evaluations:
        k = "" if result.k == 5 else f", top-5 = top-{result.k} of {result.k} classes"
        rows.append([f"{result.name}, {result.views} ({result.n_images} images{k})", _percent(result.top1_error),
                     _percent(result.top5_error), f"{result.images_per_s:.0f}",
                     f"{result.precision} on {result.device}"])
    for name, top1, top5 in PAPER_TABLE2:
        rows.append([f"paper: {name}", f"{top1:.1f}%", f"{top5:.1f}%", "-", "ILSVRC-2012 val, 1000 classes"])
    note = ("Errors are fractions of the evaluated images; the paper's rows are on ImageNet's 1000 "
            "classes and are not directly comparable with a smaller dataset.")
    return Table("Results (cf. Table 2)", ["model / views", "top-1 error", "top-5 error", "images/s", "source"],
                 rows, note, id="results")


def per_class_table(result: EvalResult) -> Table:
    rows = [[cls, name, count, _percent(acc)] for cls, name, count, acc in
            zip(result.classes, result.class_names, result.per_class_count, result.per_class_accuracy, strict=True)]
    return Table("Per-class top-1 accuracy (centre crop)", ["class", "name", "images", "accuracy"], rows,
                 id="per-class")


@writes_into("run_dir")  # a full or read-only run folder: a one-line error
def build_report(run_dir: str | os.PathLike[str], options: ReportOptions | None = None) -> Path:
    """Write RUN_DIR/report.html (+ figures/, report.json); returns the page's path."""
    options = options or ReportOptions()
    run = Path(run_dir)
    if not run.is_dir():
        raise AlexNetError(f"run folder not found: {run}")
    folder = RunFolder(run)
    config, metrics, summary = folder.read_config(), folder.read_metrics(), folder.read_summary()
    checkpoint = Path(options.checkpoint) if options.checkpoint else folder.checkpoint()
    if not (config or metrics or checkpoint):
        raise AlexNetError(f"{run} is not a run folder (no config.json, metrics.jsonl or checkpoints/)")
    # where the report goes, checked before the evaluation: writable, and never an input
    inputs = [checkpoint, options.data]
    check_output_folder(run / "figures", inputs=inputs)
    for name in ("report.html", "report.json"):
        check_output_file(run / name, inputs=inputs)
    started = time.perf_counter()
    figures_dir = run / "figures"
    page = Page(f"AlexNet run report: {run.name}",
                f"{run.resolve()} - written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    payload: dict[str, Any] = {}
    device = resolve_device(options.device)

    epoch_records = [r for r in metrics if r.get("kind") == "epoch"]
    if epoch_records:
        page.figures.append(FigureRef("Training curves", figures.training_curves(metrics, figures_dir / "curves.png"),
                                      "Loss, error and learning rate per epoch; dotted lines mark lr steps."))
    else:
        page.notes.append("No epoch records in metrics.jsonl: training curves left out.")

    evaluations: list[EvalResult] = []
    if checkpoint is None:
        page.notes.append("No checkpoint (checkpoints/best.pt or last.pt): evaluation and figures left out.")
    else:
        loaded = load_models([checkpoint])[0]
        scorer = ScoringModel(loaded, device, options.precision)
        # Fig. 3's two observations as numbers (report/kernels.py), beside the same seed's init
        initial = initial_conv1(loaded.info.model_name, loaded.info.model_options, config)
        measures = kernel_measures(conv1_weight(loaded.model), int(getattr(loaded.model, "towers", 1)),
                                   initial)
        payload["conv1_kernels"] = measures
        page.figures.insert(0, FigureRef("First-layer kernels (Fig. 3)",
                                         figures.conv1_kernels(scorer.model, figures_dir / "conv1_kernels.png",
                                                               initial=initial),
                                         f"conv1 of {checkpoint.name}, each kernel scaled to its own range."))
        page.results.append(Table(
            "First-layer kernels (Fig. 3)", ["kernels", "count", "adjacent-weight correlation",
                                             "colour specificity"], measures_table_rows(measures),
            note="Adjacent-weight correlation: mean correlation of horizontally and vertically "
                 "adjacent weights in a kernel (random: ~0; smooth Fig. 3-like filters: large). "
                 "Colour specificity: spread across R, G, B at each pixel relative to the "
                 "kernel's spread (grey: 0, random: ~0.82); §6.1: one tower colour-agnostic, "
                 "the other colour-specific. Tower 2 - tower 1: the difference of the towers' "
                 "mean colour specificity, 95% bootstrap interval over their kernels.",
            id="conv1-kernels"))
        data = options.data or data_from_config(config)
        if data is None or not Path(data).exists():
            page.notes.append(f"Data not found ({data or 'no data path in config.json'}): pass --data to "
                              "evaluate and draw the prediction and neighbour figures.")
        else:
            evaluations, extra = _evaluate_and_draw(loaded, scorer, data, options, figures_dir, page)
            payload.update(extra)
    page.results.insert(0, results_table(metrics, evaluations))
    if evaluations:
        page.details.append(per_class_table(evaluations[0]))
    page.details.append(Table("Configuration (config.json)", ["key", "value"],
                              [[k, _short(v)] for k, v in flatten(config).items()], id="config"))
    training_environment = {k.split(".")[-1]: v for k, v in flatten(config).items()
                            if k.split(".")[0] in ("versions", "environment", "env", "device", "git_commit", "commit")}
    report_environment = environment(device)
    env_rows = [[key, report_environment.get(key, "-"), _short(training_environment.get(key, "-"))]
                for key in [*report_environment, *(k for k in training_environment if k not in report_environment)]]
    page.details.append(Table("Environment", ["", "this report", "training run (config.json)"], env_rows,
                              id="environment"))
    if summary:
        page.details.append(Table("Training summary (summary.json)", ["key", "value"],
                                  [[k, _short(v)] for k, v in flatten(summary).items()], id="summary"))
    payload["evaluations"] = [e.to_json() for e in evaluations]
    payload["seconds"] = time.perf_counter() - started
    write_json(run / "report.json", payload)
    return write_page(page, run / "report.html", embed_images=options.embed_images)


def _short(value: Any, limit: int = 140) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + " ..."


def _evaluate_and_draw(loaded: LoadedModel, scorer: ScoringModel, data: str, options: ReportOptions,
                       figures_dir: Path, page: Page) -> tuple[list[EvalResult], dict[str, Any]]:
    size = scorer.image_size
    source = open_images(data, options.split, size)
    common = dict(batch_size=options.batch_size, device=options.device, precision=options.precision,
                  limit=options.eval_limit, progress=options.progress)
    evaluations = [evaluate([loaded], source, "center", **common)]  # type: ignore[arg-type]
    if options.ten_crop:
        evaluations.append(evaluate([loaded], source, "10crop", **common))  # type: ignore[arg-type]
    result = evaluations[0]
    page.figures.append(FigureRef("Top-5 predictions (Fig. 4 left)",
                                  top5_figure(loaded, scorer, source, options.samples, figures_dir / "top5.png"),
                                  f"{options.samples} {options.split} images, classes in turn; true class in red."))
    columns = result.class_names + result.confusion_columns[len(result.class_names):]  # + "other"
    page.figures.append(FigureRef("Confusion matrix", figures.confusion_figure(
        result.confusion, result.class_names, columns, figures_dir / "confusion.png")))
    extra: dict[str, Any] = {}
    try:
        gallery_source = open_images(data, options.gallery_split, size)
    except AlexNetError as error:
        page.notes.append(f"No {options.gallery_split} split for the neighbour figure: {error}")
        return evaluations, extra
    if options.gallery_limit is not None and options.gallery_limit < len(gallery_source):
        gallery_source = gallery_source.subset(spread_indices(gallery_source.labels, options.gallery_limit))
    query_source = source.subset(spread_indices(source.labels, options.queries))
    recall_source = source.subset(spread_indices(source.labels, 500))
    search = search_neighbors(loaded, gallery_source, query_source, options.k,  # type: ignore[arg-type]
                              recall_source=recall_source, code_bits=options.code_bits,
                              code_steps=options.code_steps, layer=options.layer,
                              batch_size=options.batch_size, device=options.device,
                              precision=options.precision, progress=options.progress)
    gallery, neighbors = search.gallery, search.result
    page.figures.append(FigureRef(f"Nearest neighbours in {gallery.layer} space (Fig. 4 right)",
                                  neighbor_figure(neighbors, gallery_source, query_source, scorer,
                                                  figures_dir / "neighbors.png"),
                                  f"Searched {len(gallery.labels)} {options.gallery_split} images; "
                                  f"{_percent(neighbors.same_class_fraction)} of the neighbours shown share "
                                  "the query's class."))
    extra["neighbors"] = neighbors.to_json()
    if search.codes is not None:
        codes = search.codes
        rows = [[r, _percent(codes.recall[r]), _percent(codes.random_projection_recall[r])] for r in codes.recall]
        page.results.append(Table(
            f"Retrieval with {codes.bits}-bit codes (§6.1)", ["shortlist size R", "auto-encoder codes",
                                                              "random projections (baseline)"], rows,
            f"Recall of each query's {codes.k} exact {gallery.layer} nearest neighbours within the R gallery images "
            f"closest in Hamming distance; {codes.queries} held-out {options.split} queries, "
            f"{codes.gallery} gallery images, auto-encoder trained in {codes.train_seconds:.1f} s.", id="codes"))
        extra["codes"] = codes.to_json()
    return evaluations, extra
