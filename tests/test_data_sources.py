"""Sources: ILSVRC flat validation folders and their label files, torchvision datasets, names."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.classes import ClassHints, imagenet_categories, resolve_class_names
from alexnet.data.prepare import prepare
from alexnet.data.sources import SplitItems, open_source, subset
from alexnet.data.store import open_store
from alexnet.errors import AlexNetError
from data_helpers import image_folder, random_image, write_image

WNIDS = ["n01440764", "n02102040", "n02979186"]  # tench, English springer, cassette player


def ilsvrc_tree(root: Path, val_wnids: list[str]) -> Path:
    """train/<wnid>/ folders and a flat val/ILSVRC2012_val_<i>.JPEG folder without labels."""
    image_folder(root, {"train": {w: 2 for w in WNIDS}})
    rng = np.random.default_rng(5)
    for i in range(1, len(val_wnids) + 1):
        write_image(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", random_image(rng, 20, 30))
    return root


def write_meta_mat(path: Path, id_to_wnid: dict[int, str]) -> None:
    """A devkit data/meta.mat: leaf synsets with ILSVRC2012_IDs, plus one inner node."""
    scipy_io = pytest.importorskip("scipy.io")
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    rows = np.zeros((len(id_to_wnid) + 1, 1), dtype=[(f, "O") for f in fields])
    for row, (ilsvrc_id, wnid) in enumerate(id_to_wnid.items()):
        rows[row, 0] = (ilsvrc_id, wnid, f"name of {wnid}, other", "", 0, np.zeros(0), 0, 1300)
    rows[-1, 0] = (1001, "n00001740", "entity", "", 2, np.array([1, 2]), 19, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(path, {"synsets": rows})


VAL_WNIDS = ["n02979186", "n01440764", "n02102040", "n01440764"]


def test_flat_val_without_labels_says_which_file_and_where(tmp_path: Path) -> None:
    root = ilsvrc_tree(tmp_path / "ilsvrc", VAL_WNIDS)
    with pytest.raises(AlexNetError) as error:
        open_source(root)
    message = str(error.value)
    assert "\n" not in message and "holds 4 files" in message
    assert "ILSVRC2012_validation_ground_truth.txt" in message and "--val-labels" in message
    assert "ILSVRC2012_devkit_t12.tar.gz" in message and "image-net.org" in message
    # the training split alone needs no labels
    assert list(open_source(root, splits=["train"]).splits) == ["train"]


def test_flat_val_with_wnid_per_line_labels(tmp_path: Path) -> None:
    root = ilsvrc_tree(tmp_path / "ilsvrc", VAL_WNIDS)
    labels = tmp_path / "val_wnids.txt"
    labels.write_text("\n".join(VAL_WNIDS) + "\n")
    prepare(root, tmp_path / "store", size=8, workers=1, val_labels=labels, progress=False)
    val = open_store(tmp_path / "store", "val")
    assert [val.classes[i] for i in val.labels] == VAL_WNIDS
    assert val.class_names == ["tench", "English springer", "cassette player"]


def test_flat_val_with_devkit_ground_truth_and_meta_mat(tmp_path: Path) -> None:
    root = ilsvrc_tree(tmp_path / "ilsvrc", VAL_WNIDS)
    # ILSVRC2012_IDs are not in sorted-wnid order: 1 -> cassette player, 2 -> tench, ...
    id_to_wnid = {1: "n02979186", 2: "n01440764", 3: "n02102040"}
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n3\n2\n")
    with pytest.raises(AlexNetError, match=r"meta\.mat"):
        open_source(root)
    write_meta_mat(devkit / "meta.mat", id_to_wnid)
    source = open_source(root)
    labels = source.splits["val"].labels
    assert [source.classes[i] for i in labels] == VAL_WNIDS
    assert source.details["val_labels"].endswith("ILSVRC2012_validation_ground_truth.txt")


def test_devkit_ids_without_meta_mat_explain_what_is_missing(tmp_path: Path) -> None:
    root = ilsvrc_tree(tmp_path / "ilsvrc", VAL_WNIDS)
    (root / "val" / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n3\n2\n")
    with pytest.raises(AlexNetError, match=r"ILSVRC2012_IDs.*meta\.mat.*--devkit"):
        open_source(root)


def test_kaggle_csv_labels(tmp_path: Path) -> None:
    root = ilsvrc_tree(tmp_path / "ilsvrc", VAL_WNIDS)
    rows = [f"ILSVRC2012_val_{i:08d},{w} 1 2 3 4" for i, w in enumerate(VAL_WNIDS, 1)]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]))
    source = open_source(root)
    assert [source.classes[i] for i in source.splits["val"].labels] == VAL_WNIDS


def test_flat_test_folder_without_labels_is_left_out(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "ilsvrc", {"train": {w: 1 for w in WNIDS}})
    write_image(root / "test" / "ILSVRC2012_test_00000001.JPEG", random_image(np.random.default_rng(0), 9, 9))
    source = open_source(root)
    assert list(source.splits) == ["train"] and source.details["left_out"]
    with pytest.raises(AlexNetError, match="no label file"):
        open_source(root, splits=["test"])


def test_class_names_and_imagenet_indices() -> None:
    imagenette = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                  "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]
    names, indices = resolve_class_names(imagenette)
    assert indices == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]  # shared/data/README.md
    assert names[0] == "tench" and names[-1] == "parachute"
    fake_1000 = [f"n{i:08d}" for i in range(1000)]
    names, indices = resolve_class_names(fake_1000)
    assert indices == list(range(1000)) and names == imagenet_categories()
    names, indices = resolve_class_names(["n01443537", "n01440764"])  # any ImageNet subset
    assert names == ["goldfish", "tench"] and indices == [1, 0]
    names, indices = resolve_class_names(["n99999999", "n01440764"])
    assert names == ["n99999999", "n01440764"] and indices is None  # unknown: fall back to ids
    hints = ClassHints({"n99999999": "mystery"})
    assert resolve_class_names(["n99999999"], hints)[0] == ["mystery"]
    assert resolve_class_names(["cat", "dog"]) == (["cat", "dog"], None)


def test_class_names_file(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src", {"train": {"a1": 1, "b2": 1}})
    names = tmp_path / "names.txt"
    names.write_text("a1 apple, malus\nb2 banana\n")
    assert open_source(root, class_names_file=names).class_names == ["apple", "banana"]


def test_subset_round_robin_and_per_class() -> None:
    items = SplitItems([str(i) for i in range(9)], np.array([0, 0, 0, 0, 1, 1, 2, 2, 2]))
    assert subset(items, per_class=2).refs == ["0", "1", "4", "5", "6", "7"]
    assert subset(items, limit=4).refs == ["0", "1", "4", "6"]
    assert subset(items, per_class=1, limit=2).labels.tolist() == [0, 1]
    assert subset(items) is items


def test_torchvision_imagenette_class_on_a_local_tree(tmp_path: Path) -> None:
    image_folder(tmp_path / "tv" / "imagenette2", {"train": {w: 2 for w in WNIDS},
                                                  "val": {w: 1 for w in WNIDS}})
    report = prepare("torchvision:imagenette", tmp_path / "store", size=8, workers=1,
                     download_dir=tmp_path / "tv", progress=False)
    assert report.splits["train"].count == 6 and report.splits["val"].count == 3
    store = open_store(tmp_path / "store", "val")
    assert store.classes == WNIDS and store.class_names[1] == "English springer"
    assert store.imagenet_indices == [0, 217, 482]
    assert store.files[0] == "imagenette2/val/n01440764/n01440764_0.JPEG"


def test_torchvision_cifar10_class_on_local_batches(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import cifar

    rng = np.random.default_rng(0)
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)  # CHW rows, as CIFAR stores
        data[name] = pixels
        with (folder / name).open("wb") as f:
            pickle.dump({"data": pixels, "labels": [1, 7]}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                     "frog", "horse", "ship", "truck"]}, f)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)  # md5s of the real files

    prepare("torchvision:cifar10", tmp_path / "store", size=32, workers=1,
            download_dir=tmp_path / "tv", progress=False)
    test = open_store(tmp_path / "store", "test")
    assert test.class_names[7] == "horse" and test.labels.tolist() == [1, 7]
    expected = data["test_batch"].reshape(2, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(test.images), expected)  # 32 px: stored unchanged
    assert len(open_store(tmp_path / "store", "train")) == 10


def test_torchvision_dataset_missing_says_download(tmp_path: Path) -> None:
    with pytest.raises(AlexNetError, match="--download"):
        open_source("torchvision:imagenette", download_dir=tmp_path)
    with pytest.raises(AlexNetError, match="unknown torchvision dataset 'mnist'"):
        open_source("torchvision:mnist", download_dir=tmp_path)
