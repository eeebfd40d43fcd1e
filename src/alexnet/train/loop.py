"""The training loop: ``train(config) -> TrainResult``, read top to bottom.

1. check the config and the data before any work; join the torchrun process group if any
2. build the model (fresh, fine-tuned from a checkpoint or torchvision's weights, or split
   over two devices as the paper's towers), the optimizer and the learning-rate schedule
3. resume from the run folder's newest valid checkpoint, unless ``fresh``
4. for each epoch: batches from the store, read and augmented (§4.1) ahead of the step by
   the loader -> forward / backward / SGD step (§5) -> logs;
   validation on the centre crop, a checkpoint, the plateau schedule's decision
5. the best weights as model.safetensors, summary.json, and a summary on the console

Randomness is a function of where the run is: the loader seeds each batch's augmentation
from (seed, epoch, batch, rank) and every step re-seeds torch's generator (dropout) from
(seed, rank, step), so a resumed run draws exactly the crops, flips, lighting and dropout
masks of an uninterrupted one, with no generator state to carry.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.augment import AugmentConfig, EvalTransform, TrainAugment
from alexnet.data.loader import StoreLoader
from alexnet.data.store import ImageStore
from alexnet.errors import AlexNetError
from alexnet.models import create_model
from alexnet.models.checkpoint import Checkpoint, read_checkpoint, unwrap
from alexnet.runtime import provenance
from alexnet.runtime.allocator import release_freed_memory, reuse_freed_memory
from alexnet.runtime.device import PRECISION_NAMES, autocast_dtype, configure_determinism
from alexnet.runtime.machine import cpu_precision_reason
from alexnet.runtime.outputs import writes_into
from alexnet.train import distributed as dist_utils
from alexnet.train.checkpointing import TrainingRun, load_matching_weights, starting_weights
from alexnet.train.config import TrainConfig
from alexnet.train.data import check_data_path, open_training_data
from alexnet.train.metrics import Console, MetricsLog, use_progress_bar
from alexnet.train.schedule import LearningRate, lighting_at, parameter_groups
from alexnet.train.step import TrainStep, load_optimizer_state, make_optimizer
from alexnet.train.towers import TowerParallelAlexNet2012, parse_devices

# Config fields that fix what a checkpoint is: resuming with other values would silently
# train something else, so they must match (the schedule and logging may change).
IDENTITY_FIELDS = ("model", "model_options", "data", "train_split", "crop_size", "batch_size",
                   "seed", "normalization", "scale_inputs", "towers_on_devices")


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # finished | stopped (signal) | max_steps
    epochs: int  # completed epochs
    steps: int
    seconds: float
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    weights: Path | None
    val: dict[str, float] | None  # centre crop of the best model: loss, top1_error, top5_error
    val_ten_crop: dict[str, float] | None
    train: dict[str, float] | None  # last epoch, on the augmented training views
    images_per_s: float
    data_wait_fraction: float
    summary_lines: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # the signal that stopped it: SIGINT (Ctrl-C) or SIGTERM

    def summary(self) -> str:
        return "\n".join(self.summary_lines)


@writes_into("config.out")  # a full, read-only or unmakeable run folder: a one-line error
def train(config: TrainConfig, *, fresh: bool = False, log: Callable[[str], None] | None = None,
          preset: str | None = None) -> TrainResult:
    """Train as ``config`` says, in ``config.out``; resumes from a checkpoint there unless
    ``fresh``. Works the same from a notebook and from ``alexnet train`` / torchrun.

    Process-wide side effect: glibc malloc keeps freed large blocks from here on (~2x faster
    alexnet2012 CPU steps, see alexnet/allocator.py; ``ALEXNET_MALLOC=system`` turns it off);
    the memory is handed back when training ends."""
    start_time = time.time()
    config.validate()
    reuse_freed_memory()
    device = dist_utils.rank_device(config.device)
    world = dist_utils.init_distributed(device)
    try:
        return _train(config, device, world, fresh, preset, start_time, log)
    finally:
        dist_utils.shutdown(world)
        release_freed_memory()


def _train(config: TrainConfig, device: torch.device, world: dist_utils.Distributed, fresh: bool,
           preset: str | None, start_time: float, log: Callable[[str], None] | None) -> TrainResult:
    main = world.is_main
    console = Console(use_progress_bar(config.progress), enabled=main)
    say = log or console.print
    say = say if main else (lambda _line: None)
    run = TrainingRun(config.out)
    if config.towers_on_devices is not None and world.enabled:
        raise AlexNetError("towers_on_devices (model parallelism) cannot be combined with torchrun "
                           "data parallelism in this implementation; use one or the other")

    # ---- 1. inputs checked, then resume or start over -------------------------------------
    run.check_ours()  # never write over (or, with --fresh, delete beside) files not ours
    tower_devices = _check_inputs(config)
    if tower_devices is not None:
        device = tower_devices[0]  # inputs start and logits end on the first tower's device
    resumed = None if fresh else run.newest_valid()
    if resumed is not None:
        _check_same_run(config, resumed[1], resumed[0])

    # ---- 2. data: prepared store (prepared here from an image folder if needed) ------------
    data = open_training_data(config, world, say)
    # read before --fresh clears the run: the weights may be this run's own best.pt
    start = None if resumed is not None else starting_weights(config.init_from, config.weights,
                                                              config.weights_file)
    # only now, with every input found and read: --fresh must not wipe a run for a mistake
    if fresh and main:
        run.clear()
    if resumed is not None and main:
        run.point_at(*resumed)
    dist_utils.barrier(world)
    train_store, val_store = data.train, data.val
    configure_determinism(config.deterministic, device)
    batch_per_rank = dist_utils.per_rank_batch(config.batch_size, world)
    augment_config = AugmentConfig(config.crop_size, config.flip, config.pca_lighting,
                                   config.normalization,
                                   resized_crop_scale=config.resized_crop_scale,
                                   lighting_units=config.lighting_units)
    augment = TrainAugment(train_store.stats, augment_config)
    center = EvalTransform.from_stats(train_store.stats, augment_config, "center")
    # One reader thread keeps up on a CPU (a batch is read and augmented in ~1/20 of a step),
    # more would only take cores from the step; on a GPU reading is all they do.
    threads = config.loader_workers or (1 if device.type == "cpu" else 4)
    # the loader augments each batch (§4.1): in its reader threads on a CPU, overlapped
    # with the step, and on the GPU after the copy; seeded by (seed, epoch, batch, rank)
    loader_options = {"rank": world.rank, "world_size": world.world_size, "device": device,
                      "threads": threads, "reuse_buffers": True}
    train_loader = StoreLoader(train_store, batch_per_rank, shuffle=True, seed=config.seed,
                               drop_last=True, transform=augment, **loader_options)
    if len(train_loader) == 0:
        raise AlexNetError(f"{train_store.root}/{train_store.split}: {len(train_store)} images "
                           f"make no full batch of {config.batch_size}; lower batch_size")
    val_loader = None
    if val_store is not None:
        val_loader = StoreLoader(val_store, max(1, config.val_batch_size // world.world_size),
                                 shuffle=False, transform=center, **loader_options)
    input_scale = data.input_scale  # 1 / pixel std when scale_inputs, else 1

    # ---- 3. the model, its starting weights, the optimizer -------------------------------
    model = _build_model(config, train_store, start, say)
    info = Checkpoint(config.model, _model_options(config, train_store), train_store.classes,
                      train_store.class_names, data.preprocess(augment))
    if tower_devices is not None:
        model = TowerParallelAlexNet2012(model, tower_devices)  # type: ignore[arg-type]
        say(f"towers: tower 1 on {tower_devices[0]}, tower 2 on {tower_devices[1]} (§3.2)")
    else:
        model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    steps_per_epoch = len(train_loader)
    schedule = LearningRate(config, steps_per_epoch)
    precision = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    step, epoch, best_error, best_epoch, epoch_totals = 0, 0, math.inf, 0, None
    if resumed is not None:
        path, checkpoint = resumed
        state = checkpoint["training"]
        unwrap(model).load_state_dict(checkpoint["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        train_loader.load_state_dict(state["loader"])
        step, epoch = int(state["step"]), int(state["epoch"])
        best_error, best_epoch = float(state["best_error"]), int(state["best_epoch"])
        epoch_totals = state.get("epoch_totals")
        _restore_rng(state.get("rng"))
        say(f"resuming {run.root} from {path.name}: epoch {epoch + 1}, step {step}")

    train_step = TrainStep(model, optimizer, scaler, precision, config.label_smoothing,
                           compile=config.compile, world=world, device=device)

    # ---- 4. logs, the config as run, stop requests ---------------------------------------
    if main:
        run.write_json(run.config, _config_record(config, preset, device, world))
    metrics = MetricsLog(run.metrics, run.tensorboard, step if resumed else None) if main else None
    stop = _StopRequests()
    if resumed is None:
        say(f"training {config.model} ({_describe(model)}) on {train_store.root}: "
            f"{len(train_store)} train / {len(val_store) if val_store else 0} val images, "
            f"{train_store.num_classes} classes; batch {config.batch_size} "
            f"({world.world_size} x {batch_per_rank}), {steps_per_epoch} steps an epoch, "
            f"{config.epochs} epochs; {device}, {_precision_name(precision)}"
            f"{', channels_last' if config.channels_last else ''}"
            f"{', compiled' if config.compile else ''}")
    if config.precision == "auto" and device.type == "cpu":
        say(f"precision: {cpu_precision_reason()}")  # chosen by what this CPU measures

    flat_loss = _FlatLossCheck(config.flat_loss_steps, train_store.num_classes, start_step=step)
    status = "finished"
    last_path: Path | None = run.last if run.last.exists() else None
    last_train: dict[str, float] | None = None
    run_images, run_train_seconds, run_wait = 0, 0.0, 0.0
    lr = schedule.at(max(step - 1, 0))  # the last step's, for an epoch resumed at its very end
    with stop.installed():
        # ---- 5. the epochs -----------------------------------------------------------------
        while epoch < config.epochs and status == "finished":
            train_loader.set_epoch(epoch)
            if config.lighting_epochs:  # the 2012 code's colour noise off in low-rate phases
                augment.set_lighting_std(lighting_at(config, epoch + 1))
            totals = _EpochTotals.from_state(epoch_totals, device, train_loader)
            epoch_totals = None
            console.start_epoch(epoch + 1, config.epochs, steps_per_epoch, train_loader.position)
            window = _Window(step, train_loader, time.perf_counter())
            model.train()
            for x, labels in train_loader:  # x: (B, 3, crop, crop) float, channels_last
                train_step.seed(config.seed, world.rank, step)  # dropout masks
                if input_scale != 1.0:
                    x.mul_(input_scale)
                lr = schedule.at(step)
                for group in optimizer.param_groups:
                    group["lr"] = schedule.group_lr(group, lr, step)
                loss, logits = train_step(x, labels)
                step += 1
                totals.add(loss, logits, labels)

                at_log = step % config.log_every_steps == 0 or train_loader.position == steps_per_epoch
                at_checkpoint = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
                at_max = config.max_steps and step >= config.max_steps
                # ranks agree on stopping at log steps (a collective syncs the GPU; not every step)
                stop_now = stop.requested is not None
                if world.enabled:
                    stop_now = at_log and dist_utils.any_rank(stop_now, world, device)
                if at_log or at_checkpoint or at_max or stop_now:
                    # syncs; a NaN/inf loss raises AlexNetError
                    window_loss, top1_error, top5_error = totals.window_metrics(world)
                    rates = window.close(step, config.batch_size)
                    if main and metrics is not None:
                        metrics.step(epoch=epoch + 1, step=step, loss=window_loss, lr=lr,
                                     train_top1_error=top1_error, train_top5_error=top5_error,
                                     images_per_s=rates[0], data_wait_fraction=rates[1],
                                     time=time.time() - start_time)
                    console.update(train_loader.position, f"loss {window_loss:.3f} lr {lr:.4g} "
                                   f"{rates[0]:.0f} img/s wait {rates[1]:.0%}")
                    warning = flat_loss.check(step, window_loss)
                    if warning:
                        say(warning)
                if at_checkpoint or at_max or stop_now:
                    last_path = _save(run, model, info, optimizer, schedule, scaler, train_loader,
                                      step, epoch, best_error, best_epoch, totals, config, world,
                                      best=False)
                if stop_now:
                    status = "stopped"
                    say(f"stopped by {stop.requested} at step {step}: checkpoint {last_path}; "
                        "run the same command again to resume")
                    break
                if at_max:
                    status = "max_steps"
                    break
            console.end_epoch()
            run_images += totals.images_seen() * world.world_size
            run_train_seconds += totals.seconds()
            run_wait += totals.wait_seconds()
            if status != "finished":
                break

            # ---- end of an epoch: validation, schedule, checkpoint, record ---------------
            epoch += 1
            val = None
            if val_loader is not None and (epoch % config.val_every_epochs == 0 or epoch == config.epochs):
                val = evaluate(unwrap(model), val_loader, input_scale, precision, world, device)
            reduced = schedule.end_epoch(val["top1_error"] if val else None)
            is_best = val is not None and val["top1_error"] < best_error
            if is_best:
                best_error, best_epoch = val["top1_error"], epoch  # type: ignore[index]
            last_train = totals.summary(world)
            record = {"epoch": epoch, "step": step, "lr": lr, "train_loss": last_train["loss"],
                      "train_top1_error": last_train["top1_error"],
                      "train_top5_error": last_train["top5_error"],
                      "val_loss": val and val["loss"], "val_top1_error": val and val["top1_error"],
                      "val_top5_error": val and val["top5_error"],
                      "images_per_s": last_train["images_per_s"],
                      "data_wait_fraction": last_train["data_wait_fraction"],
                      "time": time.time() - start_time, "lr_reduced": reduced}
            if main and metrics is not None:
                metrics.epoch(**record)
            say(_epoch_line(epoch, config.epochs, last_train, val, reduced, lr))
            last_path = _save(run, model, info, optimizer, schedule, scaler, train_loader, step,
                              epoch, best_error, best_epoch, None, config, world,
                              best=is_best or val_loader is None, epoch_record=record)

        # a stop that came during the last validation (the ranks agree on it)
        if status == "finished" and dist_utils.any_rank(stop.requested is not None, world, device):
            status = "stopped"
            say(f"stopped by {stop.requested or 'a signal to another rank'} after epoch "
                f"{epoch}: checkpoint {last_path}; run "
                "the same command again to finish (final scoring)")

    # ---- 6. the result: best weights, final scores, summary ------------------------------
    if metrics is not None:
        metrics.close()
    result = TrainResult(
        run_dir=run.root, status=status, epochs=epoch, steps=step,
        seconds=time.time() - start_time,
        best_checkpoint=run.best if run.best.exists() else None,
        last_checkpoint=last_path, weights=None, val=None, val_ten_crop=None, train=last_train,
        images_per_s=run_images / run_train_seconds if run_train_seconds else 0.0,
        data_wait_fraction=run_wait / run_train_seconds if run_train_seconds else 0.0,
        stopped_by=stop.requested if status == "stopped" else None,
    )
    if status == "finished" and result.best_checkpoint is not None:
        _finish(result, run, model, info, val_loader, center, input_scale, precision, world,
                device, config)
    dist_utils.barrier(world)
    if main:
        result.summary_lines = _summary_lines(result, run, best_epoch)
        run.write_json(run.summary, _summary_record(result, run, best_epoch))
    return result


# ---- the pieces the loop calls, in the order it calls them ---------------------------------


def _check_inputs(config: TrainConfig) -> list[torch.device] | None:
    """One-line errors for inputs that are missing here, before anything is read or
    removed; returns the towers' devices (or None)."""
    if not config.data.startswith("torchvision:"):
        check_data_path(Path(config.data))
    if config.init_from is not None and not Path(config.init_from).is_file():
        raise AlexNetError(f"init_from: no checkpoint at {config.init_from}; give the path of a "
                           ".pt checkpoint (or a run's checkpoints/best.pt)")
    if config.weights_file is not None and not Path(config.weights_file).is_file():
        raise AlexNetError(f"weights_file: {config.weights_file} not found; give the path of "
                           "torchvision's alexnet .pth file")
    if config.towers_on_devices is None:
        return None

    return parse_devices(config.towers_on_devices)


def _check_same_run(config: TrainConfig, checkpoint: dict[str, Any], path: Path) -> None:
    saved = checkpoint["training"].get("config", {})
    for name in IDENTITY_FIELDS:
        ours = getattr(config, name)
        theirs = saved.get(name, ours)
        if name == "data":
            ours, theirs = str(Path(ours).resolve()), str(Path(theirs).resolve())
        if ours != theirs:
            raise AlexNetError(f"{path} was trained with {name}={theirs!r}, not {ours!r}: resume "
                               "with the same settings, or start over with --fresh / another --out")


def _model_options(config: TrainConfig, store: ImageStore) -> dict[str, Any]:
    options = dict(config.model_options)
    given = options.get("num_classes")
    if given is not None and int(given) != store.num_classes:
        raise AlexNetError(f"model_options num_classes={given} but {store.root} has "
                           f"{store.num_classes} classes; leave num_classes out")
    options["num_classes"] = store.num_classes
    return options


def _build_model(config: TrainConfig, store: ImageStore,
                 start: tuple[dict[str, torch.Tensor], str] | None, say: Callable[[str], None]
                 ) -> nn.Module:
    """The model, initialised, with the matching ``start`` weights (fine-tuning) loaded."""
    torch.manual_seed(config.seed)  # the same initial weights on every rank and every run
    model = create_model(config.model, **_model_options(config, store))
    if start is not None:
        state, source = start
        loaded, fresh = load_matching_weights(model, state, source)
        say(f"starting weights from {source}: loaded {', '.join(loaded)}")
        if fresh:
            say(f"  not loaded (shape or name differs; freshly initialised): {', '.join(fresh)}")
    return model


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (§5). Weight decay on weights, not biases (cuda-convnet's wc applies to weights);
    ``layer_weight_decay`` overrides it by parameter-name prefix; biases may train faster."""
    named = getattr(model, "grouped_named_parameters", unwrap(model).named_parameters)
    param_groups = parameter_groups(named(), config)
    return make_optimizer(param_groups, config.update_rule, config.lr, config.momentum,
                          config.nesterov)


class _EpochTotals:
    """Running sums of one epoch, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        # loss sum, top-1 correct, top-5 correct, images; and the window since the last log
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        # since the last log line: loss sum, steps, top-1 correct, top-5 correct, images
        self.window = torch.zeros(5, dtype=torch.float64, device=device)
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        self.wait_before = 0.0
        self.loader: StoreLoader | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, device: torch.device,
                   loader: StoreLoader) -> _EpochTotals:
        totals = cls(device)
        totals.loader = loader
        if state is not None:
            totals.sums = state["sums"].to(device)
            totals.elapsed_before = float(state["seconds"])
            totals.wait_before = float(state["wait_seconds"])
        return totals

    def state_dict(self, loader: StoreLoader) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "seconds": self.seconds(),
                "wait_seconds": self.wait_before + loader.wait_seconds}

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices  # (B, k)
        hits = top == labels[:, None]
        count = self.sums.new_full((), len(labels))  # a fill kernel: no host-device sync
        top1, top5 = hits[:, 0].sum().double(), hits.any(dim=1).sum().double()
        self.sums += torch.stack([loss.double() * count, top1, top5, count])
        self.window += torch.stack([loss.double(), count.new_ones(()), top1, top5, count])

    def window_metrics(self, world: dist_utils.Distributed) -> tuple[float, float, float]:
        """Mean loss, top-1 and top-5 error since the last call, over all ranks (on the
        augmented training views); stops the run on a NaN / inf loss."""
        window = dist_utils.sum_over_ranks(self.window.clone(), world)
        self.window.zero_()
        loss, top1, top5 = (window[[0, 2, 3]] / window[[1, 4, 4]].clamp_min(1)).tolist()
        if not math.isfinite(loss):
            raise AlexNetError(
                f"the training loss became {loss}: stopped before writing a checkpoint of the "
                "diverged weights (the last good one is intact). Try a lower lr, a longer "
                "warmup_epochs, or precision=fp32 to rule out overflow")
        return loss, 1 - top1, 1 - top5

    def images_seen(self) -> int:
        return int(self.sums[3].item())

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def wait_seconds(self) -> float:
        return self.wait_before + (self.loader.wait_seconds if self.loader else 0.0)

    def summary(self, world: dist_utils.Distributed) -> dict[str, float]:
        sums = dist_utils.sum_over_ranks(self.sums, world)
        images = max(1.0, sums[3].item())
        seconds = self.seconds()
        return {"loss": sums[0].item() / images, "top1_error": 1 - sums[1].item() / images,
                "top5_error": 1 - sums[2].item() / images, "images_per_s": images / seconds,
                "data_wait_fraction": self.wait_seconds() / seconds if seconds else 0.0}


class _Window:
    """Images/s and the data-wait fraction between two log lines."""

    def __init__(self, step: int, loader: StoreLoader, now: float) -> None:
        self.step, self.loader, self.time, self.wait = step, loader, now, loader.wait_seconds

    def close(self, step: int, global_batch: int) -> tuple[float, float]:
        now, wait = time.perf_counter(), self.loader.wait_seconds
        seconds = max(now - self.time, 1e-9)
        rates = ((step - self.step) * global_batch / seconds, max(0.0, wait - self.wait) / seconds)
        self.step, self.time, self.wait = step, now, wait
        return rates


@torch.no_grad()
def evaluate(model: nn.Module, loader: StoreLoader, input_scale: float,
             precision: torch.dtype | None, world: dist_utils.Distributed, device: torch.device
             ) -> dict[str, float]:
    """Loss and top-1 / top-5 error over the loader's split (all ranks). The loader's
    transform cuts the views; with several a image (the paper's 10 patches) their softmax
    outputs are averaged (§4.1)."""
    was_training = model.training
    model.eval()
    views = getattr(loader.transform, "views_per_image", 1)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, images
    loader.set_epoch(0)
    for x, labels in loader:  # x: (B * views, 3, crop, crop)
        if len(labels) == 0:
            continue
        if input_scale != 1.0:
            x.mul_(input_scale)
        with torch.autocast(device.type, precision or torch.float32, enabled=precision is not None):
            logits = model(x).float()
        probabilities = logits.softmax(dim=1).view(len(labels), views, -1).mean(dim=1)  # (B, K)
        k = min(5, probabilities.shape[1])
        hits = probabilities.topk(k, dim=1).indices == labels[:, None]
        loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), labels, reduction="sum")
        sums += torch.stack([loss.double(), hits[:, 0].sum().double(), hits.any(1).sum().double(),
                             sums.new_full((), len(labels))])
    sums = dist_utils.sum_over_ranks(sums, world)
    model.train(was_training)
    images = max(1.0, sums[3].item())
    return {"loss": sums[0].item() / images, "top1_error": 1 - sums[1].item() / images,
            "top5_error": 1 - sums[2].item() / images}


def _save(run: TrainingRun, model: nn.Module, info: Checkpoint, optimizer: torch.optim.Optimizer,
          schedule: LearningRate, scaler: torch.amp.GradScaler, loader: StoreLoader, step: int,
          epoch: int, best_error: float, best_epoch: int, totals: _EpochTotals | None,
          config: TrainConfig, world: dist_utils.Distributed, best: bool,
          epoch_record: dict[str, Any] | None = None) -> Path | None:
    """Rank 0 writes; the others wait, so that nobody runs ahead of a checkpoint. A new best
    is also written as model.safetensors (weights only), so a stopped run has one too."""
    path = None
    if not all(bool(torch.isfinite(p).all()) for p in unwrap(model).parameters()):
        raise AlexNetError("the weights became nan/inf: stopped before writing a checkpoint of "
                           "them (the last good one is intact). Try a lower lr or a longer "
                           "warmup_epochs")
    if world.is_main:
        training = {
            "step": step, "epoch": epoch, "best_error": best_error, "best_epoch": best_epoch,
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(), "loader": loader.state_dict(),
            "epoch_totals": totals.state_dict(loader) if totals is not None else None,
            "rng": _rng_state(), "config": config.to_dict(),
            "metrics": epoch_record,  # the metrics.jsonl record of the epoch it ends, or None
        }
        path = run.save(model, info, training, step, config.keep_checkpoints, best)
        if best:
            run.save_weights(model, info)
    dist_utils.barrier(world)
    return run.last if path is not None else None


def _finish(result: TrainResult, run: TrainingRun, model: nn.Module, info: Checkpoint,
            val_loader: StoreLoader | None, center: EvalTransform, input_scale: float,
            precision: torch.dtype | None, world: dist_utils.Distributed, device: torch.device,
            config: TrainConfig) -> None:
    """Load the best weights, write model.safetensors, score them (centre and 10 crops)."""
    best = read_checkpoint(run.best)
    unwrap(model).load_state_dict(best["model"])
    if world.is_main:
        run.save_weights(model, info)
        result.weights = run.weights
    if val_loader is None:
        return
    result.val = evaluate(unwrap(model), val_loader, input_scale, precision, world, device)
    if config.ten_crop_final:
        ten_crop = EvalTransform(center.normalization, center.crop_size, "ten_crop")
        loader = StoreLoader(val_loader.store, val_loader.batch_size, shuffle=False,
                             rank=world.rank, world_size=world.world_size, device=device,
                             threads=val_loader.threads, transform=ten_crop)
        result.val_ten_crop = evaluate(unwrap(model), loader, input_scale, precision, world,
                                       device)


def _summary_lines(result: TrainResult, run: TrainingRun, best_epoch: int) -> list[str]:
    minutes = result.seconds / 60
    lines = [f"{result.status}: {result.epochs} epochs, {result.steps} steps in {minutes:.1f} min "
             f"({result.images_per_s:.0f} images/s, data wait {result.data_wait_fraction:.1%})"]
    if result.train:
        lines.append(f"train (last epoch, augmented): top-1 error {result.train['top1_error']:.1%}, "
                     f"top-5 error {result.train['top5_error']:.1%}")
    if result.val:
        lines.append(f"val (centre crop): top-1 error {result.val['top1_error']:.1%}, "
                     f"top-5 error {result.val['top5_error']:.1%}  (best epoch {best_epoch})")
    if result.val_ten_crop:
        lines.append(f"val (10 crops): top-1 error {result.val_ten_crop['top1_error']:.1%}, "
                     f"top-5 error {result.val_ten_crop['top5_error']:.1%}")
    lines.append(f"run folder: {run.root}")
    lines.append(f"  metrics: {run.metrics} (tensorboard --logdir {run.tensorboard})")
    if result.best_checkpoint or result.last_checkpoint:
        names = [str(p) for p in (result.best_checkpoint, result.last_checkpoint) if p]
        lines.append(f"  checkpoints: {', '.join(names)}")
    if result.weights:
        lines.append(f"  weights: {result.weights}")
    lines.append(f"  summary: {run.summary}")
    return lines


def _summary_record(result: TrainResult, run: TrainingRun, best_epoch: int) -> dict[str, Any]:
    return {
        "status": result.status, "epochs": result.epochs, "steps": result.steps,
        "seconds": round(result.seconds, 1), "images_per_s": result.images_per_s,
        "data_wait_fraction": result.data_wait_fraction, "best_epoch": best_epoch,
        "val_center": result.val, "val_ten_crop": result.val_ten_crop, "train": result.train,
        "paths": {"run": str(run.root), "config": str(run.config), "metrics": str(run.metrics),
                  "tensorboard": str(run.tensorboard),
                  "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
                  "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
                  "weights": str(result.weights) if result.weights else None},
    }


def _config_record(config: TrainConfig, preset: str | None, device: torch.device,
                   world: dist_utils.Distributed) -> dict[str, Any]:
    """config.json: every TrainConfig field at the top level, then how the run was made."""
    return {
        **config.to_dict(), "preset": preset, "device": str(device),
        "world_size": world.world_size, "versions": provenance.versions(),
        "machine": provenance.machine(), "git_commit": provenance.git_commit(),
        "command": " ".join(sys.argv),
    }


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any] | None) -> None:
    """Also re-seeded every step (see the module doc); restored for completeness."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class _FlatLossCheck:
    """After ``steps`` steps, a loss still at ln(classes) (a uniform guess) is reported once."""

    def __init__(self, steps: int, classes: int, start_step: int) -> None:
        self.steps, self.chance = steps, math.log(max(2, classes))
        self.done = steps == 0 or start_step >= steps

    def check(self, step: int, loss: float) -> str | None:
        if self.done or step < self.steps:
            return None
        self.done = True
        if loss < 0.97 * self.chance:
            return None
        return (f"warning: flat loss - after {step} steps the training loss is {loss:.3f}, no "
                f"better than a uniform guess over the classes (ln K = {self.chance:.3f}). Likely "
                "causes: the paper's init (init=paper: N(0, 0.01), biases 1) is known to stall - "
                "use init=kaiming; lr too high (dead ReLUs) or too low; inputs not normalised "
                "(scale_inputs); labels that do not match the images")


class _StopRequests:
    """SIGTERM / Ctrl-C set a flag; the loop checkpoints and returns at the next step.
    A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested: str | None = None

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextmanager
    def installed(self) -> Iterator[None]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be caught on the main thread (e.g. some notebooks)
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _epoch_line(epoch: int, epochs: int, train: dict[str, float], val: dict[str, float] | None,
                reduced: bool, lr: float) -> str:
    line = (f"epoch {epoch}/{epochs}: train loss {train['loss']:.3f}, top-1 error "
            f"{train['top1_error']:.1%}")
    if val:
        line += (f"; val loss {val['loss']:.3f}, top-1 error {val['top1_error']:.1%}, top-5 "
                 f"error {val['top5_error']:.1%}")
    line += (f"; lr {lr:.3g}; {train['images_per_s']:.0f} img/s, data wait "
             f"{train['data_wait_fraction']:.1%}")
    return line + (" - val error stopped improving: lr / 10 (§5)" if reduced else "")


def _describe(model: nn.Module) -> str:
    return f"{sum(p.numel() for p in unwrap(model).parameters()) / 1e6:.1f} M parameters"


def _precision_name(dtype: torch.dtype | None) -> str:
    return f"{PRECISION_NAMES[dtype]} autocast" if dtype is not None else "fp32"
