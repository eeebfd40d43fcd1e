"""train writes only its own files in --out: it refuses a folder holding files it did not
write, and --fresh removes what a run wrote, by name, never anything beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.errors import AlexNetError
from alexnet.train import train
from train_helpers import make_store, tiny_config


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("run-folder-store"))


def _quiet(_line: str) -> None:
    pass


def test_fresh_removes_only_what_the_run_wrote(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, epochs=1, max_steps=2, checkpoint_every_steps=1), log=_quiet)
    assert (run / "checkpoints" / "last.pt").is_file() and any((run / "tensorboard").iterdir())
    mine = {run / "checkpoints" / "notes.txt": b"mine", run / "checkpoints" / "step-x.pt": b"mine",
            run / "tensorboard" / "my-plot.png": b"mine", run / "analysis.ipynb": b"mine"}
    for path, content in mine.items():
        path.write_bytes(content)
    old_events = [p.name for p in (run / "tensorboard").iterdir() if p.name.startswith("events.")]
    train(tiny_config(store, run, epochs=1, max_steps=1), fresh=True, log=_quiet)
    assert all(path.read_bytes() == content for path, content in mine.items())
    assert not any((run / "tensorboard" / name).exists() for name in old_events)
    steps = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-0"))
    assert steps == ["step-0000001.pt"]  # the old run's step files are gone, the new one is there
    # a run folder with the user's files beside it is still a run folder: it resumes
    assert train(tiny_config(store, run, epochs=1), log=_quiet).status == "finished"


@pytest.mark.parametrize("name, content", [
    ("config.json", '{"learning": "my other project"}'),
    ("config.json", "not json"),
    ("summary.json", '{"mine": true}'),
    ("results.csv", "a,b\n"),
])
def test_out_holding_files_not_ours_is_refused(store: Path, tmp_path: Path, name: str,
                                               content: str) -> None:
    run = tmp_path / "project"
    run.mkdir()
    (run / name).write_text(content)
    for fresh in (False, True):
        with pytest.raises(AlexNetError, match=r"(not an alexnet run's|not a run folder)") as error:
            train(tiny_config(store, run, epochs=1), fresh=fresh, log=_quiet)
        assert "\n" not in str(error.value)
    assert sorted(p.name for p in run.iterdir()) == [name]
    assert (run / name).read_text() == content


def test_out_a_file_and_an_empty_folder(store: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code = main(["train", "--data", str(store), "--out", str(tmp_path / "file"), "--epochs", "1"])
    assert code == 2 and "is a file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    result = train(tiny_config(store, tmp_path / "empty", epochs=1, max_steps=1), log=_quiet)
    assert result.status == "max_steps"
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["model"] == "alexnet2012"


def test_a_linked_checkpoints_folder_is_refused(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, epochs=1, max_steps=1), log=_quiet)
    (run / "checkpoints").rename(tmp_path / "elsewhere")
    (run / "checkpoints").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    before = sorted(p.name for p in (tmp_path / "elsewhere").iterdir())
    for fresh in (False, True):  # --fresh would keep the old run's files, a resume use them
        with pytest.raises(AlexNetError, match="is a link"):
            train(tiny_config(store, run, epochs=1), fresh=fresh, log=_quiet)
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == before


def test_a_fresh_launch_that_fails_leaves_a_run_folder(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(store, run, epochs=1, max_steps=1), log=_quiet)
    (run / "report.html").write_text("<html>the report</html>")  # what alexnet report adds
    with pytest.raises(AlexNetError, match="fewer than one batch"):  # found after --fresh cleared
        train(tiny_config(store, run, epochs=1, batch_size=4096), fresh=True, log=_quiet)
    assert not (run / "checkpoints" / "last.pt").exists()  # the old run is gone ...
    result = train(tiny_config(store, run, epochs=1, max_steps=1), log=_quiet)  # ... not the folder
    assert result.status == "max_steps" and (run / "report.html").is_file()


def test_fresh_leaves_a_folder_in_the_place_of_a_run_file(store: Path, tmp_path: Path) -> None:
    from alexnet.train.checkpointing import TrainingRun

    run = tmp_path / "run"
    train(tiny_config(store, run, epochs=1, max_steps=1), log=_quiet)
    (run / "model.safetensors").unlink(missing_ok=True)
    (run / "model.safetensors").mkdir()
    TrainingRun(run).clear()  # no IsADirectoryError; the folder is the user's
    assert (run / "model.safetensors").is_dir() and not (run / "metrics.jsonl").exists()
