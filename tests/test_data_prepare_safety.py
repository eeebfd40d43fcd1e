"""alexnet prepare never deletes or writes outside DEST, never writes over files that are not
a store's, finishes what a kill interrupted without decoding again, and takes its workers
with it when it dies (docs/promises.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import alexnet.data.prepare as prepare_module
from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store
from alexnet.errors import AlexNetError
from alexnet.evaluate.inputs import open_images
from data_helpers import image_folder

STORE_NAMES = ("images.u8", "labels.npy", "files.txt", "skipped.tsv", "progress.npz")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "src", {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 1}})


def _victim(path: Path) -> dict[Path, bytes]:
    """Files outside the store, named as a store's split files, that must survive."""
    path.mkdir(parents=True)
    files = {path / name: f"precious {name}".encode() for name in STORE_NAMES}
    for file, content in files.items():
        file.write_bytes(content)
    return files


def _intact(files: dict[Path, bytes]) -> bool:
    return all(file.is_file() and file.read_bytes() == content for file, content in files.items())


def test_overwrite_never_follows_a_manifest_split_out_of_dest(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "stores" / "s"
    prepare(folder, dest, size=8, workers=1, progress=False)
    victim = _victim(tmp_path / "stores" / "victim")
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["splits"]["../victim"] = manifest["splits"]["val"]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AlexNetError, match=r"'\.\./victim'.*not a plain folder name"):
        prepare(folder, dest, size=8, workers=1, overwrite=True, progress=False)
    with pytest.raises(AlexNetError, match="not a plain folder name"):
        open_store(dest, "train")
    assert _intact(victim)
    assert main(["prepare", str(folder), str(dest), "--size", "8", "--workers", "1", "--quiet",
                 "--overwrite"]) == 2
    assert _intact(victim)


def test_overwrite_does_not_follow_a_split_folder_that_is_a_link(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "s"
    prepare(folder, dest, size=8, workers=1, splits=["train"], progress=False)
    victim = _victim(tmp_path / "elsewhere")
    (dest / "val").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(AlexNetError):  # the link is refused as a split folder of the store
        prepare(folder, dest, size=8, workers=1, overwrite=True, progress=False)
    assert _intact(victim)


def test_a_user_split_name_cannot_leave_the_store(folder: Path, tmp_path: Path) -> None:
    prepare(folder, tmp_path / "s", size=8, workers=1, progress=False)
    with pytest.raises(AlexNetError, match=r"split '\.\./s' not in store"):  # only manifest names
        open_store(tmp_path / "s", "../s")


def test_a_folder_that_is_not_a_store_is_refused(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    own = {dest / "train" / "files.txt": b"my list", dest / "stats.npz": b"my stats",
           dest / "notes.md": b"notes"}
    for path, content in own.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    with pytest.raises(AlexNetError, match=r"not empty and is not an alexnet store.*--overwrite"):
        prepare(folder, dest, size=8, workers=1, progress=False)
    assert _intact(own)
    assert not (dest / "manifest.json").exists()
    # told: --overwrite writes the store there; unrelated files (notes.md) stay
    prepare(folder, dest, size=8, workers=1, overwrite=True, progress=False)
    assert (dest / "notes.md").read_bytes() == b"notes"
    assert len(open_store(dest, "train")) == 5
    # an empty folder, and a store of ours, are fine without being told
    (tmp_path / "empty").mkdir()
    prepare(folder, tmp_path / "empty", size=8, workers=1, progress=False)
    prepare(folder, tmp_path / "empty", size=8, workers=1, progress=False)


def _interrupt_after_train_is_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill after the train split's files were finished, before the manifest recorded them."""
    real_sha = prepare_module.file_sha256

    def killed(path: Path) -> str:
        if path.parent.name == "train":
            raise KeyboardInterrupt
        return real_sha(path)

    monkeypatch.setattr(prepare_module, "file_sha256", killed)


def test_a_whole_split_is_not_decoded_again_after_a_kill(folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(folder, tmp_path / "reference", size=8, workers=1, progress=False)
    dest = tmp_path / "s"
    _interrupt_after_train_is_whole(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dest, size=8, workers=1, progress=False)
    monkeypatch.undo()
    assert (dest / "train" / "images.u8").is_file() and (dest / "train" / "progress.npz").is_file()

    decoded = []
    real_decode = prepare_module._decode_chunk

    def counting(chunk: prepare_module._Chunk) -> prepare_module._ChunkResult:
        decoded.append(chunk.refs[0].split("/")[0])
        return real_decode(chunk)

    monkeypatch.setattr(prepare_module, "_decode_chunk", counting)
    report = prepare(folder, dest, size=8, workers=1, progress=False)
    assert report.splits["train"].status == "resumed" and report.splits["train"].count == 5
    assert "train" not in decoded and "val" in decoded
    for split in ("train", "val"):
        for name in ("images.u8", "labels.npy", "files.txt"):
            assert (dest / split / name).read_bytes() == (tmp_path / "reference" / split / name).read_bytes()
    assert (dest / "stats.npz").read_bytes() == (tmp_path / "reference" / "stats.npz").read_bytes()
    assert not (dest / "train" / "progress.npz").exists()
    assert json.loads((dest / "manifest.json").read_text())["complete"] is True


def test_an_unfinished_store_says_so_and_how_to_finish(folder: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "s"
    _interrupt_after_train_is_whole(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dest, size=8, workers=1, progress=False)
    monkeypatch.undo()
    expected = rf"store {dest} is unfinished.*alexnet prepare {folder.resolve()} {dest}"
    for read in (lambda: open_store(dest, "train"), lambda: open_images(dest, "val")):
        with pytest.raises(AlexNetError, match=expected):
            read()
    # train must not take it for an image folder and prepare a copy of it elsewhere
    stores = tmp_path / "stores"
    code = main(["train", "--preset", "imagenette", "--data", str(dest), "--out",
                 str(tmp_path / "run"), "--store-dir", str(stores), "--epochs", "1"])
    assert code == 2 and not stores.exists()


def test_a_class_folder_without_images_is_reported(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", {"train": {"cat": 2, "dog": 2}})
    (root / "train" / "emu").mkdir()
    report = prepare(root, tmp_path / "s", size=8, workers=1, progress=False)
    assert report.splits["train"].empty_classes == ["emu"]
    assert "warning: 1 classes have no image in train: emu" in report.summary()


_KILLED_PREPARE = """
import sys, time
import alexnet.data.prepare as p
decode = p.load_image
def slow(*args, **kwargs):
    time.sleep(0.2)
    return decode(*args, **kwargs)
p.load_image = slow  # inherited by the forked workers
p.prepare(sys.argv[1], sys.argv[2], size=8, workers=2, chunk_size=1, progress=False)
"""


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_prepare_takes_its_workers_with_it(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", {"train": {"cat": 30, "dog": 30}})
    parent = subprocess.Popen([sys.executable, "-c", _KILLED_PREPARE, str(root), str(tmp_path / "s")],
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert len(workers) >= 2, "the pool never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived a killed prepare"
    finally:
        parent.kill()
        for w in workers:  # never leave a stray worker behind, whatever failed
            if _alive(w):
                os.kill(w, signal.SIGKILL)


@pytest.mark.parametrize("name", ["images.u8.partial", "labels.partial", ".progress.npz.tmp"])
def test_a_link_among_a_splits_files_is_refused(folder: Path, tmp_path: Path, name: str) -> None:
    dest = tmp_path / "s"
    (dest / "train").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (dest / "train" / name).symlink_to(victim)
    (dest / "train" / "files.partial").symlink_to(tmp_path / "would-be-created")  # dangling
    with pytest.raises(AlexNetError, match=r"is a link.*writes only inside DEST"):
        prepare(folder, dest, size=8, workers=1, progress=False)
    assert victim.read_text() == "precious" and not (tmp_path / "would-be-created").exists()


def test_a_damaged_split_entry_is_one_line(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "s"
    prepare(folder, dest, size=8, workers=1, progress=False)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["splits"]["train"] = "x"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    for call in (lambda: prepare(folder, dest, size=8, workers=1, progress=False),
                 lambda: open_store(dest, "val")):
        with pytest.raises(AlexNetError, match="'train' is damaged"):
            call()
