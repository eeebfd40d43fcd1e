"""``alexnet bench data``: this pipeline against the torchvision baseline, same cores, one run.

(a) baseline: torchvision ``ImageFolder`` on the original JPEGs with RandomResizedCrop(224),
    RandomHorizontalFlip, ToTensor, Normalize, in a ``DataLoader`` with ``workers`` processes;
(b) candidate: the prepared store, ``StoreLoader`` with ``workers`` reader threads, and the
    paper's ``TrainAugment`` (random crop + flip, PCA lighting, mean image) on the CPU, run
    inside the reader threads (``transform=``); (b') the same with per-channel normalisation
    instead of the mean image (what (a) normalises with).

All end at float (B, 3, 224, 224) batches ready for the model. Rounds alternate (a), (b), (b')
so that noise from the shared machine hits both; the median images/s of each and their ratio
are reported, with the peak memory (RSS of the process and its workers; "anon" leaves out
the store's file pages, which the OS can drop at any time) and the store's own read speed
from a cold and a warm page cache.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alexnet.data.augment import AugmentConfig, TrainAugment
from alexnet.data.loader import StoreLoader
from alexnet.data.prepare import prepare
from alexnet.data.store import ImageStore, open_store
from alexnet.errors import AlexNetError


@dataclass(frozen=True)
class DataBenchConfig:
    source: str = "../shared/data/imagenette"  # ImageFolder root with train/
    store: str = "runs/stores/imagenette-256"  # prepared from source (done first if missing)
    size: int = 256
    crop: int = 224
    batch_size: int = 128
    workers: int | None = None  # DataLoader processes = StoreLoader threads; default: cores
    batches: int = 20  # timed batches per round and method
    rounds: int = 3
    torch_threads: int = 1  # intra-op threads while (b) runs; its parallelism is the threads


@dataclass
class Phase:
    images_per_s: list[float] = field(default_factory=list)
    peak_rss: int = 0  # bytes, process + workers
    peak_anon: int = 0  # bytes, without file-backed pages (the memory-mapped store)

    @property
    def median(self) -> float:
        return statistics.median(self.images_per_s)

    def add(self, images_per_s: float, memory: _PeakMemory) -> None:
        self.images_per_s.append(images_per_s)
        self.peak_rss = max(self.peak_rss, memory.rss)
        self.peak_anon = max(self.peak_anon, memory.anon)


@dataclass
class DataBenchResult:
    config: DataBenchConfig
    workers: int
    phases: dict[str, Phase]  # "torchvision", "store mean_image", "store channel"
    store_images: int
    store_bytes: int
    read_cold: float  # images/s, reading the store only, after evicting it from the page cache
    read_warm: float
    load_average: tuple[float, float]  # 1-minute load before and after: others' work

    def ratio(self, name: str) -> float:
        return self.phases[name].median / self.phases["torchvision"].median

    def summary(self) -> str:
        c = self.config
        frame = c.size * c.size * 3
        mib = 1 << 20
        lines = [
            f"data benchmark: batch {c.batch_size}, crop {c.crop}, {self.workers} DataLoader "
            f"workers = StoreLoader threads, {c.batches} batches x {c.rounds} rounds, "
            f"{c.torch_threads} torch thread(s) in (b), torch {torch.__version__}, "
            f"{os.cpu_count()} cores, load average {self.load_average[0]:.1f} -> "
            f"{self.load_average[1]:.1f}",
        ]
        labels = {"torchvision": "(a) torchvision ImageFolder+DataLoader",
                  "store mean_image": "(b) store+StoreLoader+TrainAugment, mean image",
                  "store channel": "(b') the same, per-channel normalisation"}
        for name, phase in self.phases.items():
            runs = ", ".join(f"{v:.0f}" for v in phase.images_per_s)
            ratio = "" if name == "torchvision" else f"  ratio {self.ratio(name):.1f}x"
            lines.append(f"  {labels[name]:48s}: {phase.median:6.0f} images/s{ratio}  (rounds: "
                         f"{runs}; peak RSS {phase.peak_rss / mib:.0f} MiB, anon "
                         f"{phase.peak_anon / mib:.0f} MiB)")
        lines.append(
            f"  store: {self.store_images} images of {c.size}x{c.size}, "
            f"{self.store_bytes / mib:.0f} MiB on disk; reading only: "
            f"{self.read_cold:.0f} images/s cold ({self.read_cold * frame / mib:.0f} MiB/s), "
            f"{self.read_warm:.0f} images/s warm ({self.read_warm * frame / mib:.0f} MiB/s)")
        return "\n".join(lines)


def run_data_benchmark(config: DataBenchConfig, log: Callable[[str], None] = print
                       ) -> DataBenchResult:
    workers = config.workers or _cores()
    train_folder = Path(config.source) / "train"
    if not train_folder.is_dir():
        raise AlexNetError(f"{train_folder} not found: --source must hold train/<class>/<image>")
    store = _ensure_store(config, workers, log)
    load_before = os.getloadavg()[0]
    make_baseline = _torchvision_loader(train_folder, config, workers)
    # the augmentation runs in the reader threads, in parallel (StoreLoader transform=)
    loaders = {
        f"store {normalization}": StoreLoader(
            store, config.batch_size, shuffle=True, seed=0, drop_last=True, threads=workers,
            transform=TrainAugment(store.stats, AugmentConfig(crop_size=config.crop,
                                                              normalization=normalization)),
            reuse_buffers=True)
        for normalization in ("mean_image", "channel")
    }
    phases = {"torchvision": Phase(), **{name: Phase() for name in loaders}}
    for round_index in range(config.rounds):
        with _PeakMemory() as memory:
            phases["torchvision"].add(_time_batches(iter(make_baseline()), config.batches), memory)
        for name, loader in loaders.items():
            loader.set_epoch(round_index)
            with _PeakMemory() as memory, _torch_threads(config.torch_threads):
                phases[name].add(_time_batches(iter(loader), config.batches), memory)
        log(f"round {round_index + 1}/{config.rounds}: " + ", ".join(
            f"{name} {phase.images_per_s[-1]:.0f}" for name, phase in phases.items()) + " images/s")
    read_cold = _read_speed(store, config, workers, cold=True)
    read_warm = _read_speed(store, config, workers, cold=False)
    store_bytes = sum(f.stat().st_size for f in Path(config.store).rglob("*") if f.is_file())
    return DataBenchResult(config, workers, phases, len(store), store_bytes, read_cold,
                           read_warm, (load_before, os.getloadavg()[0]))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _ensure_store(config: DataBenchConfig, workers: int, log: Callable[[str], None]) -> ImageStore:
    if not (Path(config.store) / "manifest.json").is_file():
        log(f"preparing {config.source} train/ into {config.store} at {config.size} px "
            "(once; re-runs reuse it)")
    started = time.perf_counter()
    try:
        report = prepare(config.source, config.store, size=config.size, splits=["train"],
                         workers=workers, progress=True)
    except AlexNetError as error:  # prepare's advice names its own flags: say them as bench's
        text = str(error).replace("--overwrite", f"`alexnet prepare {config.source} {config.store} "
                                                 "--overwrite`")
        raise AlexNetError(text.replace("another DEST", "another --store").replace("DEST", "--store")) from error
    if report.splits["train"].status != "already prepared":
        log(f"prepared {report.splits['train'].count} images in "
            f"{time.perf_counter() - started:.0f} s")
    return open_store(config.store, "train")


def _torchvision_loader(folder: Path, config: DataBenchConfig, workers: int
                        ) -> Callable[[], torch.utils.data.DataLoader]:
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomResizedCrop(config.crop),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    dataset = datasets.ImageFolder(str(folder), transform=transform)

    def make() -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                                           num_workers=workers, drop_last=True)

    return make


def _time_batches(batches: Iterator, count: int) -> float:
    """Images/s over ``count`` batches, after one untimed batch (worker start-up, warm-up)."""
    first, _ = next(batches)
    assert first.dtype == torch.float32 and first.shape[1] == 3  # both end as model input
    images = 0
    started = time.perf_counter()
    for _ in range(count):
        out, _ = next(batches)
        images += out.shape[0]
    elapsed = time.perf_counter() - started
    del batches  # stops DataLoader workers / reader threads
    return images / elapsed


def _read_speed(store: ImageStore, config: DataBenchConfig, workers: int, cold: bool) -> float:
    """Images/s of StoreLoader alone over up to 5,000 images; ``cold`` evicts the file first."""
    count = min(len(store), 5000) // config.batch_size * config.batch_size
    if cold and hasattr(os, "posix_fadvise"):
        with open(store.root / store.split / "images.u8", "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # this file's pages only
    loader = StoreLoader(store, config.batch_size, shuffle=True, seed=123, threads=workers)
    started = time.perf_counter()
    seen = 0
    for images, _ in loader:
        seen += len(images)
        if seen >= count:
            break
    return seen / (time.perf_counter() - started)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block.

    One intra-op thread per reader thread: on a 2-core machine shared with other work,
    OpenMP's barriers stall whenever a team thread is descheduled (measured 833 images/s
    with 2 intra-op threads against 1,510 with 1, back to back)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class _PeakMemory:
    """Samples the RSS of this process and its children every 20 ms while in the block."""

    def __enter__(self) -> _PeakMemory:
        self.rss = self.anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss, anon = _tree_memory(os.getpid())
            self.rss, self.anon = max(self.rss, rss), max(self.anon, anon)
            self._stop.wait(0.02)


def _tree_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) in bytes of ``pid`` and all its descendants (Linux /proc)."""
    total = anon = 0
    for process in [pid, *_descendants(pid)]:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{process}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
    return total, anon


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found

