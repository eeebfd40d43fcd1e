"""What a training run does, as one typed dataclass, and the paper's setups as named presets.

``resolve_config("imagenette", lr=0.02)`` starts from ``TrainConfig``'s defaults, applies the
preset, then the overrides; unknown keys and wrong types raise a one-line ``AlexNetError``.
The CLI turns every field into a flag (``--lr 0.02``, ``--model-option width=0.5``), so
nothing here has to be repeated there. The resolved config is saved in every run folder
(config.json) and checkpoint, and ``TrainConfig.from_dict`` reads it back.

Batch size is GLOBAL: ``batch_size=128`` is the paper's 128 images per SGD step whether one
process or eight ``torchrun`` ranks share it (each rank then takes 128 / world_size).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.errors import AlexNetError, unknown_choice
from alexnet.models import check_input_size, list_models, model_options, parameter_names
from alexnet.runtime.device import PRECISIONS
from alexnet.runtime.run_folder import RunFolder

SCHEDULES = ("plateau", "step", "cosine", "linear", "epochs")
UPDATE_RULES = ("torch", "cuda_convnet")
LIGHTING_UNITS = ("fb_resnet", "cuda_convnet")
TRAIN_NORMALIZATIONS = ("mean_image", "channel")  # "imagenet" (data/augment.py) is for torchvision's weights


def _field(default: Any, help: str) -> Any:
    """A TrainConfig field with its help text, which ``alexnet train --help`` shows."""
    return field(default=default, metadata={"help": help})


def _help(text: str) -> dict[str, str]:
    """The metadata of a field with a mutable default: ``field(default_factory=..., metadata=_help(...))``."""
    return {"help": text}


@dataclass
class TrainConfig:
    # --- the network (§3): a registered model and its options -----------------------------
    model: str = _field("alexnet2012", "a registered model (alexnet info lists them)")
    model_options: dict[str, Any] = field(default_factory=lambda: {"init": "kaiming"}, metadata=_help("options of the model, e.g. width=0.5, init=paper, lrn=false"))

    # --- data (§2, §4.1) ------------------------------------------------------------------
    data: str = _field("", "a prepared store (alexnet prepare), or an image folder to prepare first")
    image_size: int = _field(256, "side of the stored images; an image folder is prepared at this size")
    store_dir: str = _field("runs/stores", "where an image folder given as data is prepared")
    train_split: str = _field("train", "the store split to train on")
    val_split: str = _field("val", "the store split to validate on (missing: no validation)")
    crop_size: int = _field(224, "random crops of this side for training, centre crop for validation")
    flip: bool = _field(True, "horizontal reflections (§4.1)")
    pca_lighting: float = _field(0.1, "std of the PCA colour alphas (§4.1); 0 turns it off")
    resized_crop_scale: float = _field(
        0.0, "> 0: random-resized crops covering this..1 of the image area (scale augmentation, "
        "not the paper's); 0: §4.1's fixed crop_size crops")
    lighting_units: str = _field(
        "fb_resnet", "units of the PCA lighting (docs/data.md): fb_resnet: eigvec @ (alpha * "
        "eigval / 255); cuda_convnet (convdata_jpeg.py): eigvec @ (alpha * sqrt(eigval)), "
        "view / (1 + std)")
    lighting_epochs: dict[str, float] = field(default_factory=dict, metadata=_help("EPOCH=STD: pca_lighting from that epoch on (the 2012 code's noise off late)"))
    normalization: str = _field("mean_image", "mean_image: subtract the per-pixel mean (§2); "
                                "channel: per-channel mean and std")
    scale_inputs: bool = _field(True, "also divide by the pixel std (units, see docs/training.md)")

    # --- optimisation (§5) ----------------------------------------------------------------
    epochs: int = _field(90, "epochs to train (§5: roughly 90)")
    batch_size: int = _field(128, "images per SGD step, global: summed over all ranks (§5: 128)")
    lr: float = _field(0.01, "the initial learning rate (§5: 0.01)")
    momentum: float = _field(0.9, "SGD momentum (§5: 0.9)")
    weight_decay: float = _field(5e-4, "L2 weight decay on the weights, not the biases (§5: 0.0005)")
    nesterov: bool = _field(False, "Nesterov momentum (not the paper's)")
    bias_lr_factor: float = _field(1.0, "biases train at this multiple of lr (cuda-convnet "
                                   "and Caffe: 2)")
    layer_weight_decay: dict[str, float] = field(default_factory=dict, metadata=_help("NAME=WD: the parameter or layer NAME (features.conv1.weight; a layer, features.conv1, includes its bias) at this weight decay; the longest matching name wins"))
    label_smoothing: float = _field(0.0, "not the paper's; 0 keeps its plain cross-entropy")
    bias_lr: float = _field(0.0, "> 0: biases train at this fixed rate whatever the schedule "
                            "(2012 code: epsB 0.02)")
    layer_lr_epochs: dict[str, float] = field(default_factory=dict, metadata=_help("NAME@EPOCH=LR: the layer or parameter NAME trains at LR from that epoch on "
        "(conv1 in 2012)"))
    update_rule: str = _field("torch", "torch: torch.optim.SGD; cuda_convnet: weights.cu's "
                              "inc = mom inc - lr (grad + wd w)")

    # --- learning-rate schedule -----------------------------------------------------------
    schedule: str = _field("plateau", "plateau (§5) | step | cosine | linear | epochs")
    warmup_epochs: float = _field(0.0, "linear ramp from lr * warmup_start_factor, before the "
                                  "schedule")
    warmup_start_factor: float = _field(0.1, "the warmup's first rate as a fraction of lr")
    lr_factor: float = _field(0.1, "plateau / step: multiply by this at a reduction (§5: 0.1)")
    lr_milestones: list[int] = field(default_factory=lambda: [30, 60], metadata=_help("step: reduce at these epochs"))
    lr_epochs: dict[str, float] = field(default_factory=dict, metadata=_help("epochs: EPOCH=LR, the rate from that epoch "
                                         "(1 = first) on"))
    plateau_patience: int = _field(5, "plateau: epochs without a better val error before "
                                   "reducing")
    plateau_threshold: float = _field(1e-3, "plateau: an improvement smaller than this is none")
    max_lr_reductions: int = _field(3, "plateau: the paper reduced three times")
    final_lr_factor: float = _field(0.0, "cosine / linear: lr at the end as a fraction of lr")

    # --- speed ----------------------------------------------------------------------------
    device: str = _field("auto", "auto: cuda when present, else cpu")
    precision: str = _field("auto", "auto: bf16 autocast on GPUs and AMX / AVX-512-bf16 CPUs, "
                            "else fp32")
    channels_last: bool = _field(True, "channels_last memory format (faster convolutions)")
    compile: bool = _field(False, "torch.compile the model (minutes of compile time on a CPU)")
    loader_workers: int = _field(0, "reader threads of the loader; 0: its default (1 on a "
                                 "CPU, 4 on a GPU)")
    val_batch_size: int = _field(256, "images per validation batch, over all ranks")

    # --- reproducibility ------------------------------------------------------------------
    seed: int = _field(0, "seeds the initial weights, the order, the augmentation and dropout")
    deterministic: bool = _field(False, "deterministic kernels; two runs give identical curves")

    # --- checkpoints, logs, stopping -------------------------------------------------------
    out: str = _field("runs/train", "the run folder: config, metrics, checkpoints, weights")
    checkpoint_every_steps: int = _field(0, "also every epoch; 0: only at epoch ends")
    keep_checkpoints: int = _field(3, "step-*.pt files kept (last.pt and best.pt always are)")
    log_every_steps: int = _field(10, "a metrics.jsonl step record every this many steps")
    val_every_epochs: int = _field(1, "validate every this many epochs (and after the last)")
    flat_loss_steps: int = _field(300, "warn when the loss has not dropped after this many "
                                  "steps; 0: never")
    ten_crop_final: bool = _field(False, "also score the final model on the paper's 10 "
                                  "patches (§4.1)")
    max_steps: int = _field(0, "stop after this many optimizer steps in total (0: run all "
                            "epochs)")
    progress: str = _field("auto", "auto: a bar on a terminal, plain lines otherwise / under "
                           "CI; bar; lines")

    # --- starting weights and model parallelism --------------------------------------------
    init_from: str | None = _field(None, "checkpoint to fine-tune from (the paper's \"1 CNN*\" "
                                   "row)")
    weights: str | None = _field(None, "\"torchvision\": start from IMAGENET1K_V1 (alexnet2014)")
    weights_file: str | None = _field(None, "local .pth for --weights torchvision (offline)")
    towers_on_devices: str | None = _field(None, "\"cuda:0,cuda:1\": one alexnet2012 tower "
                                           "each (§3.2)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from ``dataclasses.asdict`` output (config.json); unknown keys are errors."""
        return apply_overrides(cls(), values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """One-line errors for values no run can use, before any work is done."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise AlexNetError(f"{f.name} must be a finite number, got {value}")
        positive = ("epochs", "batch_size", "crop_size", "image_size", "log_every_steps",
                    "val_every_epochs", "val_batch_size", "keep_checkpoints")
        for name in positive:
            if not getattr(self, name) >= 1:  # "not >=": nan is refused too
                raise AlexNetError(f"{name} must be at least 1, got {getattr(self, name)}")
        non_negative = ("lr", "momentum", "weight_decay", "pca_lighting", "warmup_epochs",
                        "checkpoint_every_steps", "max_steps", "flat_loss_steps",
                        "plateau_patience", "max_lr_reductions", "loader_workers",
                        "final_lr_factor", "plateau_threshold")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise AlexNetError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise AlexNetError(f"lr must be a positive number, got {self.lr}")

        if not 0 <= self.resized_crop_scale <= 1:
            raise AlexNetError(f"resized_crop_scale must be in [0, 1] (0: the paper's fixed "
                               f"crops), got {self.resized_crop_scale}")
        if not 0 <= self.label_smoothing < 1:
            raise AlexNetError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.lr_factor < 1:
            raise AlexNetError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.crop_size > self.image_size:
            raise AlexNetError(f"crop_size {self.crop_size} is larger than image_size "
                               f"{self.image_size}; crops are cut from the stored images")
        for name, choices in (("schedule", SCHEDULES), ("normalization", TRAIN_NORMALIZATIONS),
                              ("precision", PRECISIONS), ("progress", ("auto", "bar", "lines"))):
            if getattr(self, name) not in choices:
                raise unknown_choice(name, getattr(self, name), choices)
        for name, choices in (("update_rule", UPDATE_RULES), ("lighting_units", LIGHTING_UNITS)):
            if getattr(self, name) not in choices:
                raise unknown_choice(name, getattr(self, name), choices)
        self._validate_2012_fields()
        if self.weights not in (None, "torchvision"):
            raise unknown_choice("weights", self.weights, ["torchvision"])
        if self.weights_file is not None and self.weights is None:
            raise AlexNetError("weights_file needs weights=torchvision (--weights torchvision)")
        if self.weights is not None and self.init_from is not None:
            raise AlexNetError("give either init_from (a checkpoint) or weights, not both")
        if self.weights == "torchvision" and self.model != "alexnet2014":
            raise AlexNetError(f"torchvision's weights are alexnet2014's; set model=alexnet2014 "
                               f"(got {self.model!r})")
        if not self.data:
            raise AlexNetError("no training data: pass --data STORE_OR_FOLDER (or a preset)")

        valid = model_options(self.model)  # also rejects an unknown model name
        unknown = sorted(set(self.model_options) - set(valid))
        if unknown:
            raise AlexNetError(f"unknown model option {unknown[0]!r} for {self.model}; "
                               f"valid: {', '.join(valid)}")
        if self.towers_on_devices is not None and self.model != "alexnet2012":
            raise AlexNetError("towers_on_devices splits alexnet2012's two towers (§3.2); "
                               f"model is {self.model!r}")
        # the network must take crop_size x crop_size inputs (pool5 needs a 3x3 map, §3.5)
        check_input_size(self.model, self.crop_size, what="crop_size", **self.model_options)
        self._check_name_prefixes()
        return self

    def _check_name_prefixes(self) -> None:
        """Each name of ``layer_weight_decay`` / ``layer_lr_epochs`` names a parameter or a
        layer of the model (a typo would otherwise train every layer alike, silently)."""
        prefixes = [("layer_weight_decay", p) for p in self.layer_weight_decay]
        prefixes += [("layer_lr_epochs", k.rpartition("@")[0]) for k in self.layer_lr_epochs]
        if not prefixes:
            return
        names = parameter_names(self.model, **self.model_options)
        for field_name, prefix in prefixes:
            if not any(names_match(name, prefix) for name in names):
                layers = sorted({name.rsplit(".", 1)[0] for name in names})
                raise AlexNetError(f"{field_name}: {prefix!r} names no parameter of {self.model}; "
                                   f"its layers: {', '.join(layers)}")

    def _validate_2012_fields(self) -> None:
        """The fields of the 2012 code's recipe (layer-params-145.cfg): epochs and rates."""
        if self.bias_lr < 0:
            raise AlexNetError(f"bias_lr must not be negative, got {self.bias_lr}")
        if self.schedule == "epochs" and not self.lr_epochs:
            raise AlexNetError("schedule 'epochs' needs lr_epochs (e.g. --lr-epochs 1=0.01,25=0.001)")
        for name, table in (("lr_epochs", self.lr_epochs), ("lighting_epochs", self.lighting_epochs)):
            for key, value in table.items():
                epoch_number(name, key)
                if value < 0:
                    raise AlexNetError(f"{name}[{key}] must not be negative, got {value}")
        for key, value in self.layer_lr_epochs.items():
            prefix, _, epoch = key.rpartition("@")
            if not prefix:
                raise AlexNetError(f"layer_lr_epochs key {key!r} is not NAME@EPOCH (e.g. "
                                   "features.conv1@72=0)")
            epoch_number("layer_lr_epochs", epoch)
            if value < 0:
                raise AlexNetError(f"layer_lr_epochs[{key}] must not be negative, got {value}")
        if self.lr_epochs and self.schedule != "epochs":
            # only schedule 'epochs' reads the table: a silent no-op would train at other rates
            raise AlexNetError(f"lr_epochs is read by schedule 'epochs' only, but schedule is "
                               f"{self.schedule!r}: add --schedule epochs, or clear it with "
                               "--lr-epochs ''")
        if self.update_rule == "cuda_convnet" and self.nesterov:
            raise AlexNetError("update_rule cuda_convnet is plain momentum (weights.cu); "
                               "set nesterov=false")


def names_match(parameter: str, prefix: str) -> bool:
    """``prefix`` names ``parameter`` or a module above it: whole dotted names only, so
    ``features.conv1`` matches ``features.conv1.weight`` but not ``features.conv10.weight``."""
    prefix = prefix.rstrip(".")
    return parameter == prefix or parameter.startswith(prefix + ".")


def epoch_number(name: str, key: str) -> int:
    """An epoch key of ``lr_epochs`` and friends as an int >= 1 (epochs count from 1)."""
    try:
        epoch = int(key)
    except ValueError:
        epoch = 0
    if epoch < 1:
        raise AlexNetError(f"{name}: {key!r} is not an epoch number (1 = the first epoch)")
    return epoch


@dataclass(frozen=True)
class Preset:
    """A named setup: what it reproduces, where its numbers come from, and its values."""

    description: str
    source: str
    values: dict[str, Any]


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "alexnet2012 on ImageNet with the 2012 recipe",
        "§4.1 (256px images, random 224 crops + flips, PCA lighting, mean image), §5 (SGD batch "
        "128, momentum 0.9, weight decay 5e-4, lr 0.01 / 10 when the validation error stops "
        "improving, three times, ~90 epochs). Changed: init 'kaiming' instead of §5's N(0, 0.01) "
        "with bias 1, which gives a flat loss (docs/training.md); init=paper restores it.",
        {"model": "alexnet2012", "model_options": {"init": "kaiming"}, "image_size": 256,
         "crop_size": 224, "epochs": 90, "batch_size": 128, "lr": 0.01, "momentum": 0.9,
         "weight_decay": 5e-4, "schedule": "plateau", "lr_factor": 0.1, "max_lr_reductions": 3,
         "normalization": "mean_image", "pca_lighting": 0.1, "ten_crop_final": True,
         "checkpoint_every_steps": 2000},
    ),
    "torchvision": Preset(
        "alexnet2014 with torchvision's reference classification recipe",
        "pytorch/vision references/classification (alexnet: 8 GPUs x 32 = batch 256, lr 0.01, "
        "momentum 0.9, weight decay 1e-4, StepLR every 30 epochs x0.1, 90 epochs, per-channel "
        "normalisation, PyTorch's default init). Differs: random 224 crops of the 256px store "
        "instead of RandomResizedCrop.",
        {"model": "alexnet2014", "model_options": {"init": "pytorch"}, "image_size": 256,
         "crop_size": 224, "epochs": 90, "batch_size": 256, "lr": 0.01, "momentum": 0.9,
         "weight_decay": 1e-4, "schedule": "step", "lr_milestones": [30, 60], "lr_factor": 0.1,
         "normalization": "channel", "pca_lighting": 0.0, "checkpoint_every_steps": 2000},
    ),
    "imagenette": Preset(
        "alexnet2012 and the paper's recipe on Imagenette, sized for ~10 minutes on 2 CPU cores",
        "the paper's network and §4.1 augmentation (crops, flips, PCA lighting, mean image) and "
        "§5 optimiser (SGD, momentum 0.9, weight decay 5e-4); scaled down: 128px images with "
        "112px crops, a linear warmup and linear decay instead of / 10 on plateaus, kaiming "
        "init but §5's N(0, 0.01) for conv1 (smooth Fig. 3 kernels, docs/models.md). "
        "Measured: docs/training.md.",
        {"model": "alexnet2012", "model_options": {"init": "kaiming", "conv1_init_std": 0.01},
         "data": "../shared/data/imagenette", "image_size": 128, "crop_size": 112,
         "epochs": 12, "batch_size": 128, "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4,
         "schedule": "linear", "warmup_epochs": 2.0, "normalization": "mean_image",
         "pca_lighting": 0.1, "val_every_epochs": 2, "out": "runs/imagenette"},
    ),
    "imagenette-full": Preset(
        "alexnet2012 trained to convergence on Imagenette, for the accuracy benchmark",
        "the paper's network and recipe (§4.1, §5) at the paper's 256px / 224px crops, 10-crop "
        "scoring at the end (§4.1); changed for a dataset 1% of ImageNet's size, on which the "
        "paper's augmentation let the network memorise its training set (81.5% with it, "
        "docs/training.md): torchvision's random-resized crops (scale 0.08-1) instead of fixed "
        "224 crops, label smoothing 0.1, warmup + cosine decay over 70 epochs instead of / 10 "
        "on plateaus, kaiming init.",
        {"model": "alexnet2012", "model_options": {"init": "kaiming"},
         "data": "../shared/data/imagenette", "image_size": 256, "crop_size": 224,
         "resized_crop_scale": 0.08, "label_smoothing": 0.1,
         "epochs": 70, "batch_size": 128, "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4,
         "schedule": "cosine", "warmup_epochs": 3.0, "normalization": "mean_image",
         "pca_lighting": 0.1, "ten_crop_final": True, "val_every_epochs": 5,
         "out": "runs/imagenette-full"},
    ),
    "original2012": Preset(
        "alexnet2012 exactly as the 2012 code built and trained it, on any store (--data)",
        "computerhistory/AlexNet-Source-Code. layers/layers-145.cfg: LRN1 before conv1's ReLU, "
        "the same-map norm cnorm2 after rnorm2, conv1 unpadded with the output size rounded up, "
        "init std 0.01 (0.03 for conv3-5) and its biases. layers/layer-params-145.cfg as its log "
        "says: epsW 0.01, 1e-3 from epoch 25, 1e-4 from 51, 1e-5 from 79; conv1 1e-5 from 67 and "
        "0 from 72; the restart at 1e-3 from 91, 1e-4 from 107, 1e-5 from 124, killed at 135; "
        "epsB 0.02 throughout; wc 5e-4 (weights only); momentum 0.9; batch 128 (convnet.py). "
        "src/weights.cu's update rule; convdata_jpeg.py's colour noise (0.1 x sqrt(eigenvalue), "
        "view / 1.1), off from epoch 67 and from 124, back on from 91; raw 0..255 pixels minus "
        "the mean image; the 10-patch score at the end. What is not copied: docs/models.md.",
        {"model": "alexnet2012",
         "model_options": {"init": "original2012", "lrn1_before_relu": True,
                           "same_map_norm2": True, "conv1_ceil_padding": True},
         "image_size": 256, "crop_size": 224, "flip": True, "normalization": "mean_image",
         "scale_inputs": False, "pca_lighting": 0.1, "lighting_units": "cuda_convnet",
         "lighting_epochs": {"67": 0.0, "91": 0.1, "124": 0.0},
         "epochs": 134, "batch_size": 128, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
         "update_rule": "cuda_convnet", "bias_lr": 0.02, "schedule": "epochs",
         "lr_epochs": {"1": 0.01, "25": 1e-3, "51": 1e-4, "79": 1e-5, "91": 1e-3, "107": 1e-4,
                       "124": 1e-5},
         "layer_lr_epochs": {"features.conv1.weight@67": 1e-5, "features.conv1@72": 0.0},
         "ten_crop_final": True, "checkpoint_every_steps": 2000, "out": "runs/original2012"},
    ),
    "cifar10-18pct": Preset(
        "Krizhevsky's cuda-convnet CIFAR-10 net and recipe (18% test error)",
        "cuda-convnet example-layers/layers-18pct.cfg + layer-params-18pct.cfg: batch 128, "
        "epsW 0.001 (biases 0.002), momentum 0.9, weight decay 0.004 (fc10: 1), 120 epochs then "
        "x0.1 for 10 and x0.1 for 10 more, no augmentation, mean image subtracted from raw "
        "0..255 pixels, its init (initW). cuda-convnet averages the gradient over the batch "
        "(eps / numCases), so its eps is PyTorch's lr.",
        {"model": "cifar_18pct", "model_options": {"init": "paper"},
         "data": "../shared/data/cifar10", "image_size": 32, "crop_size": 32,
         "val_split": "test", "flip": False, "pca_lighting": 0.0, "normalization": "mean_image",
         "scale_inputs": False, "epochs": 140, "batch_size": 128, "lr": 0.001,
         "bias_lr_factor": 2.0, "momentum": 0.9, "weight_decay": 0.004,
         "layer_weight_decay": {"classifier.fc10.weight": 1.0}, "schedule": "step",
         "lr_milestones": [120, 130], "lr_factor": 0.1, "out": "runs/cifar10-18pct"},
    ),
}


def resume_config(run_dir: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None,
                  *, fresh: bool = False) -> tuple[TrainConfig, str | None]:
    """What ``alexnet train --resume RUN_DIR`` continues: the config the run folder was
    trained with (its config.json), ``overrides`` applied, ``out`` the folder; and its preset."""
    if fresh:
        raise AlexNetError("--resume and --fresh contradict each other; give one")
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise AlexNetError(f"{run_dir} is not a run folder ({folder.config} missing)")
    record = folder.read_config()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = apply_overrides(TrainConfig(), {k: v for k, v in record.items() if k in names})
    config = apply_overrides(config, {**(overrides or {}), "out": str(run_dir)})
    return config.validate(), record.get("preset")


def resolve_config(preset: str | None = None, overrides: Mapping[str, Any] | None = None,
                   **more: Any) -> TrainConfig:
    """Defaults, then ``preset``'s values, then ``overrides`` / keyword overrides, validated."""
    config = TrainConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise unknown_choice("preset", preset, PRESETS)
        config = apply_overrides(config, PRESETS[preset].values)
    config = apply_overrides(config, {**(overrides or {}), **more})
    return config.validate()


def apply_overrides(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with ``values`` set, each checked against the field's type.

    Strings are parsed (``"0.02"`` for a float, ``"true"`` for a bool), so CLI text and
    Python values go through the same door. ``model_options`` is merged key by key.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields:
            close = [f for f in fields if f.startswith(name[:3])]
            hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
            raise AlexNetError(f"unknown config key {name!r}{hint}; see alexnet train --help")
        changes[name] = coerce(name, value, hints[name])
    if "model_options" in changes and "model" not in changes:
        changes["model_options"] = {**config.model_options, **changes["model_options"]}
    elif "model" in changes and "model_options" not in changes and changes["model"] in list_models():
        # another model keeps the options it also takes (init), not those only the old one
        # had (the imagenette preset's conv1_init_std for --model alexnet2014 is dropped)
        valid = model_options(changes["model"])
        changes["model_options"] = {k: v for k, v in config.model_options.items() if k in valid}
    return dataclasses.replace(config, **changes)


def coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as type ``kind`` (int, float, bool, str, X | None, dict[str, X])."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(name, value, options[0])
    if origin is list:
        item_kind = typing.get_args(kind)[0]
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, list | tuple):
            raise AlexNetError(f"{name} must be a list (e.g. 30,60), got {value!r}")
        return [coerce(f"{name}[{i}]", v, item_kind) for i, v in enumerate(value)]
    if origin is dict:
        if isinstance(value, str):  # CLI text: KEY=VALUE,KEY=VALUE
            pairs = [p for p in value.replace(" ", "").split(",") if p]
            if not all("=" in p for p in pairs):
                raise AlexNetError(f"{name} must be KEY=VALUE pairs (e.g. 1=0.01,25=0.001), got "
                                   f"{value!r}")
            value = dict(p.split("=", 1) for p in pairs)
        if not isinstance(value, Mapping):
            raise AlexNetError(f"{name} must be a mapping of KEY=VALUE, got {value!r}")
        value_kind = typing.get_args(kind)[1]
        return {str(k): v if value_kind is Any else coerce(f"{name}.{k}", v, value_kind)
                for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str | Path):
            return str(value)
    else:
        raise TypeError(f"config field {name} has an unsupported type {kind}")
    raise AlexNetError(f"{name} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def describe_presets() -> str:
    """``name: description`` lines, for --help."""
    return "\n".join(f"  {name}: {preset.description}" for name, preset in PRESETS.items())
