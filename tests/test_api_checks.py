"""The checks behind the CLI live in the API: a notebook caller gets the same one-line
errors as `alexnet ...`, and every TrainConfig field carries the help text the CLI shows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from alexnet.cli.main import build_parser
from alexnet.errors import AlexNetError
from alexnet.evaluate.bench import EvalBenchConfig
from alexnet.train.bench import TrainBenchConfig
from alexnet.train.config import TrainConfig, resolve_config, resume_config


def test_every_train_config_field_has_help_and_the_cli_shows_it() -> None:
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("help")]
    assert missing == []
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    shown = {action.dest: action.help for action in train._actions}
    for name in ("lr", "momentum", "weight_decay", "epochs", "batch_size"):
        field_help = next(f.metadata["help"] for f in dataclasses.fields(TrainConfig) if f.name == name)
        assert shown[name].startswith(field_help), name  # then "(default ...)"


def test_mutable_defaults_are_not_shared_between_configs() -> None:
    first, second = TrainConfig(), TrainConfig()
    first.model_options["width"] = 0.5
    first.lr_milestones.append(90)
    assert second.model_options == {"init": "kaiming"} and second.lr_milestones == [30, 60]


def test_resume_config_reads_the_run_folder_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(AlexNetError, match="is not a run folder"):
        resume_config(tmp_path / "nothing")
    with pytest.raises(AlexNetError, match="--resume and --fresh contradict each other"):
        resume_config(tmp_path, fresh=True)
    run = tmp_path / "run"
    run.mkdir()
    saved = {**resolve_config(None, {"data": "somewhere", "lr": 0.03}).to_dict(),
             "preset": "imagenette", "versions": {}}
    (run / "config.json").write_text(json.dumps(saved))
    config, preset = resume_config(run, {"epochs": 7})
    assert (config.lr, config.epochs, config.out, preset) == (0.03, 7, str(run), "imagenette")
    (run / "config.json").write_text("{not json")
    with pytest.raises(AlexNetError, match="not valid JSON"):
        resume_config(run)


@pytest.mark.parametrize("options, message", [
    ({"models": ("alexnet3000",)}, "unknown model 'alexnet3000'"),
    ({"steps": 0}, "--steps must be at least 1"),
    ({"rounds": 0}, "--rounds must be at least 1"),
    ({"target_ratio": 0.0}, "--target-ratio must be positive"),
])
def test_train_benchmark_config_checks_its_values(options: dict, message: str) -> None:
    with pytest.raises(AlexNetError, match=message):
        TrainBenchConfig(**options)


@pytest.mark.parametrize("options", [{"batch_size": 0}, {"rounds": 0}, {"batches": 0}])
def test_evaluate_benchmark_config_checks_its_values(options: dict) -> None:
    with pytest.raises(AlexNetError, match="--batch-size, --rounds and --batches must be positive"):
        EvalBenchConfig(**options)
