"""Bad argument values for every command: exit code 2, one line on stderr, no traceback.

Each row is a command line with placeholders filled from one set of tiny fixtures:
{ckpt} a checkpoint, {data} an image folder with train/ and val/, {store} a prepared
store, {run} a run folder, {image} one image, {file} a text file, {dir} an empty folder,
{missing} a path that does not exist, {tmp} a fresh folder for outputs. A new flag is
covered by adding a row. The rows run in-process (``alexnet.cli.main``), so the table
stays fast; nothing in it trains or scores more than a handful of images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alexnet.cli import main
from evaluate_helpers import make_checkpoint, make_folder
from train_helpers import make_store

BAD = {
    "info": [
        "info alexnet2012 --input-size 0",
        "info alexnet2012 --input-size -3",
        "info alexnet2012 --input-size 56",
        "info cifar_18pct --input-size 64",
        "info alexnet2012 -o width=abc",
        "info alexnet2012 -o width=nan",
        "info alexnet2012 -o num_classes=2.5",
        "info alexnet2012 -o nosuch=1",
        "info alexnet2012 -o width",
        "info nosuchmodel",
    ],
    "evaluate": [
        "evaluate {ckpt} --data {missing}",
        "evaluate {ckpt} --data {file}",
        "evaluate {missing} --data {data}",
        "evaluate {dir} --data {data}",
        "evaluate {file} --data {data}",
        "evaluate {ckpt} --data {data} --batch-size 0",
        "evaluate {ckpt} --data {data} --batch-size -1",
        "evaluate {ckpt} --data {data} --limit 0",
        "evaluate {ckpt} --data {data} --limit -1",
        "evaluate {ckpt} --data {data} --split nosuch",
        "evaluate {ckpt} --data {store} --split nosuch",
        "evaluate {ckpt} --data {data} --json {dir}",
        "evaluate {ckpt} --data {data} --json /proc/x/e.json",
        "evaluate {ckpt} --data {data} --json {file}/e.json",
        "evaluate {ckpt} --data {data} --json {ckpt}",
        "evaluate {ckpt} --data {data} --json {ckpt_link}",
        "evaluate {ckpt} --data {store} --json {store}/manifest.json",
        "evaluate {ckpt} --data {store} --json {store}/val/labels.npy",
    ],
    "predict": [
        "predict {ckpt} {missing}",
        "predict {ckpt} {dir}",
        "predict {ckpt} {file}",
        "predict {ckpt} {image} --top 0",
        "predict {ckpt} {image} --json {dir}",
        "predict {ckpt} {image} --json {image}",
        "predict {ckpt} {image} --json /proc/x/p.json",
        "predict {ckpt}",
    ],
    "features": [
        "features {ckpt} --data {data} --out {tmp}/f.npz --batch-size 0",
        "features {ckpt} --data {data} --out {tmp}/f.npz --limit -1",
        "features {ckpt} --data {data} --out {tmp}/f.npz --limit 0",
        "features {ckpt} --data {data} --out {tmp}/f.npy",
        "features {ckpt} --data {data} --out {dir}",
        "features {ckpt} --data {data} --out /proc/x/f.npz",
        "features {ckpt} --data {data} --out {file}/f.npz",
        "features {ckpt} --data {data} --out {tmp}/f.npz --layer nosuch",
        "features --data {data} --out {tmp}/f.npz",
        "features {ckpt} --data {missing} --out {tmp}/f.npz",
        "features {ckpt} --data {store} --out {store}/stats.npz",
    ],
    "neighbors": [
        "neighbors {ckpt} --data {data} --queries 0",
        "neighbors {ckpt} --data {data} --queries -1",
        "neighbors {ckpt} --data {data} --gallery-limit -1",
        "neighbors {ckpt} --data {data} --gallery-limit 0",
        "neighbors {ckpt} --data {data} --recall-queries 0",
        "neighbors {ckpt} --data {data} --k 0",
        "neighbors {ckpt} --data {data} --code-bits -8",
        "neighbors {ckpt} --data {data} --code-steps 0",
        "neighbors {ckpt} --data {data} --batch-size 0",
        "neighbors {ckpt} --data {data} --figure {tmp}/x.pt",
        "neighbors {ckpt} --data {data} --figure {dir}",
        "neighbors {ckpt} --data {data} --figure /proc/x/n.png",
        "neighbors {ckpt} --data {data} --figure {ckpt}",
        "neighbors {ckpt} --data {data} --json {dir}",
        "neighbors {ckpt} --data {data} --json {ckpt}",
        "neighbors {ckpt} --data {data} --query {missing} --code-bits 0",
    ],
    "export": [
        "export {ckpt} --format torchscript --out {ckpt}",
        "export {ckpt} --format onnx --out {ckpt_link}",
        "export {ckpt} --format safetensors --out {dir}",
        "export {ckpt} --format torchscript --out /proc/x/m.pt",
        "export {ckpt} --format torchscript --out {file}/m.pt",
        "export {missing} --format onnx",
        "export {file} --format onnx",
    ],
    "report": [
        "report {missing}",
        "report {file}",
        "report {dir}",
        "report {run} --limit 0",
        "report {run} --samples 0",
        "report {run} --queries 0",
        "report {run} --k -1",
        "report {run} --gallery-limit -1",
        "report {run} --code-bits -1",
        "report {run} --code-steps 0",
        "report {run} --batch-size 0",
        "report {run} --checkpoint {file}",
        "report {run} --checkpoint {run}/report.html",
    ],
    "train": [
        "train --data {store} --out {tmp}/r --lr nan",
        "train --data {store} --out {tmp}/r --lr inf",
        "train --data {store} --out {tmp}/r --lr -1",
        "train --data {store} --out {tmp}/r --lr abc",
        "train --data {store} --out {tmp}/r --momentum nan",
        "train --data {store} --out {tmp}/r --epochs 0",
        "train --data {store} --out {tmp}/r --epochs 1.5",
        "train --data {store} --out {tmp}/r --batch-size 0",
        "train --data {store} --out {tmp}/r --keep-checkpoints -1",
        "train --data {store} --out {tmp}/r --image-size 64 --crop-size 56",
        "train --data {store} --out {tmp}/r --model-option width=abc",
        "train --data {store} --out {tmp}/r --model-option width=-1",
        "train --data {store} --out {tmp}/r --model cifar_18pct --crop-size 64",
        "train --data {store} --out {file}",
        "train --data {missing} --out {tmp}/r",
        "train --data {store} --out {tmp}/r --init-from {file}",
        "train --data {store} --out {tmp}/r --init-from {missing}",
        "train --data {store} --out {tmp}/r --nosuch 1",
        "train --resume {missing}",
    ],
    "prepare": [
        "prepare {data} {file} --workers 1",
        "prepare {missing} {tmp}/s --workers 1",
        "prepare {file} {tmp}/s --workers 1",
        "prepare {data} /proc/x/s --workers 1",
        "prepare {data} {file}/s --workers 1",
        "prepare {data} {tmp}/s --size 0",
        "prepare {data} {tmp}/s --size -1",
        "prepare {data} {tmp}/s --per-class 0",
        "prepare {data} {tmp}/s --limit 0",
        "prepare {data} {tmp}/s --workers -1",
        "prepare {data} {tmp}/s --max-pixels 0",
        "prepare {data} {data}",
    ],
    "bench": [
        "bench train --image-size 32",
        "bench train --batch-size 0",
        "bench train --rounds 0",
        "bench train --models nosuch",
        "bench train --target-ratio nan",
        "bench evaluate --batch-size 0",
        "bench evaluate --rounds 0",
        "bench data --source {missing}",
    ],
    "convert-checkpoint": [
        "convert-checkpoint {ckpt} {tmp}/c.pt",
        "convert-checkpoint {missing} {tmp}/c.pt --trust-source",
        "convert-checkpoint {ckpt} {ckpt} --trust-source",
        "convert-checkpoint {ckpt} {dir} --trust-source",
    ],
}
ROWS = [(command, line) for command, lines in BAD.items() for line in lines]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fuzz")
    data = make_folder(root / "data", per_class=1)
    ckpt = make_checkpoint(root / "model.pt")
    (root / "link.pt").hardlink_to(ckpt)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(ckpt, run / "checkpoints" / "best.pt")
    (run / "config.json").write_text(json.dumps({"model": "alexnet2012", "data": str(data)}))
    (root / "notes.txt").write_text("not a checkpoint, not an image\n")
    (root / "empty").mkdir()
    image = next((data / "val" / "ant").iterdir())
    return {"ckpt": str(ckpt), "ckpt_link": str(root / "link.pt"), "data": str(data),
            "store": str(make_store(root / "store")), "run": str(run), "image": str(image),
            "file": str(root / "notes.txt"), "dir": str(root / "empty"),
            "missing": str(root / "missing"), "root": str(root)}


@pytest.mark.parametrize(("command", "line"), ROWS, ids=[line for _, line in ROWS])
def test_bad_value_is_one_line_exit_2(command: str, line: str, places: dict[str, str],
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    protected = {p: Path(p).read_bytes() for p in (places["ckpt"], places["image"], places["file"],
                                                   *map(str, Path(places["store"]).rglob("*.*")))}
    argv = [part.format(**places, tmp=tmp_path) for part in line.split()]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse: a value of the wrong type for the flag
        code = exit.code
    err = capsys.readouterr().err
    # files skipped on the way (listed with their reason) come before the error itself
    lines = [line for line in err.strip().splitlines() if not line.startswith("skipped ")]
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err
    if command not in ("predict",):  # predict: one line per unreadable image, then exit 2
        assert len(lines) == 1 or lines[0].startswith("usage:"), err
    for path, content in protected.items():  # inputs are never written, whatever the flags
        assert Path(path).read_bytes() == content, f"{path} changed"
