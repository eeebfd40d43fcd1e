"""The training loop: ``train(config) -> TrainResult``, read top to bottom.

1. check the config and the data before any work; join the torchrun process group if any
2. build the model (fresh, fine-tuned from a checkpoint or torchvision's weights, or split
   over two devices as the paper's towers), the optimizer and the learning-rate schedule
3. resume from the run folder's newest valid checkpoint (train/state.py), unless ``fresh``
4. for each epoch: batches from the store, read and augmented (§4.1) ahead of the step by
   the loader -> forward / backward / SGD step (§5) -> logs (train/metrics.py);
   validation on the centre crop by the scorer of ``alexnet evaluate``, a checkpoint, the
   plateau schedule's decision
5. the best weights as model.safetensors, summary.json, and a summary on the console

Randomness is a function of where the run is: the loader seeds each batch's augmentation
from (seed, epoch, batch, rank) and every step re-seeds torch's generator (dropout) from
(seed, rank, step), so a resumed run draws exactly the crops, flips, lighting and dropout
masks of an uninterrupted one, with no generator state to carry.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.data.augment import AugmentConfig, TrainAugment
from alexnet.data.loader import StoreLoader
from alexnet.data.store import ImageStore
from alexnet.errors import AlexNetError
from alexnet.evaluate.accuracy import split_totals
from alexnet.evaluate.scoring import LoadedModel, ScoringModel
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
from alexnet.train.data import TrainingData, check_data_path, open_training_data
from alexnet.train.metrics import (
    Console,
    EpochTotals,
    FlatLossCheck,
    LogWindow,
    MetricsLog,
    TrainResult,
    epoch_line,
    epoch_record,
    use_progress_bar,
)
from alexnet.train.schedule import LearningRate, lighting_at, parameter_groups
from alexnet.train.state import TrainState, check_same_run
from alexnet.train.step import TrainStep, make_optimizer
from alexnet.train.towers import TowerParallelAlexNet2012, parse_devices

__all__ = ["TrainResult", "run_training", "train", "validate"]


@writes_into("config.out")  # a full, read-only or unmakeable run folder: a one-line error
def train(config: TrainConfig, *, fresh: bool = False, log: Callable[[str], None] | None = None,
          preset: str | None = None) -> TrainResult:
    """Train as ``config`` says, in ``config.out``; resumes from a checkpoint there unless
    ``fresh``. Works the same from a notebook and from ``alexnet train`` / torchrun.

    Process-wide side effect: glibc malloc keeps freed large blocks from here on (~2x faster
    alexnet2012 CPU steps, see alexnet/runtime/allocator.py; ``ALEXNET_MALLOC=system`` turns
    it off); the memory is handed back when training ends."""
    start_time = time.time()
    config.validate()
    reuse_freed_memory()
    device = dist_utils.rank_device(config.device)
    world = dist_utils.init_distributed(device)
    try:
        return run_training(config, device, world, fresh=fresh, preset=preset,
                            start_time=start_time, log=log)
    finally:
        dist_utils.shutdown(world)
        release_freed_memory()


@dataclass
class _Run:
    """What the epochs of one run work with, built once by ``run_training``."""

    config: TrainConfig
    world: dist_utils.Distributed
    device: torch.device
    folder: TrainingRun
    say: Callable[[str], None]
    console: Console
    info: Checkpoint  # what a checkpoint says about the model: options, classes, preprocess
    augment: TrainAugment
    train_step: TrainStep
    state: TrainState
    val_loader: StoreLoader | None  # uint8 batches, scored by ``scorer`` as alexnet evaluate does
    scorer: ScoringModel
    input_scale: float  # 1 / pixel std when scale_inputs, else 1 (train/data.py)
    start_time: float
    stop: _StopRequests  # SIGTERM / Ctrl-C: checkpoint and return at the next step
    metrics: MetricsLog | None = None  # rank 0 only


def run_training(config: TrainConfig, device: torch.device, world: dist_utils.Distributed, *,
                 fresh: bool, preset: str | None, start_time: float,
                 log: Callable[[str], None] | None) -> TrainResult:
    """The loop of the module doc, once ``train`` has set up the process."""
    main = world.is_main
    console = Console(use_progress_bar(config.progress), enabled=main)
    say = (log or console.print) if main else (lambda _line: None)
    folder = TrainingRun(config.out)
    if config.towers_on_devices is not None and world.enabled:
        raise AlexNetError("towers_on_devices (model parallelism) cannot be combined with torchrun "
                           "data parallelism in this implementation; use one or the other")

    # ---- 1. inputs checked, then resume or start over -------------------------------------
    folder.check_ours()  # never write over (or, with --fresh, delete beside) files not ours
    tower_devices = _check_inputs(config)
    if tower_devices is not None:
        device = tower_devices[0]  # inputs start and logits end on the first tower's device
    resumed = None if fresh else folder.newest_valid()
    if resumed is not None:
        check_same_run(config, resumed[1], resumed[0])

    # ---- 2. data: prepared store (prepared here from an image folder if needed) ------------
    data = open_training_data(config, world, say)
    # read before --fresh clears the run: the weights may be this run's own best.pt
    start = None if resumed is not None else starting_weights(config.init_from, config.weights,
                                                              config.weights_file)
    # only now, with every input found and read: --fresh must not wipe a run for a mistake
    if fresh and main:
        folder.clear()
    if resumed is not None and main:
        folder.point_at(*resumed)
    dist_utils.barrier(world)
    configure_determinism(config.deterministic, device)
    augment = TrainAugment(data.train.stats, _augment_config(config))
    train_loader, val_loader = _loaders(config, data, augment, world, device)

    # ---- 3. the model, its starting weights, the optimizer, the state to resume ----------
    model = _build_model(config, data.train, start, say)
    info = Checkpoint(config.model, _model_options(config, data.train), data.train.classes,
                      data.train.class_names, data.preprocess(augment))
    model = _place(model, config, tower_devices, device, say)
    optimizer = _optimizer(model, config)
    precision = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    state = TrainState(model, optimizer, LearningRate(config, len(train_loader)), scaler,
                       train_loader)
    if resumed is not None:
        state.restore(resumed[1])
        say(f"resuming {folder.root} from {resumed[0].name}: epoch {state.epoch + 1}, "
            f"step {state.step}")
    train_step = TrainStep(model, optimizer, scaler, precision, config.label_smoothing,
                           compile=config.compile, world=world, device=device)
    scorer = ScoringModel(LoadedModel(unwrap(model), info, "validation"), device,
                          config.precision, in_place=True)
    run = _Run(config, world, device, folder, say, console, info, augment, train_step, state,
               val_loader, scorer, data.input_scale, start_time, _StopRequests())

    # ---- 4. logs, the config as run, stop requests ---------------------------------------
    if main:
        folder.write_json(folder.config, _config_record(config, preset, device, world))
        run.metrics = MetricsLog(folder.metrics, folder.tensorboard,
                                 state.step if resumed else None)
    if resumed is None:
        say(_start_line(config, model, data, train_loader, world, device, precision))
    if config.precision == "auto" and device.type == "cpu":
        say(f"precision: {cpu_precision_reason()}")  # chosen by what this CPU measures

    # ---- 5. the epochs ---------------------------------------------------------------------
    flat_loss = FlatLossCheck(config.flat_loss_steps, data.train.num_classes, state.step)
    status, last_train = "finished", None
    last_path: Path | None = folder.last if folder.last.exists() else None
    run_images, run_seconds, run_wait = 0, 0.0, 0.0
    with run.stop.installed():
        while state.epoch < config.epochs and status == "finished":
            totals = EpochTotals(device, train_loader, state.take_epoch_totals())
            status, last_path = _train_epoch(run, totals, flat_loss, last_path)
            images, seconds, wait = totals.this_invocation()
            run_images += images * world.world_size
            run_seconds += seconds
            run_wait += wait
            if status == "finished":
                last_train, last_path = _end_epoch(run, totals)
        # a stop that came during the last validation (the ranks agree on it)
        if status == "finished" and dist_utils.any_rank(run.stop.requested is not None, world,
                                                         device):
            status = "stopped"
            say(f"stopped by {run.stop.requested or 'a signal to another rank'} after epoch "
                f"{state.epoch}: checkpoint {last_path}; run "
                "the same command again to finish (final scoring)")

    # ---- 6. the result: best weights, final scores, summary ------------------------------
    if run.metrics is not None:
        run.metrics.close()
    result = TrainResult(
        run_dir=folder.root, status=status, epochs=state.epoch, steps=state.step,
        seconds=time.time() - start_time,
        best_checkpoint=folder.best if folder.best.exists() else None,
        last_checkpoint=last_path, weights=None, val=None, val_ten_crop=None, train=last_train,
        images_per_s=run_images / run_seconds if run_seconds else 0.0,
        data_wait_fraction=run_wait / run_seconds if run_seconds else 0.0,
        stopped_by=run.stop.requested if status == "stopped" else None,
        best_epoch=state.best_epoch, precision=PRECISION_NAMES[precision],
        images_trained=run_images,
    )
    if status == "finished" and result.best_checkpoint is not None:
        _finish(run, result)
    dist_utils.barrier(world)
    if main:
        result.summary_lines = result.lines(folder)
        folder.write_json(folder.summary, result.record(folder))
    return result


def _train_epoch(run: _Run, totals: EpochTotals, flat_loss: FlatLossCheck,
                 last_path: Path | None) -> tuple[str, Path | None]:
    """The steps of one epoch (or of its rest, when resumed midway): the status after it
    (finished, stopped, max_steps) and the newest checkpoint."""
    config, state, world, loader = run.config, run.state, run.world, run.state.loader
    steps_per_epoch = len(loader)
    loader.set_epoch(state.epoch)
    if config.lighting_epochs:  # the 2012 code's colour noise off in low-rate phases
        run.augment.set_lighting_std(lighting_at(config, state.epoch + 1))
    run.console.start_epoch(state.epoch + 1, config.epochs, steps_per_epoch, loader.position)
    window = LogWindow(state.step, loader)
    state.model.train()
    status = "finished"
    for x, labels in loader:  # x: (B, 3, crop, crop) float, channels_last
        run.train_step.seed(config.seed, world.rank, state.step)  # dropout masks
        if run.input_scale != 1.0:
            x.mul_(run.input_scale)
        lr = state.schedule.at(state.step)
        for group in state.optimizer.param_groups:
            group["lr"] = state.schedule.group_lr(group, lr, state.step)
        loss, logits = run.train_step(x, labels)
        state.step += 1
        totals.add(loss, logits, labels)

        step = state.step
        at_log = step % config.log_every_steps == 0 or loader.position == steps_per_epoch
        at_checkpoint = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
        at_max = config.max_steps and step >= config.max_steps
        # ranks agree on stopping at log steps (a collective syncs the GPU; not every step)
        stop_now = run.stop.requested is not None
        if world.enabled:
            stop_now = at_log and dist_utils.any_rank(stop_now, world, run.device)
        if at_log or at_checkpoint or at_max or stop_now:
            # syncs; a NaN/inf loss raises AlexNetError
            window_loss, top1_error, top5_error = totals.window_metrics(world)
            rates = window.close(step, config.batch_size)
            if run.metrics is not None:
                run.metrics.step(epoch=state.epoch + 1, step=step, loss=window_loss, lr=lr,
                                 train_top1_error=top1_error, train_top5_error=top5_error,
                                 images_per_s=rates[0], data_wait_fraction=rates[1],
                                 time=time.time() - run.start_time)
            run.console.update(loader.position, f"loss {window_loss:.3f} lr {lr:.4g} "
                               f"{rates[0]:.0f} img/s wait {rates[1]:.0%}")
            warning = flat_loss.check(step, window_loss)
            if warning:
                run.say(warning)
        if at_checkpoint or at_max or stop_now:
            last_path = state.save(run.folder, run.info, config, world, best=False,
                                   epoch_totals=totals.state_dict())
        if stop_now:
            status = "stopped"
            run.say(f"stopped by {run.stop.requested} at step {step}: checkpoint {last_path}; "
                    "run the same command again to resume")
            break
        if at_max:
            status = "max_steps"
            break
    run.console.end_epoch()
    return status, last_path


def _end_epoch(run: _Run, totals: EpochTotals) -> tuple[dict[str, float], Path | None]:
    """Validation, the schedule's decision, the epoch's record and a checkpoint; returns the
    epoch's training metrics and the checkpoint."""
    config, state = run.config, run.state
    lr = state.schedule.at(max(state.step - 1, 0))  # the epoch's last step's
    state.epoch += 1
    val = None
    if run.val_loader is not None and (state.epoch % config.val_every_epochs == 0
                                       or state.epoch == config.epochs):
        val = validate(run.scorer, run.val_loader, run.world)
    reduced = state.schedule.end_epoch(val["top1_error"] if val else None)
    is_best = val is not None and val["top1_error"] < state.best_error
    if is_best:
        state.best_error, state.best_epoch = val["top1_error"], state.epoch  # type: ignore[index]
    train_metrics = totals.summary(run.world)
    record = epoch_record(state.epoch, state.step, lr, train_metrics, val,
                          time.time() - run.start_time, reduced)
    if run.metrics is not None:
        run.metrics.epoch(**record)
    run.say(epoch_line(state.epoch, config.epochs, train_metrics, val, reduced, lr))
    last_path = state.save(run.folder, run.info, config, run.world,
                           best=is_best or run.val_loader is None, epoch_record=record)
    return train_metrics, last_path


def validate(scorer: ScoringModel, loader: StoreLoader, world: dist_utils.Distributed,
             views: str = "center") -> dict[str, float]:
    """Loss and top-1 / top-5 error over the loader's split (all ranks), scored exactly as
    ``alexnet evaluate`` scores the checkpoint: its preprocessing and views, the softmax
    averaged over the 10 patches of §4.1 when ``views`` is ten_crop."""
    model = scorer.model
    was_training = model.training
    model.eval()
    loader.set_epoch(0)
    sums = split_totals(scorer, loader, views).to(scorer.device)
    sums = dist_utils.sum_over_ranks(sums, world)
    model.train(was_training)
    images = max(1.0, sums[3].item())
    return {"loss": sums[0].item() / images, "top1_error": 1 - sums[1].item() / images,
            "top5_error": 1 - sums[2].item() / images}


def _finish(run: _Run, result: TrainResult) -> None:
    """Load the best weights, write model.safetensors, score them (centre and 10 crops)."""
    best = read_checkpoint(run.folder.best)
    unwrap(run.state.model).load_state_dict(best["model"])
    if run.world.is_main:
        run.folder.save_weights(run.state.model, run.info)
        result.weights = run.folder.weights
    if run.val_loader is None:
        return
    result.val = validate(run.scorer, run.val_loader, run.world)
    if run.config.ten_crop_final:
        result.val_ten_crop = validate(run.scorer, run.val_loader, run.world, "ten_crop")


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


def _augment_config(config: TrainConfig) -> AugmentConfig:
    return AugmentConfig(config.crop_size, config.flip, config.pca_lighting, config.normalization,
                         resized_crop_scale=config.resized_crop_scale,
                         lighting_units=config.lighting_units)


def _loaders(config: TrainConfig, data: TrainingData, augment: TrainAugment,
             world: dist_utils.Distributed, device: torch.device
             ) -> tuple[StoreLoader, StoreLoader | None]:
    """The training loader (augmenting each batch, §4.1: in its reader threads on a CPU,
    overlapped with the step, and on the GPU after the copy; seeded by (seed, epoch, batch,
    rank)) and the validation loader (uint8 batches for the scorer). Built once per run."""
    # One reader thread keeps up on a CPU (a batch is read and augmented in ~1/20 of a step),
    # more would only take cores from the step; on a GPU reading is all they do.
    threads = config.loader_workers or (1 if device.type == "cpu" else 4)
    options = {"rank": world.rank, "world_size": world.world_size, "device": device,
               "threads": threads, "reuse_buffers": True}
    train_loader = StoreLoader(data.train, dist_utils.per_rank_batch(config.batch_size, world),
                               shuffle=True, seed=config.seed, drop_last=True, transform=augment,
                               **options)
    if len(train_loader) == 0:
        raise AlexNetError(f"{data.train.root}/{data.train.split}: {len(data.train)} images "
                           f"make no full batch of {config.batch_size}; lower batch_size")
    val_loader = None
    if data.val is not None:
        val_loader = StoreLoader(data.val, max(1, config.val_batch_size // world.world_size),
                                 shuffle=False, **options)
    return train_loader, val_loader


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


def _place(model: nn.Module, config: TrainConfig, tower_devices: list[torch.device] | None,
           device: torch.device, say: Callable[[str], None]) -> nn.Module:
    """On the device, or split over two as the paper's towers (§3.2); channels_last if asked."""
    if tower_devices is not None:
        model = TowerParallelAlexNet2012(model, tower_devices)  # type: ignore[arg-type]
        say(f"towers: tower 1 on {tower_devices[0]}, tower 2 on {tower_devices[1]} (§3.2)")
    else:
        model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (§5). Weight decay on weights, not biases (cuda-convnet's wc applies to weights);
    ``layer_weight_decay`` overrides it by parameter or layer name; biases may train faster."""
    named = getattr(model, "grouped_named_parameters", unwrap(model).named_parameters)
    param_groups = parameter_groups(named(), config)
    return make_optimizer(param_groups, config.update_rule, config.lr, config.momentum,
                          config.nesterov)


def _start_line(config: TrainConfig, model: nn.Module, data: TrainingData, loader: StoreLoader,
                world: dist_utils.Distributed, device: torch.device,
                precision: torch.dtype | None) -> str:
    train, val = data.train, data.val
    parameters = sum(p.numel() for p in unwrap(model).parameters()) / 1e6
    precision_name = f"{PRECISION_NAMES[precision]} autocast" if precision is not None else "fp32"
    return (f"training {config.model} ({parameters:.1f} M parameters) on {train.root}: "
            f"{len(train)} train / {len(val) if val else 0} val images, "
            f"{train.num_classes} classes; batch {config.batch_size} "
            f"({world.world_size} x {loader.batch_size}), {len(loader)} steps an epoch, "
            f"{config.epochs} epochs; {device}, {precision_name}"
            f"{', channels_last' if config.channels_last else ''}"
            f"{', compiled' if config.compile else ''}")


def _config_record(config: TrainConfig, preset: str | None, device: torch.device,
                   world: dist_utils.Distributed) -> dict[str, Any]:
    """config.json: every TrainConfig field at the top level, then how the run was made."""
    return {
        **config.to_dict(), "preset": preset, "device": str(device),
        "world_size": world.world_size, "versions": provenance.versions(),
        "machine": provenance.machine(), "git_commit": provenance.git_commit(),
        "command": " ".join(sys.argv),
    }


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
