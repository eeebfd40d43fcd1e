"""``alexnet prepare SRC DEST``: the paper's preprocessing done once (§2), into a store.

Every image is decoded, its shorter side resized to ``size`` (256 in the paper), the central
``size`` x ``size`` patch kept as RGB uint8, and appended to ``DEST/<split>/images.u8``
(layout in ``alexnet.data.store``). The training split's statistics (mean image, channel
mean/std, RGB covariance and its PCA) are accumulated in the same pass.

- Parallel: chunks of images are decoded by a process pool (one process per core); the main
  process only appends the decoded chunks, in source order, and adds up the statistics.
- Resumable: every few seconds the written files are flushed and ``<split>/progress.npz``
  records how far the split got (with the running statistics); re-running the same command
  continues from there. A finished split is recorded in manifest.json with its checksums and
  a fingerprint of its source list and settings: re-running skips it (idempotent).
- Bad files never stop the run: each is skipped and listed in skipped.tsv with its reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from alexnet.data.images import DEFAULT_MAX_PIXELS, BadImageError, from_array, load_image
from alexnet.data.sources import Source, SplitItems, open_source, subset
from alexnet.data.stats import StatsAccumulator, compute_stats, save_stats
from alexnet.data.store import (
    FORMAT,
    MANIFEST,
    PROGRESS_FILE,
    SKIPPED_FILE,
    SPLIT_FILES,
    STATS_FILE,
    check_split_name,
    file_sha256,
    open_store,
    read_manifest_unchecked,
)
from alexnet.errors import AlexNetError
from alexnet.runtime.outputs import write_text, writes_into
from alexnet.runtime.provenance import VERSION

STATS_SPLIT = "train"  # §2: the mean "over the training set"
CHECKPOINT_SECONDS = 5.0


@dataclass(frozen=True)
class PrepareSettings:
    """What decides the pixels of a store; a store is only ever extended with equal settings."""

    size: int = 256  # §2: shorter side to 256, central 256x256 patch
    jpeg_draft: bool = True  # libjpeg's DCT downscaling before the resize (see images.py)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are skipped (decompression bombs)

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "jpeg_draft": self.jpeg_draft, "max_pixels": self.max_pixels,
                "resize": "shorter side to size (PIL bilinear, antialiased), centre crop"}


@dataclass
class SplitReport:
    split: str
    status: str  # "prepared", "resumed" or "already prepared"
    count: int  # images in the store
    skipped: list[tuple[str, str]]  # (path, reason)
    conversions: dict[str, int]  # what was converted to RGB, and how often
    seconds: float
    empty_classes: list[str] = field(default_factory=list)  # class folders with no image file


@dataclass
class PrepareReport:
    dest: Path
    source: str
    splits: dict[str, SplitReport] = field(default_factory=dict)
    stats: dict[str, Any] | None = None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [item for report in self.splits.values() for item in report.skipped]

    def summary(self, max_skipped: int = 10) -> str:
        lines = [f"store {self.dest} from {self.source}"]
        for r in self.splits.values():
            rate = f", {r.count / r.seconds:.0f} images/s" if r.status != "already prepared" and r.seconds > 0 else ""
            lines.append(f"  {r.split}: {r.count} images, {len(r.skipped)} skipped ({r.status}, "
                         f"{r.seconds:.1f} s{rate})")
            if r.conversions:
                converted = ", ".join(f"{k} {v}" for k, v in sorted(r.conversions.items()))
                lines.append(f"    converted: {converted}")
            if r.empty_classes:
                shown = ", ".join(r.empty_classes[:5]) + (" ..." if len(r.empty_classes) > 5 else "")
                lines.append(f"    warning: {len(r.empty_classes)} classes have no image in "
                             f"{r.split}: {shown} (empty folders, or no image files in them)")
        if self.stats is not None:
            mean = ", ".join(f"{v:.1f}" for v in self.stats["channel_mean"])
            eigval = ", ".join(f"{v:.1f}" for v in self.stats["pca_eigval"])
            lines.append(f"  stats over {self.stats['split']}: channel mean [{mean}], "
                         f"PCA eigenvalues [{eigval}]")
        skipped = self.skipped
        if skipped:
            lines.append(f"  {len(skipped)} files skipped (all in {self.dest / SKIPPED_FILE}):")
            lines += [f"    {path}: {reason}" for path, reason in skipped[:max_skipped]]
            if len(skipped) > max_skipped:
                lines.append(f"    ... and {len(skipped) - max_skipped} more")
        return "\n".join(lines)


@writes_into("dest")  # a full, read-only or unmakeable DEST: a one-line error
def prepare(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    size: int = 256,
    splits: list[str] | None = None,
    per_class: int | None = None,
    limit: int | None = None,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_draft: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    val_labels: str | os.PathLike[str] | None = None,
    devkit: str | os.PathLike[str] | None = None,
    class_names_file: str | os.PathLike[str] | None = None,
    download: bool = False,
    download_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
) -> PrepareReport:
    """Prepare ``src`` (folder or ``torchvision:NAME``) into the store ``dest``; see the module doc."""
    _check_positive(size=size, per_class=per_class, limit=limit, workers=workers,
                    max_pixels=max_pixels, chunk_size=chunk_size)
    settings = PrepareSettings(size, jpeg_draft, max_pixels)
    workers = workers or _available_cores()
    source = open_source(src, val_labels=val_labels, devkit=devkit,
                         class_names_file=class_names_file, download=download,
                         download_dir=download_dir, splits=splits)
    dest = Path(dest)
    for split in source.splits:
        check_split_name(split, str(src))
        if (dest / split).is_symlink():
            raise AlexNetError(f"{dest / split} is a link (to {os.readlink(dest / split)}); "
                               "prepare writes only inside DEST: remove the link or choose "
                               "another DEST")
    manifest = _start_manifest(dest, source, settings, overwrite)
    report = PrepareReport(dest, str(src))
    for split, all_items in source.splits.items():
        items = subset(all_items, per_class=per_class, limit=limit)
        selection = {"per_class": per_class, "limit": limit, "available": len(all_items)}
        fingerprint = _fingerprint(settings, items)
        done = manifest["splits"].get(split)
        if done is not None and done["fingerprint"] != fingerprint:
            raise AlexNetError(
                f"{dest / split} was prepared from a different file list or selection; use "
                "another DEST, the same options as before, or --overwrite to prepare it again"
            )
        empty = [source.classes[c] for c in np.flatnonzero(
            np.bincount(all_items.labels, minlength=len(source.classes)) == 0)]
        if done is not None:
            report.splits[split] = SplitReport(split, "already prepared", done["count"],
                                               _read_skipped(dest / split), done["conversions"],
                                               0.0, empty)
            continue
        writer = _SplitWriter(dest / split, settings, fingerprint, stats=split == STATS_SPLIT)
        split_report = writer.run(source, split, items, workers, chunk_size, progress)
        split_report.empty_classes = empty
        report.splits[split] = split_report
        manifest["splits"][split] = {
            "count": split_report.count, "skipped": len(split_report.skipped),
            "conversions": split_report.conversions, "selection": selection,
            "fingerprint": fingerprint, "seconds": round(split_report.seconds, 2),
            "sha256": {name: file_sha256(dest / split / name) for name in SPLIT_FILES},
        }
        _finish_manifest(dest, manifest)
        writer.forget_progress()  # only now: a kill before this re-finishes, never redecodes
    report.stats = _ensure_stats(dest, manifest)
    manifest["complete"] = True
    _finish_manifest(dest, manifest)
    _check_outcome(report, strict)
    return report


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise AlexNetError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fingerprint(settings: PrepareSettings, items: SplitItems) -> str:
    digest = hashlib.sha256(json.dumps(settings.as_dict(), sort_keys=True).encode())
    digest.update("\n".join(items.refs).encode())
    digest.update(items.labels.tobytes())
    if items.arrays is not None:
        digest.update(items.arrays.tobytes())
    return digest.hexdigest()


def _check_outcome(report: PrepareReport, strict: bool) -> None:
    skipped = report.skipped
    if sum(r.count for r in report.splits.values()) == 0:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise AlexNetError(f"no usable image in {report.source}: all {len(skipped)} files were "
                           f"skipped{first}; see {report.dest / SKIPPED_FILE}")
    if strict and skipped:
        raise AlexNetError(f"--strict: {len(skipped)} files could not be used (first: "
                           f"{skipped[0][0]}: {skipped[0][1]}); all are listed in "
                           f"{report.dest / SKIPPED_FILE}")


# ----------------------------------------------------------------------------- manifest


def _start_manifest(dest: Path, source: Source, settings: PrepareSettings, overwrite: bool
                    ) -> dict[str, Any]:
    """The manifest to extend: the store's own, or a fresh one written at once with
    ``"complete": false`` (readers refuse it until the last split is done), so an interrupted
    store is always recognised as one, never mistaken for an image folder."""
    fresh = {
        "format": FORMAT, "image_size": settings.size, "classes": source.classes,
        "class_names": source.class_names, "imagenet_indices": source.imagenet_indices,
        "source": {"kind": source.kind, "root": str(source.root.resolve()), **source.details},
        "settings": settings.as_dict(), "splits": {}, "stats": None, "skipped": 0,
        "complete": False, "created": _now(), "versions": _versions(),
    }
    if dest.exists() and not dest.is_dir():
        raise AlexNetError(f"DEST {dest} is a file; give a folder for the store")
    _check_ours(dest, overwrite)
    if overwrite:
        _remove_store(dest, list(source.splits))
    path = dest / MANIFEST
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        _finish_manifest(dest, fresh)
        return fresh
    old = read_manifest_unchecked(dest)
    if old["settings"] != fresh["settings"]:
        changed = [k for k in fresh["settings"] if old["settings"].get(k) != fresh["settings"][k]]
        was = ", ".join(f"{k}={old['settings'].get(k)}" for k in changed)
        raise AlexNetError(f"{dest} holds a store prepared with {was}; use another DEST or "
                           "--overwrite to replace it")
    if old["classes"] != fresh["classes"]:
        raise AlexNetError(f"{dest} holds a store with other classes ({len(old['classes'])} vs "
                           f"{len(fresh['classes'])}); use another DEST or --overwrite")
    old["class_names"], old["imagenet_indices"] = source.class_names, source.imagenet_indices
    if any(split not in old["splits"] for split in source.splits):
        old["complete"] = False  # a new split is being added
        _finish_manifest(dest, old)
    return old


# what prepare writes in DEST (and in each DEST/<split>/): anything else is not ours
_STORE_FILES = {MANIFEST, STATS_FILE, SKIPPED_FILE}


def _split_files() -> set[str]:
    return {*SPLIT_FILES, SKIPPED_FILE, PROGRESS_FILE, *_PARTIAL_FILES}


def _is_our_temp(name: str) -> bool:
    # ".progress.npz": the progress file's temporary name before 2026-12
    return (name.startswith(".") and name.endswith(".tmp")) or name == f".{PROGRESS_FILE}"


def _refuse_links(split_dir: Path) -> None:
    """prepare opens its split files for writing by name: a symlink among them would be
    written (or truncated) through, outside DEST."""
    for entry in split_dir.iterdir():
        if entry.is_symlink() and (entry.name in _split_files() or _is_our_temp(entry.name)):
            raise AlexNetError(f"{entry} is a link (to {os.readlink(entry)}); prepare writes only "
                               "inside DEST: remove the link or choose another DEST")


def _check_ours(dest: Path, overwrite: bool) -> None:
    """Refuse a non-empty DEST that is not a store (unless --overwrite): prepare would write
    over same-named files of someone else's (train/files.txt, stats.npz, ...)."""
    if not dest.is_dir() or (dest / MANIFEST).is_file() or overwrite:
        return
    foreign = []
    for entry in dest.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            foreign += [f"{entry.name}/{p.name}" for p in entry.iterdir()
                        if p.name not in _split_files() and not _is_our_temp(p.name)]
        elif entry.name not in _STORE_FILES and not _is_our_temp(entry.name):
            foreign.append(entry.name)
    if foreign:
        raise AlexNetError(f"DEST {dest} is not empty and is not an alexnet store (it holds "
                           f"{foreign[0]!r}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); "
                           "give a new or empty folder, or --overwrite to write the store there")


def _remove_store(dest: Path, splits: list[str]) -> None:
    """Delete what a store consists of (never anything else in DEST, never outside it)."""
    manifest_splits: list[str] = []
    if (dest / MANIFEST).is_file():
        try:
            manifest_splits = list(read_manifest_unchecked(dest)["splits"])  # names checked there
        except AlexNetError as error:
            if "plain folder name" in str(error):
                raise  # a manifest naming paths outside DEST: delete nothing
            # unreadable or foreign: only the splits this source names are removed
    for split in {*splits, *manifest_splits}:
        split_dir = dest / check_split_name(split, str(dest / MANIFEST))
        if split_dir.is_symlink() or not split_dir.is_dir():
            continue  # a link could lead out of DEST: never follow it to delete
        for name in _split_files():
            (split_dir / name).unlink(missing_ok=True)
    for name in _STORE_FILES:
        (dest / name).unlink(missing_ok=True)


def _finish_manifest(dest: Path, manifest: dict[str, Any]) -> None:
    skipped_lines = []
    for split in manifest["splits"]:
        skipped_lines += [f"{p}\t{r}\n" for p, r in _read_skipped(dest / split)]
    write_text(dest / SKIPPED_FILE, "".join(skipped_lines))
    manifest["skipped"] = len(skipped_lines)
    manifest["updated"] = _now()
    write_text(dest / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def _ensure_stats(dest: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """stats.npz of the training split (recomputed from the store if it went missing)."""
    if STATS_SPLIT not in manifest["splits"] or manifest["splits"][STATS_SPLIT]["count"] == 0:
        return None
    path = dest / STATS_FILE
    if not path.is_file():
        store = open_store(dest, STATS_SPLIT, unfinished_ok=True)
        save_stats(path, compute_stats(store.images), len(store))
    with np.load(path) as data:
        summary = {"split": STATS_SPLIT, "count": int(data["count"]),
                   "channel_mean": data["channel_mean"].tolist(),
                   "channel_std": data["channel_std"].tolist(),
                   "pca_eigval": data["pca_eigval"].tolist()}
    manifest["stats"] = {**summary, "sha256": file_sha256(path)}
    return summary


def _read_skipped(split_dir: Path) -> list[tuple[str, str]]:
    path = split_dir / SKIPPED_FILE
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import PIL

    return {"alexnet": VERSION, "pillow": PIL.__version__, "numpy": np.__version__}


# ----------------------------------------------------------------------------- one split

_PARTIAL_FILES = ("images.u8.partial", "labels.partial", "files.partial")


@dataclass
class _Chunk:
    start: int
    end: int
    refs: list[str]
    labels: np.ndarray
    arrays: np.ndarray | None


@dataclass
class _ChunkResult:
    start: int
    end: int
    images: np.ndarray  # uint8 (k, S, S, 3), the decodable ones
    labels: np.ndarray  # int64 (k,)
    refs: list[str]
    skipped: list[tuple[str, str]]
    conversions: Counter[str]
    stats: StatsAccumulator | None


@dataclass(frozen=True)
class _WorkerConfig:
    root: Path
    settings: PrepareSettings
    stats: bool


_worker_config: _WorkerConfig | None = None


def _init_worker(config: _WorkerConfig) -> None:
    global _worker_config
    _worker_config = config


def _init_pool_worker(config: _WorkerConfig, parent: int) -> None:
    """A pool worker dies with prepare: a parent killed with SIGKILL cannot shut its pool
    down, and orphaned workers (hundreds of MB each) would decode on for minutes."""
    _init_worker(config)
    if sys.platform.startswith("linux"):
        try:  # the kernel sends SIGKILL when the parent goes (prctl PR_SET_PDEATHSIG = 1)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            _watch_parent(parent)
    else:
        _watch_parent(parent)
    if os.getppid() != parent:  # the parent died before the hook was set
        os._exit(1)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _decode_chunk(chunk: _Chunk) -> _ChunkResult:
    """Runs in a worker process: decode a chunk; a bad file is skipped, never fatal."""
    config = _worker_config
    assert config is not None, "worker not initialised"
    size = config.settings.size
    images = np.empty((len(chunk.refs), size, size, 3), np.uint8)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    conversions: Counter[str] = Counter()
    for i, ref in enumerate(chunk.refs):
        notes: list[str] = []
        try:
            if chunk.arrays is not None:
                images[len(kept)] = from_array(chunk.arrays[i], size, notes)
            else:
                images[len(kept)] = load_image(
                    config.root / ref, size, max_pixels=config.settings.max_pixels,
                    jpeg_draft=config.settings.jpeg_draft, notes=notes)
        except BadImageError as error:
            skipped.append((ref, str(error)))
            continue
        except Exception as error:  # a decoder bug must not stop a day-long run either
            skipped.append((ref, f"unexpected {type(error).__name__}: {error}"))
            continue
        kept.append(i)
        conversions.update(notes)
    images = images[:len(kept)]
    stats = None
    if config.stats:
        stats = StatsAccumulator.empty(size)
        stats.add(images)
    return _ChunkResult(chunk.start, chunk.end, images, chunk.labels[kept],
                        [chunk.refs[i] for i in kept], skipped, conversions, stats)


class _SplitWriter:
    """Appends decoded chunks to one split's files; checkpoints and resumes."""

    def __init__(self, split_dir: Path, settings: PrepareSettings, fingerprint: str,
                 stats: bool) -> None:
        self.dir = split_dir
        self.settings = settings
        self.fingerprint = fingerprint
        self.with_stats = stats

    def run(self, source: Source, split: str, items: SplitItems, workers: int,
            chunk_size: int | None, progress: bool) -> SplitReport:
        self.dir.mkdir(parents=True, exist_ok=True)
        _refuse_links(self.dir)
        state = self._load_progress()
        status = "resumed" if state["next_item"] > 0 else "prepared"
        if state.get("finished"):  # killed after the split was whole, before the manifest said so
            stats = state.pop("stats_accumulator")
            return self._finish(split, state, stats, state["seconds"], "resumed")
        if state["next_item"] == 0:
            state["skipped"] = [list(x) for x in items.unusable]
        stats = state.pop("stats_accumulator")
        frame = self.settings.size ** 2 * 3
        start_time = time.perf_counter() - state["seconds"]
        chunk_size = chunk_size or max(8, min(64, len(items) // (4 * workers) or 1))
        config = _WorkerConfig(source.root, self.settings, self.with_stats)
        files = self._open_partials(state, frame)
        bar = tqdm(total=len(items), initial=state["next_item"], unit="img", desc=split,
                   disable=not progress, dynamic_ncols=True, smoothing=0.05)
        last_checkpoint = time.perf_counter()
        try:
            chunks = _chunks(items, state["next_item"], chunk_size)
            for result in _decode_in_parallel(chunks, config, workers):
                files["images"].write(result.images.tobytes())
                files["labels"].write(result.labels.astype(np.int64).tobytes())
                files["files"].write("".join(ref + "\n" for ref in result.refs).encode())
                if stats is not None and result.stats is not None:
                    stats.merge(result.stats)
                state["next_item"] = result.end
                state["written"] += len(result.refs)
                state["skipped"] += [list(x) for x in result.skipped]
                state["conversions"] = dict(Counter(state["conversions"]) + result.conversions)
                bar.update(result.end - result.start)
                if time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS:
                    state["seconds"] = time.perf_counter() - start_time
                    self._checkpoint(files, state, stats)
                    last_checkpoint = time.perf_counter()
        except BaseException:
            state["seconds"] = time.perf_counter() - start_time
            self._checkpoint(files, state, stats)
            raise
        finally:
            bar.close()
            for f in files.values():
                f.close()
        return self._finish(split, state, stats, time.perf_counter() - start_time, status)

    def _load_progress(self) -> dict[str, Any]:
        fresh: dict[str, Any] = {"fingerprint": self.fingerprint, "next_item": 0, "written": 0,
                                 "files_bytes": 0, "skipped": [], "conversions": {},
                                 "seconds": 0.0}
        fresh["stats_accumulator"] = StatsAccumulator.empty(self.settings.size) if self.with_stats else None
        path = self.dir / PROGRESS_FILE
        if not path.is_file():
            return fresh
        try:
            with np.load(path) as data:
                state = json.loads(str(data["state"]))
                if state.get("fingerprint") != self.fingerprint:
                    return fresh  # a different file list or settings: start the split again
                state["stats_accumulator"] = (StatsAccumulator.from_state(dict(data))
                                              if self.with_stats else None)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return fresh  # damaged (the write itself is atomic): prepare the split again
        return state

    def _open_partials(self, state: dict[str, Any], frame: int) -> dict[str, Any]:
        """Open the partial files, cut back to what the last checkpoint recorded."""
        lengths = {"images": state["written"] * frame, "labels": state["written"] * 8,
                   "files": state["files_bytes"]}
        files = {}
        for key, name in zip(lengths, _PARTIAL_FILES, strict=True):
            path = self.dir / name
            f = path.open("r+b" if path.exists() else "w+b")
            f.truncate(lengths[key])
            f.seek(lengths[key])
            files[key] = f
        return files

    def _checkpoint(self, files: dict[str, Any], state: dict[str, Any],
                    stats: StatsAccumulator | None) -> None:
        for f in files.values():
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())
        state["files_bytes"] = files["files"].tell() if not files["files"].closed else state["files_bytes"]
        self._save_progress(state, stats)

    def _save_progress(self, state: dict[str, Any], stats: StatsAccumulator | None) -> None:
        arrays = stats.state() if stats is not None else {}
        tmp = self.dir / f".{PROGRESS_FILE}.tmp"
        with tmp.open("wb") as f:
            np.savez(f, state=np.asarray(json.dumps(state)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.dir / PROGRESS_FILE)

    def _finish(self, split: str, state: dict[str, Any], stats: StatsAccumulator | None,
                seconds: float, status: str) -> SplitReport:
        """Turn the partial files into the split's files. Idempotent: progress.npz first
        records that the split is whole, so a kill anywhere in here is finished by a re-run
        (and progress.npz goes only once the manifest has the split: ``forget_progress``)."""
        if not state.get("finished"):
            for name in _PARTIAL_FILES:  # durable before the split is declared whole
                with (self.dir / name).open("rb") as f:
                    os.fsync(f.fileno())
            state["finished"] = True
            state["seconds"] = seconds
            self._save_progress(state, stats)
        if (self.dir / "labels.partial").is_file():
            labels = np.fromfile(self.dir / "labels.partial", dtype=np.int64)
            tmp = self.dir / ".labels.npy.tmp"
            with tmp.open("wb") as f:
                np.save(f, labels)
            tmp.replace(self.dir / "labels.npy")
            (self.dir / "labels.partial").unlink()
        for partial, final in (("files.partial", "files.txt"), ("images.u8.partial", "images.u8")):
            if (self.dir / partial).is_file():
                (self.dir / partial).replace(self.dir / final)
        skipped = [(str(p), str(r)) for p, r in state["skipped"]]
        write_text(self.dir / SKIPPED_FILE, "".join(f"{p}\t{r}\n" for p, r in skipped))
        if stats is not None and stats.count > 0:
            save_stats(self.dir.parent / STATS_FILE, stats.finish(), stats.count)
        return SplitReport(split, status, int(state["written"]), skipped,
                           dict(state["conversions"]), seconds)

    def forget_progress(self) -> None:
        (self.dir / PROGRESS_FILE).unlink(missing_ok=True)


def _chunks(items: SplitItems, start: int, chunk_size: int) -> Iterator[_Chunk]:
    for begin in range(start, len(items), chunk_size):
        end = min(begin + chunk_size, len(items))
        arrays = None if items.arrays is None else items.arrays[begin:end]
        yield _Chunk(begin, end, items.refs[begin:end], items.labels[begin:end], arrays)


def _decode_in_parallel(chunks: Iterator[_Chunk], config: _WorkerConfig, workers: int
                        ) -> Iterator[_ChunkResult]:
    """Decoded chunks in source order; at most 2 per worker in flight (bounded memory)."""
    if workers == 1:
        _init_worker(config)
        yield from map(_decode_chunk, chunks)
        return
    # fork where the platform has it: workers start at once and need only PIL and numpy
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_pool_worker,
                             initargs=(config, os.getpid())) as pool:
        pending: deque[Future[_ChunkResult]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(_decode_chunk, chunk))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
