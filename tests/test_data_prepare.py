"""alexnet prepare: the store it writes, bad files, resuming, idempotence, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet.data.prepare as prepare_module
from alexnet.cli import main
from alexnet.data.images import load_image
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store, verify_store
from alexnet.errors import AlexNetError
from data_helpers import image_folder, random_image, write_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "src", {"train": {"cat": 5, "dog": 4}, "val": {"cat": 2, "dog": 2}})


def test_store_layout_and_contents(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store"
    report = prepare(folder, dest, size=24, workers=1, progress=False)
    assert report.splits["train"].count == 9 and report.splits["val"].count == 4
    train = open_store(dest, "train")
    assert isinstance(train.images, np.memmap) and train.images.shape == (9, 24, 24, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.classes == ["cat", "dog"] and train.class_names == ["cat", "dog"]
    assert train.size == 24 and len(train) == 9
    assert train.labels.tolist() == [0] * 5 + [1] * 4
    for i in (0, 8):  # each stored image is exactly what load_image makes of its file
        np.testing.assert_array_equal(train.images[i], load_image(train.source_path(i), 24))
    assert train.files[0] == "train/cat/cat_0.JPEG"
    assert isinstance(train.stats.mean_image, torch.Tensor)
    assert train.stats.mean_image.shape == (24, 24, 3)
    np.testing.assert_allclose(train.stats.mean_image.numpy(),
                               np.asarray(train.images, np.float64).mean(axis=0), rtol=1e-5)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["format"] == "alexnet-store/1" and manifest["image_size"] == 24
    assert manifest["splits"]["val"]["count"] == 4
    assert set(manifest["splits"]["train"]["sha256"]) == {"images.u8", "labels.npy", "files.txt"}
    assert verify_store(dest) == []


def test_parallel_equals_serial(folder: Path, tmp_path: Path) -> None:
    prepare(folder, tmp_path / "one", size=16, workers=1, progress=False)
    prepare(folder, tmp_path / "two", size=16, workers=2, chunk_size=2, progress=False)
    for split in ("train", "val"):
        for name in ("images.u8", "labels.npy", "files.txt"):
            assert (tmp_path / "one" / split / name).read_bytes() == \
                (tmp_path / "two" / split / name).read_bytes()
    assert (tmp_path / "one/stats.npz").is_file()
    np.testing.assert_array_equal(np.load(tmp_path / "one/stats.npz")["rgb_covariance"],
                                  np.load(tmp_path / "two/stats.npz")["rgb_covariance"])


def test_bad_files_are_skipped_and_listed_never_fatal(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cls = tmp_path / "src" / "train" / "n01440764"
    write_image(cls / "good.JPEG", random_image(rng, 30, 40))
    write_image(cls / "png_inside.JPEG", random_image(rng, 30, 40), format="PNG")
    Image.new("RGB", (30, 40), (9, 99, 199)).convert("CMYK").save(cls / "cmyk.JPEG")
    write_image(cls / "gray.JPEG", random_image(rng, 30, 40)[..., 0])
    (cls / "zero.JPEG").touch()
    (cls / "notes.txt").write_text("not an image")
    full = write_image(tmp_path / "full.jpg", random_image(rng, 60, 80)).read_bytes()
    (cls / "truncated.JPEG").write_bytes(full[: len(full) // 2])
    Image.new("RGB", (1200, 1000), (1, 2, 3)).save(cls / "huge.png")
    (tmp_path / "src" / "train" / "loose.JPEG").write_bytes(full)

    dest = tmp_path / "store"
    report = prepare(tmp_path / "src", dest, size=16, workers=1, max_pixels=1_000_000,
                     progress=False)
    store = open_store(dest, "train")
    assert len(store) == 4  # good, png_inside, cmyk, gray
    skipped = dict(line.split("\t") for line in (dest / "skipped.tsv").read_text().splitlines())
    assert set(skipped) == {"train/n01440764/zero.JPEG", "train/n01440764/notes.txt",
                            "train/n01440764/truncated.JPEG", "train/n01440764/huge.png",
                            "train/loose.JPEG"}
    assert "empty file" in skipped["train/n01440764/zero.JPEG"]
    assert "--max-pixels" in skipped["train/n01440764/huge.png"]
    assert "outside any class folder" in skipped["train/loose.JPEG"]
    assert report.splits["train"].conversions == {"CMYK to RGB": 1, "L to RGB": 1,
                                                  "PNG named .JPEG": 1}
    assert "5 files skipped" in report.summary()
    cmyk = store.files.index("train/n01440764/cmyk.JPEG")
    assert np.abs(store.images[cmyk].astype(int) - (9, 99, 199)).max() <= 4

    # raising the limit and re-preparing includes the huge image
    prepare(tmp_path / "src", dest, size=16, workers=1, max_pixels=2_000_000, overwrite=True,
            progress=False)
    assert len(open_store(dest, "train")) == 5


def test_nothing_usable_and_strict_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "a.JPEG").write_text("no")
    assert main(["prepare", str(tmp_path / "bad"), str(tmp_path / "s1"), "--quiet"]) == 2
    assert "no usable image" in capsys.readouterr().err

    image_folder(tmp_path / "mixed", {"train": {"cls": 2}})
    (tmp_path / "mixed" / "train" / "cls" / "broken.JPEG").touch()
    args = ["prepare", str(tmp_path / "mixed"), str(tmp_path / "s2"), "--size", "8", "--quiet"]
    assert main(args) == 0
    assert main([*args, "--strict"]) == 2  # also when the store is already prepared
    assert "--strict: 1 files could not be used" in capsys.readouterr().err


def test_rerun_is_idempotent_and_settings_are_checked(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store"
    prepare(folder, dest, size=16, workers=1, progress=False)
    stamp = (dest / "train" / "images.u8").stat().st_mtime_ns
    again = prepare(folder, dest, size=16, workers=1, progress=False)
    assert {r.status for r in again.splits.values()} == {"already prepared"}
    assert (dest / "train" / "images.u8").stat().st_mtime_ns == stamp
    with pytest.raises(AlexNetError, match=r"size=16.*--overwrite"):
        prepare(folder, dest, size=24, workers=1, progress=False)
    with pytest.raises(AlexNetError, match="different file list"):
        prepare(folder, dest, size=16, per_class=1, workers=1, progress=False)
    prepare(folder, dest, size=24, workers=1, overwrite=True, progress=False)
    assert open_store(dest, "val").size == 24


def test_interrupted_prepare_resumes_to_the_same_store(folder: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(folder, tmp_path / "reference", size=16, workers=1, chunk_size=2, progress=False)

    decode = prepare_module._decode_chunk
    calls = {"n": 0}

    def interrupted(chunk: prepare_module._Chunk) -> prepare_module._ChunkResult:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return decode(chunk)

    monkeypatch.setattr(prepare_module, "_decode_chunk", interrupted)
    dest = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare(folder, dest, size=16, workers=1, chunk_size=2, progress=False)
    assert (dest / "train" / "progress.npz").is_file()
    with pytest.raises(AlexNetError, match="interrupted"):
        open_store(dest, "train")
    monkeypatch.setattr(prepare_module, "_decode_chunk", decode)
    report = prepare(folder, dest, size=16, workers=1, chunk_size=2, progress=False)
    assert report.splits["train"].status == "resumed"
    for split in ("train", "val"):
        for name in ("images.u8", "labels.npy", "files.txt"):
            assert (dest / split / name).read_bytes() == \
                (tmp_path / "reference" / split / name).read_bytes()
    assert (dest / "stats.npz").read_bytes() != b""
    for name in ("mean_image", "rgb_covariance"):
        np.testing.assert_array_equal(np.load(dest / "stats.npz")[name],
                                      np.load(tmp_path / "reference/stats.npz")[name])
    assert not (dest / "train" / "progress.npz").exists()


def test_verify_detects_corruption(folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store"
    prepare(folder, dest, size=8, workers=1, progress=False)
    with (dest / "train" / "images.u8").open("r+b") as f:
        f.write(b"\xff\x00\xff")
    assert verify_store(dest) == [f"{dest / 'train' / 'images.u8'}: sha256 differs from the manifest"]


def test_subsets_and_single_folder_source(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "flowers", {".": {"rose": 6, "tulip": 3}})
    report = prepare(root, tmp_path / "s", size=8, per_class=2, workers=1, progress=False)
    store = open_store(tmp_path / "s", "train")  # a plain CLASS/IMAGE tree is the train split
    assert sorted(store.labels.tolist()) == [0, 0, 1, 1] and list(report.splits) == ["train"]
    prepare(root, tmp_path / "s2", size=8, limit=3, workers=1, progress=False)
    assert sorted(open_store(tmp_path / "s2", "train").labels.tolist()) == [0, 0, 1]


def test_store_errors_are_one_line(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(AlexNetError, match=r"no prepared store.*alexnet prepare"):
        open_store(tmp_path / "nothing")
    prepare(folder, tmp_path / "s", size=8, splits=["train"], workers=1, progress=False)
    with pytest.raises(AlexNetError, match=r"split 'val' not in store.*it has: train"):
        open_store(tmp_path / "s", "val")
    prepare(folder, tmp_path / "s", size=8, splits=["val"], workers=1, progress=False)
    assert len(open_store(tmp_path / "s", "val")) == 4  # a store grows split by split
    with pytest.raises(AlexNetError, match="source not found"):
        prepare(tmp_path / "missing", tmp_path / "s3", progress=False)
    with pytest.raises(AlexNetError, match="--size must be at least 1"):
        prepare(folder, tmp_path / "s3", size=0, progress=False)


def test_cli_prepare_prints_a_summary(folder: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare", str(folder), str(tmp_path / "s"), "--size", "8", "--workers", "1",
                 "--quiet", "--per-class", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "train: 2 images, 0 skipped" in out and "stats over train" in out


def test_real_imagenette_subset(shared_data: Path, tmp_path: Path) -> None:
    report = prepare(shared_data / "imagenette", tmp_path / "s", size=32, per_class=2,
                     workers=2, progress=False)
    store = open_store(tmp_path / "s", "val")
    assert len(store) == 20 and report.splits["train"].count == 20
    assert store.class_names[0] == "tench" and store.imagenet_indices[-1] == 701


def test_real_cifar10_subset(shared_data: Path, tmp_path: Path) -> None:
    if not (shared_data / "cifar10").is_dir():
        pytest.skip("no cifar10 in the shared data")
    prepare(shared_data / "cifar10", tmp_path / "s", size=32, per_class=1, workers=1,
            progress=False)
    test = open_store(tmp_path / "s", "test")
    assert test.classes[0] == "airplane" and len(test.classes) == 10 and len(test) == 10
    assert test.imagenet_indices is None and test.stats.mean_image.shape == (32, 32, 3)
