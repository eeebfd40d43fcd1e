"""What the tool promises about what it writes (alexnet.runtime.outputs), and the one-line errors of
issue 17: outputs never half-written, never over an input (not even through a hard link),
every bad output location a one-line error; damaged inputs and impossible sizes too."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.errors import AlexNetError, short_reason
from alexnet.models import check_input_size
from alexnet.models.checkpoint import convert_trusted, read_checkpoint
from alexnet.models.info import layer_table
from alexnet.runtime import outputs
from evaluate_helpers import make_checkpoint, make_folder
from train_helpers import make_store

REPO = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    return {"data": make_folder(root / "data", per_class=1), "ckpt": make_checkpoint(root / "a.pt"),
            "root": root}


# ---- the atomic write ------------------------------------------------------------------------


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = outputs.write_text(tmp_path / "sub" / "out.txt", "old\n")
    assert target.read_text() == "old\n"

    def half_then_fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise KeyboardInterrupt  # a Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        outputs.atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temporary left


def test_atomic_write_breaks_hard_links_instead_of_writing_through(tmp_path: Path) -> None:
    original = tmp_path / "step-0000001.pt"
    original.write_bytes(b"checkpoint")
    (tmp_path / "last.pt").hardlink_to(original)
    outputs.write_json(tmp_path / "last.pt", {"json": True})  # not an input here: allowed
    assert original.read_bytes() == b"checkpoint"
    assert json.loads((tmp_path / "last.pt").read_text()) == {"json": True}


def test_output_that_is_an_input_is_refused_by_inode(tmp_path: Path) -> None:
    source = tmp_path / "best.pt"
    source.write_bytes(b"weights")
    (tmp_path / "last.pt").hardlink_to(source)
    for target in (source, tmp_path / "last.pt"):
        with pytest.raises(AlexNetError, match="is also an input"):
            outputs.write_text(target, "json", inputs=[source])
    assert source.read_bytes() == b"weights"


def test_os_errors_of_an_output_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    cases = {tmp_path / "file" / "out.json": "is a file, not a folder",
             tmp_path: "is a folder", Path("/proc/no-such/out.json"): "no file can be made in /proc"}
    for target, fragment in cases.items():
        with pytest.raises(AlexNetError, match=fragment):
            outputs.write_json(target, {})
    for number, fragment in ((errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                             (errno.EACCES, "permission denied")):
        def fail(*_args: object, number: int = number, **_kwargs: object) -> None:
            raise OSError(number, os.strerror(number), str(tmp_path / ".out.json.x.tmp"))

        monkeypatch.setattr(outputs, "_fsync", fail)
        with pytest.raises(AlexNetError, match=fragment) as caught:
            outputs.write_json(tmp_path / "out.json", {}, flag="--json")
        assert str(caught.value).startswith(f"cannot write --json {tmp_path / 'out.json'}")
        assert ".tmp" not in str(caught.value)  # the temporary's name means nothing to a user
        assert not (tmp_path / "out.json").exists() and not list(tmp_path.glob(".*.tmp"))


# ---- outputs of the commands ------------------------------------------------------------------


def test_evaluate_json_onto_a_linked_checkpoint_is_refused(setup: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    step = make_checkpoint(checkpoints / "step-0000003.pt")
    for name in ("last.pt", "best.pt"):
        (checkpoints / name).hardlink_to(step)
    before = step.read_bytes()
    for target in ("last.pt", "best.pt", "step-0000003.pt"):
        code, _, err = run(capsys, "evaluate", checkpoints / "last.pt", "--data", setup["data"],
                           "--json", checkpoints / target, "--no-progress")
        one_line_error(code, err, "is also an input")
    assert all((checkpoints / n).read_bytes() == before for n in ("last.pt", "best.pt", "step-0000003.pt"))
    read_checkpoint(checkpoints / "last.pt")  # the run can still resume


def test_export_over_its_checkpoint_is_refused(setup: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = make_checkpoint(tmp_path / "x.pt")
    before = source.read_bytes()
    code, _, err = run(capsys, "export", source, "--format", "torchscript", "--out", source)
    one_line_error(code, err, "is also an input")
    assert source.read_bytes() == before


def test_full_disk_in_each_command_is_one_line(setup: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC where the bytes reach the disk (fsync of the temporary): evaluate, features,
    export, neighbors --figure, report, train and prepare all say so in one line."""
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store = make_store(tmp_path / "s")  # before the disk "fills"
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    make_checkpoint(run_dir / "checkpoints" / "best.pt")
    monkeypatch.setattr(outputs, "_fsync", full)
    ckpt, data = setup["ckpt"], setup["data"]
    commands = [
        ["evaluate", ckpt, "--data", data, "--json", tmp_path / "e.json", "--no-progress"],
        ["features", ckpt, "--data", data, "--out", tmp_path / "f.npz", "--no-progress"],
        ["export", ckpt, "--format", "safetensors", "--out", tmp_path / "m.safetensors"],
        ["neighbors", ckpt, "--data", data, "--code-bits", "0", "--figure", tmp_path / "n.png",
         "--no-progress"],
        ["report", run_dir, "--data", data, "--code-bits", "0", "--no-progress", "--samples", "2",
         "--queries", "1", "--k", "1"],
        ["train", "--data", store, "--out", tmp_path / "t", "--image-size", "72", "--crop-size", "64",
         "--model-option", "width=0.125", "--batch-size", "16", "--epochs", "1", "--progress", "lines"],
        ["prepare", data, tmp_path / "p", "--workers", "1", "--quiet"],
    ]
    for argv in commands:
        code, _, err = run(capsys, *argv)
        one_line_error(code, err, "disk is full")


def test_train_and_prepare_into_an_impossible_folder(setup: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "prepare", setup["data"], "/proc/no-such/store", "--workers", "1")
    one_line_error(code, err, "/proc/no-such", "cannot be created")
    code, _, err = run(capsys, "prepare", setup["data"], tmp_path / "file" / "store", "--workers", "1")
    one_line_error(code, err, "not a folder")
    code, _, err = run(capsys, "train", "--data", setup["data"], "--out", tmp_path / "file")
    one_line_error(code, err, "is a file")


def test_neighbors_figure_needs_an_image_format_before_any_work(
        setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import alexnet.evaluate.scoring

    def no_loading(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(alexnet.evaluate.scoring, "load_models", no_loading)
    code, _, err = run(capsys, "neighbors", setup["ckpt"], "--data", setup["data"], "--figure",
                       tmp_path / "x.pt")
    one_line_error(code, err, "--figure", "png")


# ---- inputs the network cannot take -------------------------------------------------------------


def test_input_size_checked_without_allocating(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AlexNetError, match="at least 63x63"):
        check_input_size("alexnet2012", 56)
    with pytest.raises(AlexNetError, match="sized for 32x32 inputs"):
        check_input_size("cifar_18pct", 64)
    start = time.perf_counter()
    rows = layer_table("alexnet2012", 100_000)  # activations of 1.2e11 floats: never allocated
    assert time.perf_counter() - start < 20
    assert rows[0].output_shape == (96, 24_999, 24_999)
    for argv, fragment in ((["info", "alexnet2012", "--input-size", "0"], "must be positive"),
                           (["info", "alexnet2012", "--input-size", "56"], "at least 63x63"),
                           (["info", "alexnet2012", "-o", "width=abc"], "width='abc'"),
                           (["bench", "train", "--image-size", "32"], "at least 63x63")):
        code, _, err = run(capsys, *argv)
        one_line_error(code, err, fragment)


def test_train_crop_too_small_and_non_numbers(setup: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--data", setup["data"], "--out", tmp_path / "r"]
    for extra, fragment in ((["--image-size", "64", "--crop-size", "56"], "crop_size 56 is too small"),
                            (["--model-option", "width=abc"], "width='abc'"),
                            (["--lr", "nan"], "lr must be a finite number")):
        code, _, err = run(capsys, *base, *extra)
        one_line_error(code, err, fragment)
    assert not (tmp_path / "r").exists()  # refused before anything was written


# ---- damaged checkpoints and stores ---------------------------------------------------------


def test_checkpoint_messages(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.pt"
    text.write_text("hello, this is not a checkpoint\n")
    tag_only = tmp_path / "tag.pt"
    torch.save({"format": "alexnet-checkpoint/1"}, tag_only)
    pickled = tmp_path / "pickled.pt"
    data = torch.load(setup["ckpt"], weights_only=True)
    torch.save({**data, "extra": np.arange(3)}, pickled)  # numpy: a pickled global
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(setup["ckpt"].read_bytes()[:2000])
    image = next((setup["data"] / "val" / "ant").iterdir())
    for path, fragment in ((text, "not a PyTorch file (it starts with 'hello, this is "),
                           (tag_only, "'model_name'"), (truncated, "damaged or truncated"),
                           (pickled, "alexnet convert-checkpoint")):
        for argv in (["evaluate", path, "--data", setup["data"], "--no-progress"],
                     ["predict", path, image]):
            code, _, err = run(capsys, *argv)
            one_line_error(code, err, fragment)
            assert "weights_only=False" not in err and ": 101" not in err
    # the advice works: a trusted file converted loads safely and scores
    code, _, err = run(capsys, "convert-checkpoint", pickled, tmp_path / "plain.pt", "--trust-source")
    assert code == 0, err
    assert torch.equal(read_checkpoint(tmp_path / "plain.pt")["extra"], torch.arange(3))
    assert convert_trusted(pickled, tmp_path / "again.pt").is_file()
    code, _, err = run(capsys, "evaluate", tmp_path / "plain.pt", "--data", setup["data"], "--no-progress")
    assert code == 0, err


def test_short_reason_never_cuts_mid_word() -> None:
    text = ("Weights only load failed. This file can still be loaded, to do so you have two options, "
            "do those steps only if you trust the source of the checkpoint. " * 3)
    reason = short_reason(RuntimeError(text), limit=120)
    body = reason.removesuffix(" ...")
    assert len(reason) <= 124 and text.startswith(body) and text[len(body)] in ",.;"  # a clause's end
    assert short_reason(RuntimeError("Error(s) in loading:\n\tMissing key(s): fc8")).endswith("fc8")


def test_damaged_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path)
    ckpt = make_checkpoint(tmp_path / "a.pt")
    labels = np.load(store / "train" / "labels.npy")
    labels[3] = 9
    np.save(store / "train" / "labels.npy", labels)
    code, _, err = run(capsys, "evaluate", ckpt, "--data", store, "--split", "train", "--no-progress")
    one_line_error(code, err, "label 9, outside the store's 4 classes")
    (store / "manifest.json").write_text("{not json")
    code, _, err = run(capsys, "evaluate", ckpt, "--data", store, "--no-progress")
    one_line_error(code, err, "manifest.json", "JSON")


# ---- counts and the advice of messages ---------------------------------------------------------


def test_counts_say_must_be_positive(setup: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = setup["ckpt"], setup["data"]
    for argv, flag in ((["neighbors", ckpt, "--data", data, "--queries", "0"], "--queries"),
                       (["neighbors", ckpt, "--data", data, "--gallery-limit", "-1"], "--gallery-limit"),
                       (["neighbors", ckpt, "--data", data, "--recall-queries", "0"], "--recall-queries"),
                       (["neighbors", ckpt, "--data", data, "--code-steps", "0"], "--code-steps"),
                       (["features", ckpt, "--data", data, "--out", tmp_path / "f.npz", "--limit", "-1"],
                        "--limit"),
                       (["features", ckpt, "--data", data, "--out", tmp_path / "f.npz", "--batch-size", "0"],
                        "--batch-size"),
                       (["report", tmp_path, "--limit", "0"], "--limit")):
        code, _, err = run(capsys, *argv)
        one_line_error(code, err, f"{flag} must be positive")
    code, _, err = run(capsys, "neighbors", ckpt, "--data", data, "--code-bits", "-8")
    one_line_error(code, err, "--code-bits must be 0 or more")


def test_advice_names_only_flags_of_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from alexnet.data.ilsvrc import missing_val_labels
    from alexnet.data.images import load_image

    big = tmp_path / "big.png"
    from PIL import Image

    Image.new("RGB", (300, 300)).save(big)
    from alexnet.data.images import BadImageError

    with pytest.raises(BadImageError, match=r"`alexnet prepare SRC DEST --max-pixels N`"):
        load_image(big, 64, max_pixels=1000)
    assert "`alexnet prepare SRC DEST --devkit DIR`" in str(missing_val_labels(tmp_path, 3))
    store = make_store(tmp_path / "a")  # a store at 72 px; bench data asks for 64 px in it
    code, _, err = run(capsys, "bench", "data", "--source", tmp_path / "a" / "images", "--store", store,
                       "--size", "64")
    one_line_error(code, err, "--store", f"`alexnet prepare {tmp_path / 'a' / 'images'} {store} --overwrite`")
    assert "DEST" not in err


def test_neighbors_query_reports_every_bad_file(setup: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = next((setup["data"] / "val" / "bee").iterdir())
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    code, out, err = run(capsys, "neighbors", setup["ckpt"], "--data", setup["data"], "--query", good,
                         tmp_path / "missing.jpg", loop, folder, "--code-bits", "0", "--k", "2",
                         "--no-progress")
    assert code == 0, err
    assert f"skipped {tmp_path / 'missing.jpg'}: file not found" in err
    assert f"skipped {loop}: a symlink loop" in err
    assert f"skipped {folder}: a folder, not an image file" in err
    assert str(good) in out and "Traceback" not in err


def test_report_on_a_cifar_run_uses_its_last_hidden_layer(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from evaluate_helpers import channel_preprocess

    data = make_folder(tmp_path / "data", per_class=2)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    make_checkpoint(run_dir / "checkpoints" / "best.pt", model="cifar_18pct", width=0.25,
                    preprocess=channel_preprocess(32, 32))
    code, _, err = run(capsys, "report", run_dir, "--data", data, "--code-bits", "8", "--code-steps", "5",
                       "--samples", "2", "--queries", "2", "--k", "2", "--no-progress")
    assert code == 0, err
    page = (run_dir / "report.html").read_text()
    assert "Nearest neighbours in pool3 space" in page
    code, _, err = run(capsys, "report", run_dir, "--data", data, "--code-bits", "0", "--samples", "2",
                       "--queries", "1", "--k", "1", "--layer", "relu3", "--no-progress")
    assert code == 0, err
    assert "Nearest neighbours in relu3 space" in (run_dir / "report.html").read_text()


# ---- two Ctrl-C during a checkpoint write ------------------------------------------------------

SLOW_WRITE = """
import sys, time
import alexnet.models.checkpoint, alexnet.runtime.outputs
from alexnet.cli import main
original = alexnet.runtime.outputs.atomic_write
writes = []
def slow(path, write, **options):
    def slowly(temporary):
        write(temporary)
        if str(path).endswith(".pt"):
            writes.append(path)
            if len(writes) == 2:  # the second checkpoint: the first one is complete on disk
                print("WRITING", flush=True)
                time.sleep(30)
    return original(path, slowly, **options)
alexnet.models.checkpoint.atomic_write = slow
sys.exit(main(sys.argv[1:]))
"""


def test_two_ctrl_c_during_a_checkpoint_write(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-c", SLOW_WRITE, "train", "--data", str(store), "--out", str(out),
               "--image-size", "72", "--crop-size", "64", "--model-option", "width=0.125",
               "--batch-size", "16", "--epochs", "5", "--checkpoint-every-steps", "1",
               "--warmup-epochs", "0", "--val-batch-size", "16", "--progress", "lines"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert process.stdout is not None
    for line in process.stdout:
        if "WRITING" in line:
            break
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "alexnet train: interrupted"
    checkpoints = out / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    assert read_checkpoint(checkpoints / "last.pt")["training"]["step"] == 1  # the complete one


def test_prepare_on_a_full_disk_is_one_line_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC while prepare appends decoded images: one line, and the same command finishes
    the store once there is space again."""
    import alexnet.data.prepare as prepare_module

    data = make_folder(tmp_path / "data", per_class=1)
    opened = prepare_module._SplitWriter._open_partials

    class FullFile:
        def __init__(self, file: object) -> None:
            self.file = file

        def write(self, _data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> object:
            return getattr(self.file, name)

    def full_disk(self: object, *args: object) -> dict[str, object]:
        files = opened(self, *args)  # type: ignore[arg-type]
        files["images"] = FullFile(files["images"])
        return files

    monkeypatch.setattr(prepare_module._SplitWriter, "_open_partials", full_disk)
    argv = ["prepare", data, tmp_path / "store", "--workers", "1", "--quiet"]
    code, _, err = run(capsys, *argv)
    one_line_error(code, err, "disk is full")
    monkeypatch.undo()
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "train: 12 images" in out
