"""TrainConfig, presets, overrides and the learning-rate schedules (no training here)."""

from __future__ import annotations

import math

import pytest

from alexnet.cli import main
from alexnet.errors import AlexNetError
from alexnet.train.config import PRESETS, TrainConfig, apply_overrides, resolve_config
from alexnet.train.schedule import LearningRate


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves_and_names_its_source(name: str) -> None:
    config = resolve_config(name, data="somewhere")
    assert config.crop_size <= config.image_size
    preset = PRESETS[name]
    assert len(preset.source) > 40 and preset.description
    # the preset's own values really are applied
    for key, value in preset.values.items():
        if key != "data":
            assert getattr(config, key) == value, key


def test_paper_preset_is_the_papers_recipe() -> None:
    c = resolve_config("paper", data="x")
    assert (c.model, c.batch_size, c.lr, c.momentum, c.weight_decay) == ("alexnet2012", 128, 0.01, 0.9, 5e-4)
    assert (c.schedule, c.lr_factor, c.max_lr_reductions, c.epochs) == ("plateau", 0.1, 3, 90)
    assert (c.crop_size, c.image_size, c.pca_lighting, c.normalization) == (224, 256, 0.1, "mean_image")
    assert c.flip


def test_overrides_are_typed_and_parsed_from_text() -> None:
    c = resolve_config("imagenette", {"lr": "0.05", "epochs": "3", "flip": "false",
                                      "lr_milestones": "5,8", "init_from": "none"})
    assert (c.lr, c.epochs, c.flip, c.lr_milestones, c.init_from) == (0.05, 3, False, [5, 8], None)
    assert isinstance(c.lr, float) and isinstance(c.epochs, int)
    # an int is a fine float; model options merge with the preset's
    c = resolve_config("imagenette", lr=1, model_options={"width": 0.5})
    assert c.lr == 1.0 and c.model_options == {"init": "kaiming", "conv1_init_std": 0.01,
                                               "width": 0.5}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"learning_rate": 0.1}, "unknown config key 'learning_rate'"),
    ({"lr": "fast"}, "lr must be float"),
    ({"epochs": 2.5}, "epochs must be int"),
    ({"flip": "maybe"}, "flip must be bool"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"crop_size": 300}, "crop_size 300 is larger than image_size"),
    ({"schedule": "exponential"}, "unknown schedule"),
    ({"model": "alexnet3"}, "unknown model"),
    ({"model_options": {"widht": 0.5}}, "unknown model option 'widht'"),
    ({"weights": "imagenet"}, "unknown weights"),
    ({"weights": "torchvision"}, "model=alexnet2014"),
    ({"towers_on_devices": "cpu,cpu", "model": "alexnet2014"}, "towers_on_devices splits alexnet2012"),
    ({"data": ""}, "no training data"),
    ({"resized_crop_scale": 1.2}, "resized_crop_scale must be in"),
])
def test_bad_values_are_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(AlexNetError, match=message) as error:
        resolve_config("imagenette", overrides)
    assert "\n" not in str(error.value)


def test_config_round_trips_through_a_dict() -> None:
    config = resolve_config("cifar10-18pct", lr=0.002)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AlexNetError, match="unknown config key"):
        TrainConfig.from_dict({**config.to_dict(), "surprise": 1})


def test_unknown_preset() -> None:
    with pytest.raises(AlexNetError, match="unknown preset 'imagenet'; valid: paper"):
        resolve_config("imagenet")


def test_cli_rejects_bad_input_before_any_work(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--preset", "imagenette", "--data", str(tmp_path / "nowhere"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alexnet train: error: training data not found") and "\n" not in err
    assert not out.exists()
    assert main(["train", "--preset", "imagenette", "--lr", "abc"]) == 2
    assert "lr must be float, got 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: unknown flag
        main(["train", "--learning-rate", "0.1"])
    assert exit_info.value.code == 2


# ---- schedules ------------------------------------------------------------------------------


def _schedule(**values: object) -> LearningRate:
    config = apply_overrides(TrainConfig(data="x"), values)
    return LearningRate(config, steps_per_epoch=10)


def test_plateau_divides_by_ten_when_val_error_stops_improving_at_most_three_times() -> None:
    s = _schedule(schedule="plateau", lr=0.01, plateau_patience=2, max_lr_reductions=3)
    errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    reduced = [s.end_epoch(e) for e in errors]
    assert reduced.count(True) == 3  # capped, however long it stalls
    assert reduced[:4] == [False, False, False, True]  # two epochs without improvement
    assert math.isclose(s.at(500), 0.01 * 0.1**3)


def test_step_cosine_linear_and_warmup() -> None:
    step = _schedule(schedule="step", lr=0.01, lr_milestones=[2, 4], epochs=6)
    assert [round(step.at(e * 10), 6) for e in range(6)] == [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    cosine = _schedule(schedule="cosine", lr=0.1, epochs=10, final_lr_factor=0.0)
    assert math.isclose(cosine.at(0), 0.1) and cosine.at(99) < 1e-4
    assert math.isclose(cosine.at(50), 0.05)
    linear = _schedule(schedule="linear", lr=0.1, epochs=10, warmup_epochs=2, warmup_start_factor=0.1)
    ramp = [linear.at(s) for s in range(20)]
    assert ramp[0] == pytest.approx(0.1 * (0.1 + 0.9 / 20)) and ramp == sorted(ramp)
    assert linear.at(20) == pytest.approx(0.1) and linear.at(60) == pytest.approx(0.05)


def test_schedule_state_round_trips() -> None:
    s = _schedule(schedule="plateau", plateau_patience=1)
    s.end_epoch(0.5)
    s.end_epoch(0.6)
    t = _schedule(schedule="plateau", plateau_patience=1)
    t.load_state_dict(s.state_dict())
    assert t.at(0) == s.at(0) == pytest.approx(0.001)
