"""``alexnet export RUN --format hf DIR``: the Hugging Face layout with a model card.

The card (``DIR/README.md``, what a hub page shows) is written from the run folder with the
readers ``alexnet report`` uses (``report.build``): the architecture and its parameter count
(the registry's paper section), the data (classes, image counts and the store's statistics,
from its ``manifest.json``), the recipe (the resolved ``config.json``), the measured results
(``summary.json``: centre crop and the 10 patches of §4.1, with the command that measured
them), training time and machine, intended use and limits, and how to load the folder.
A lone checkpoint (no run folder around it) gets a card with what the checkpoint itself
knows and says what is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from alexnet.data.store import data_from_config
from alexnet.errors import AlexNetError
from alexnet.evaluate.scoring import LoadedModel, load_models
from alexnet.models.checkpoint import Checkpoint
from alexnet.models.hub import CARD, CONFIG, WEIGHTS, from_pretrained, is_hf_folder, save_pretrained
from alexnet.models.registry import MODELS
from alexnet.report.build import flatten
from alexnet.runtime import provenance
from alexnet.runtime.machine import cpu_name
from alexnet.runtime.outputs import check_output_folder, make_folder, output_errors
from alexnet.runtime.run_folder import RunFolder


@dataclass
class HfResult:
    directory: Path
    max_abs_diff: float  # reloaded vs original logits on a check batch

    def summary(self) -> str:
        size = (self.directory / WEIGHTS).stat().st_size / 2**20
        return (f"wrote {self.directory}/{{{CONFIG}, {WEIGHTS} ({size:.1f} MiB), {CARD}}}; "
                f"from_pretrained gives max |reloaded - original| = {self.max_abs_diff:.3g}")


def resolve_run(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(checkpoint, run folder or None) for a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        checkpoint = RunFolder(path).checkpoint()
        if checkpoint is None:
            raise AlexNetError(f"{path} is a folder without checkpoints/best.pt or last.pt; give a run "
                               "folder or a checkpoint file")
        return checkpoint, path
    # RUN/checkpoints/best.pt: the run folder is two levels up
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, run if run is not None and RunFolder(run).config.is_file() else None


def _percent(error: float | None) -> str:
    return "not measured" if error is None else f"{100 * (1 - error):.2f}%"


def _store_facts(config: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the store the run read (None fields when it is not on this machine)."""
    data = data_from_config(config)
    manifest = Path(data) / "manifest.json" if data else None
    if manifest is None or not manifest.is_file():
        return {"data": data}
    return {"data": data, **json.loads(manifest.read_text())}


def model_card(loaded: LoadedModel, run: Path | None, directory_name: str) -> ModelCard:
    """The README.md of the Hugging Face folder, from the run folder's records."""
    info: Checkpoint = loaded.info
    folder = RunFolder(run) if run is not None else None
    config = folder.read_config() if folder else {}
    summary = folder.read_summary() if folder else {}
    if not config:
        config = dict(info.training.get("config") or {})
    spec = MODELS.get(info.model_name)
    params = sum(p.numel() for p in loaded.model.parameters())
    store = _store_facts(config) if config else {}
    pre = info.preprocess
    classes = list(zip(info.classes, info.class_names, strict=True))
    lines = [f"# {info.model_name}: {run.name if run else loaded.name}", ""]
    lines += [f"AlexNet ({spec.description}, {spec.source})" if spec else f"Model {info.model_name}",
              f"trained with the `alexnet` package: {params:,} parameters, {len(classes)} classes, "
              f"options {json.dumps(info.model_options)}.", ""]

    lines += ["## Data", ""]
    splits = store.get("splits", {})
    counts = ", ".join(f"{name} {split['count']:,}" for name, split in splits.items()) or "not recorded"
    lines += [f"- data: `{config.get('data', 'not recorded')}` (store `{store.get('data') or 'not found'}`), "
              f"images: {counts}", f"- classes ({len(classes)}): " +
              ", ".join(f"{cid} ({name})" if cid != name else cid for cid, name in classes)]
    stats = store.get("stats")
    if stats:
        rounded = {k: [round(v, 1) for v in stats[k]] for k in ("channel_mean", "channel_std", "pca_eigval")}
        lines.append(f"- store statistics over {stats['count']:,} {stats['split']} images (pixels 0..255): "
                     f"channel mean {rounded['channel_mean']}, std {rounded['channel_std']}, "
                     f"PCA eigenvalues {rounded['pca_eigval']} (§4.1 lighting)")
    lines += [f"- input: {pre.get('image_size')} px images (shorter side resized, centre crop), "
              f"{pre.get('crop_size')} px crops, normalisation `{pre.get('normalization')}` (§2); "
              "the mean and std tensors are stored with the weights", ""]

    lines += ["## Results", ""]
    center, ten = summary.get("val_center"), summary.get("val_ten_crop")
    if center or ten:
        lines += ["| views | top-1 accuracy | top-5 accuracy | loss |", "|---|---|---|---|"]
        for name, record in (("centre crop", center), ("10 patches (§4.1)", ten)):
            if record:
                lines.append(f"| {name} | {_percent(record.get('top1_error'))} | "
                             f"{_percent(record.get('top5_error'))} | {record.get('loss', float('nan')):.3f} |")
        split = config.get("val_split", "val")
        lines += ["", f"Measured on the `{split}` split of the data above at the end of training by "
                  f"`{config.get('command', 'alexnet train')}` (summary.json; best epoch "
                  f"{summary.get('best_epoch')}). Reproduce with `alexnet evaluate {directory_name} "
                  f"--data DATA --views center` (or `--views 10crop`)."]
    else:
        lines.append("No summary.json with measured results was found; evaluate with "
                     f"`alexnet evaluate {directory_name} --data DATA`.")
    lines.append("")

    lines += ["## Training", ""]
    if summary:
        hours = float(summary.get("seconds", 0)) / 3600
        lines.append(f"- {summary.get('epochs')} epochs, {summary.get('steps')} steps in {hours:.2f} h "
                     f"({summary.get('images_per_s', 0):.0f} images/s), status {summary.get('status')}")
    versions = config.get("versions") or {}
    lines += [f"- device: {config.get('device', 'not recorded')} x {config.get('world_size', 1)}; "
              f"versions: {', '.join(f'{k} {v}' for k, v in versions.items()) or 'not recorded'}; "
              f"commit {config.get('git_commit') or 'not recorded'}",
              f"- card written on {cpu_name()} (commit {provenance.git_commit() or 'unknown'}), "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    if config:
        recipe = {k: v for k, v in flatten(config).items() if not k.startswith("versions.")}
        lines += ["<details><summary>The resolved recipe (config.json)</summary>", "", "```json",
                  json.dumps(recipe, indent=1, default=str), "```", "", "</details>", ""]

    lines += ["## Intended use and limits", "",
              f"- Classifies {pre.get('crop_size')} px crops into the {len(classes)} classes above; an "
              "image of anything else still gets one of them. Research and teaching use: a "
              "reimplementation of Krizhevsky, Sutskever & Hinton (2012), not a production model.",
              "- Accuracy is what the Results table says on its validation split only; other data "
              "(other cameras, crops, classes' look) can score lower. Trained on a dataset's "
              "photos with their biases; not for decisions about people.", ""]

    lines += ["## How to load", "", "```python",
              "from alexnet.models.hub import AlexNetHub, from_pretrained",
              f'model, info = from_pretrained("{directory_name}")  # network (eval) + classes, preprocess',
              f'hub = AlexNetHub.from_pretrained("{directory_name}")  # the mixin: same weights',
              "import torch",
              f'model = torch.hub.load("PATH/TO/alexnet", "{info.model_name}", source="local", '
              f'weights="{directory_name}")',
              "```", "",
              f"`alexnet evaluate {directory_name} --data DATA` and `alexnet predict {directory_name} "
              "IMAGE` take the folder as they take a checkpoint.", ""]
    card_data = ModelCardData(library_name="alexnet", license="mit", pipeline_tag="image-classification",
                              tags=["alexnet", "image-classification", "pytorch_model_hub_mixin"])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


def export_hf(source: str | os.PathLike[str], directory: str | os.PathLike[str]) -> HfResult:
    """Write ``directory``/{config.json, model.safetensors, README.md} for a run folder or a
    checkpoint; each file replaces its old version whole (written beside it, then renamed)."""
    import torch

    checkpoint, run = resolve_run(source)
    directory = check_output_folder(directory, inputs=[checkpoint, run], flag="--out")
    if (directory / CONFIG).is_file() and not is_hf_folder(directory):
        raise AlexNetError(f"--out {directory} holds a {CONFIG} that is not an alexnet Hugging Face export "
                           "(a run folder?); writing would replace it: choose a new or empty folder")
    loaded = load_models([checkpoint])[0]
    make_folder(directory, flag="--out")
    # written whole beside the folder's files, then each renamed over its old version
    with output_errors(directory, "--out"), \
            tempfile.TemporaryDirectory(dir=directory, prefix=".hf-", suffix=".tmp") as work:
        save_pretrained(loaded.model, loaded.info, work)
        model_card(loaded, run, directory.name).save(Path(work) / CARD)
        reloaded, _ = from_pretrained(work)
        crop = int(loaded.info.preprocess.get("crop_size", 224))
        images = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            difference = float((reloaded(images) - loaded.model.eval()(images)).abs().max())
        umask = os.umask(0)
        os.umask(umask)
        for name in (CONFIG, WEIGHTS, CARD):
            os.chmod(Path(work) / name, 0o666 & ~umask)  # safetensors writes its file 0600
            os.replace(Path(work) / name, directory / name)
    return HfResult(directory, difference)
