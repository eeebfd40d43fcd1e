"""StoreLoader: determinism, DDP sharding (each sample once), mid-epoch resume, read-ahead."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data.augment import AugmentConfig, TrainAugment
from alexnet.data.loader import StoreLoader
from alexnet.data.store import ImageStore
from alexnet.errors import AlexNetError
from data_helpers import fake_stats


def memory_store(count: int, size: int = 4) -> ImageStore:
    """An ImageStore over an in-memory array; image i is filled with i % 256, label i % 7."""
    images = np.broadcast_to((np.arange(count) % 256).astype(np.uint8)[:, None, None, None],
                             (count, size, size, 3)).copy()
    labels = (np.arange(count) % 7).astype(np.int64)
    return ImageStore(Path("memory"), "train", images, labels,
                      {"classes": [str(i) for i in range(7)], "class_names": [], "source": {}})


def consume(loader: StoreLoader) -> list[np.ndarray]:
    return [labels_and_ids(images)[1] for images, _ in loader]


def labels_and_ids(images: torch.Tensor) -> tuple[None, np.ndarray]:
    return None, images[:, 0, 0, 0].numpy().astype(np.int64)


def test_batches_hold_the_right_images_and_labels() -> None:
    store = memory_store(50)
    loader = StoreLoader(store, 8, shuffle=True, seed=1)
    seen = []
    for images, labels in loader:
        ids = images[:, 0, 0, 0].long()
        assert images.dtype == torch.uint8 and images.shape[1:] == (4, 4, 3)
        assert labels.dtype == torch.int64 and torch.equal(labels, ids % 7)
        assert torch.equal(ids, ids.sort().values)  # sorted within the batch
        seen += ids.tolist()
    assert sorted(seen) == list(range(50)) and len(loader) == 7


def test_order_depends_only_on_seed_and_epoch() -> None:
    store = memory_store(40)
    first = consume(StoreLoader(store, 8, seed=3))
    again = consume(StoreLoader(store, 8, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    loader = StoreLoader(store, 8, seed=3)
    loader.set_epoch(1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, consume(loader), strict=True))
    plain = consume(StoreLoader(store, 8, shuffle=False))
    assert np.array_equal(np.concatenate(plain), np.arange(40))


@pytest.mark.parametrize(("count", "batch", "world"), [(50, 4, 3), (48, 4, 3), (7, 4, 3),
                                                       (101, 8, 4), (5, 2, 1)])
def test_ddp_shards_cover_each_sample_exactly_once(count: int, batch: int, world: int) -> None:
    store = memory_store(count)
    loaders = [StoreLoader(store, batch, seed=9, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 1):
        per_rank = [loader.batches(epoch) for loader in loaders]
        assert len({len(b) for b in per_rank}) == 1  # every rank runs the same number of steps
        assert all(len(b) == len(loaders[0]) for b in per_rank)
        everything = np.concatenate([np.concatenate(b) for b in per_rank])
        assert np.array_equal(np.sort(everything), np.arange(count))


def test_ddp_drop_last_gives_equal_full_batches() -> None:
    store = memory_store(50)
    loaders = [StoreLoader(store, 4, seed=2, rank=r, world_size=3, drop_last=True) for r in range(3)]
    per_rank = [loader.batches(0) for loader in loaders]
    assert all(len(b) == 4 for batches in per_rank for b in batches) and len(loaders[0]) == 4
    everything = np.concatenate([np.concatenate(b) for b in per_rank])
    assert len(np.unique(everything)) == 48  # the remainder of 2 waits for another epoch
    with pytest.raises(AlexNetError, match="fewer than one batch"):
        StoreLoader(memory_store(5), 4, world_size=2, drop_last=True)


def test_resume_mid_epoch_continues_with_the_next_batch() -> None:
    store = memory_store(60)
    reference = StoreLoader(store, 8, seed=4)
    reference.set_epoch(2)
    full_epoch = consume(reference)
    assert reference.state_dict()["epoch"] == 3 and reference.state_dict()["position"] == 0

    loader = StoreLoader(store, 8, seed=4)
    loader.set_epoch(2)
    taken = []
    for images, _ in loader:
        taken.append(labels_and_ids(images)[1])
        if len(taken) == 3:
            break  # e.g. the job was killed after a checkpoint at step 3
    state = loader.state_dict()
    assert state["epoch"] == 2 and state["position"] == 3

    resumed = StoreLoader(store, 8, seed=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the trainer's usual call keeps the resumed position
    rest = consume(resumed)
    assert all(np.array_equal(a, b) for a, b in zip(taken + rest, full_epoch, strict=True))
    assert resumed.epoch == 3 and len(rest) == len(full_epoch) - 3
    with pytest.raises(AlexNetError, match="batch_size was 8"):
        StoreLoader(store, 16, seed=4).load_state_dict(state)


class SlowStore(ImageStore):
    """Records which thread reads which batch, and when; each read takes 20 ms."""

    log: list[tuple[str, float, int]]

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        self.log.append(("read", time.perf_counter(), threading.get_ident()))
        time.sleep(0.02)
        return super().read(indices, out)


def test_reading_runs_ahead_in_background_threads() -> None:
    base = memory_store(64)
    store = SlowStore(base.root, base.split, base.images, base.labels, base.manifest)
    store.log = []
    loader = StoreLoader(store, 8, prefetch=3, threads=2)
    main_thread = threading.get_ident()
    got: list[float] = []
    started = time.perf_counter()
    for _batch in loader:
        got.append(time.perf_counter())
        time.sleep(0.3 if len(got) == 1 else 0.05)  # "training" on the batch
    assert len(got) == 8
    assert all(thread != main_thread for _, _, thread in store.log)
    reads = [t for _, t, _ in store.log]
    # while the consumer trained on batch 0 (300 ms), reads 1..4 (20 ms each) started
    assert sum(t < got[1] - 0.01 for t in reads) >= 4
    # after the first read it hardly waited: the reads ran ahead (8 x 20 ms if it had not)
    assert loader.wait_seconds - (got[0] - started) < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_come_from_pinned_memory() -> None:
    store = memory_store(20)
    loader = StoreLoader(store, 8, device="cuda")
    images, labels = next(iter(loader))
    assert images.is_cuda and labels.is_cuda and loader.pin_memory
    assert torch.equal(labels.cpu(), images[:, 0, 0, 0].long().cpu() % 7)


def test_transform_in_reader_threads_is_reproducible_and_resumable() -> None:
    base = memory_store(40, size=12)
    rng = np.random.default_rng(0)
    store = ImageStore(base.root, base.split, rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
                       base.labels, base.manifest)
    augment = TrainAugment(fake_stats(12), AugmentConfig(crop_size=8))

    def run(threads: int, reuse: bool, **state: int) -> list[torch.Tensor]:
        loader = StoreLoader(store, 8, seed=5, threads=threads, transform=augment,
                             reuse_buffers=reuse)
        if state:
            loader.load_state_dict({**loader.state_dict(), **state})
        return [images.clone() for images, _ in loader]

    reference = run(1, False)
    assert reference[0].shape == (8, 3, 8, 8) and reference[0].dtype == torch.float32
    for threads, reuse in ((3, False), (2, True)):
        assert all(torch.equal(a, b) for a, b in zip(reference, run(threads, reuse), strict=True))
    resumed = run(2, True, position=2)
    assert all(torch.equal(a, b) for a, b in zip(reference[2:], resumed, strict=True))


def test_reused_buffers_come_back_after_prefetch_plus_two_batches() -> None:
    store = memory_store(80)
    loader = StoreLoader(store, 8, shuffle=False, prefetch=2, threads=1, reuse_buffers=True)
    pointers, previous = [], None
    for images, labels in loader:
        pointers.append(images.data_ptr())
        assert torch.equal(labels, images[:, 0, 0, 0].long() % 7)  # intact when yielded
        if previous is not None:  # the batch before stays valid while this one is used
            assert torch.equal(previous[1], previous[0][:, 0, 0, 0].long() % 7)
        previous = (images, labels)
    assert pointers[0] == pointers[4] and len(set(pointers)) == 4
