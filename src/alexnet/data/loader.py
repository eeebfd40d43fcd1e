"""StoreLoader: uint8 batches from a prepared store, read ahead in background threads.

- Deterministic: the sample order of an epoch depends only on (seed, epoch); batches are
  contiguous slices of that order. Within a batch the indices are sorted, so a batch is read
  front to back through the memory-mapped file (the order inside a batch does not matter to
  SGD, and labels follow their images).
- Sharded for DDP: each global step takes ``batch_size * world_size`` consecutive samples of
  the epoch's order and rank r gets the r-th ``batch_size`` of them, so all ranks see disjoint
  samples and run the same number of steps. The remainder (``N mod batch_size*world_size``
  samples): with ``drop_last`` it is left out of this epoch (a different random subset each
  epoch, when shuffling); without it, it is split as evenly as possible into one last, smaller
  batch per rank, so that every sample is seen exactly once per epoch over all ranks. When
  the remainder is smaller than the number of ranks, some ranks get an empty last batch (so
  that every rank still runs the same number of steps; skip or weight empty batches).
- Resumable: ``state_dict()`` records the epoch and how many batches of it were consumed;
  ``load_state_dict`` makes the next iteration continue at the next batch.
- Overlapped: ``threads`` background threads copy batches out of the page cache / disk into
  (pinned, when the device is CUDA) host memory while the consumer computes; numpy's copy
  releases the GIL. ``wait_seconds`` is the time the consumer spent waiting for data.
- ``transform(images, generator)`` (e.g. a TrainAugment) is applied to every batch: on a CPU
  device inside the reader threads, so augmentation runs in parallel with the consumer and
  with itself (torch ops release the GIL; on a small machine ``torch.set_num_threads(1)``
  with ``threads`` = cores avoids OpenMP barrier stalls), on an accelerator after the copy.
  Its generator is seeded from (seed, epoch, batch, rank): reproducible and resumable.
- ``reuse_buffers`` (CPU device): batches are written into a ring of ``prefetch + 2``
  preallocated tensors instead of fresh ones, as FFCV does; fresh 77 MB tensors cost page
  faults that serialise the reader threads. A yielded batch then stays valid until the
  consumer has asked for two more batches (the usual loop holds one); ``.clone()`` what must
  live longer. With a transform, it must accept ``out=`` (TrainAugment and EvalTransform do).

Yields ``(images, labels)``: uint8 (B, S, S, 3) - or what ``transform`` makes of them - and
int64 (B,) tensors on ``device``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from alexnet.data.store import ImageStore
from alexnet.errors import AlexNetError

Batch = tuple[torch.Tensor, torch.Tensor]


class StoreLoader:
    def __init__(
        self,
        store: ImageStore,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        prefetch: int = 4,
        threads: int = 2,
        pin_memory: bool | None = None,
        transform: Callable[..., torch.Tensor] | None = None,
        reuse_buffers: bool = False,
    ) -> None:
        if batch_size < 1 or prefetch < 1 or threads < 1:
            raise AlexNetError(f"batch_size, prefetch and threads must be >= 1, got "
                               f"{batch_size}, {prefetch}, {threads}")
        if not 0 <= rank < world_size:
            raise AlexNetError(f"rank {rank} is outside world_size {world_size}")
        if drop_last and len(store) < batch_size * world_size:
            raise AlexNetError(f"{store.root}/{store.split} has {len(store)} images, fewer than "
                               f"one batch of {batch_size} x {world_size} ranks with drop_last: "
                               "lower the batch size or prepare more images")
        self.store = store
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.device = torch.device(device)
        self.prefetch, self.threads = prefetch, threads
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.transform = transform
        # CPU only: with pinned memory the device copy may still be reading a host buffer
        self.reuse_buffers = reuse_buffers and self.device.type == "cpu"
        self._slots: dict[int, torch.Tensor] = {}  # position % (prefetch + 2) -> output buffer
        self._scratch = threading.local()  # per reader thread: uint8 input of the transform
        self._whole_store: torch.Tensor | None = None
        self.epoch = 0
        self.position = 0  # batches of self.epoch already consumed
        self.wait_seconds = 0.0  # time the consumer waited for data in the current iteration

    @classmethod
    def distributed(cls, store: ImageStore, batch_size: int, **options: Any) -> StoreLoader:
        """A loader for this process's rank when torch.distributed is initialised."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            options.setdefault("rank", dist.get_rank())
            options.setdefault("world_size", dist.get_world_size())
        return cls(store, batch_size, **options)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        global_batch = self.batch_size * self.world_size
        full, remainder = divmod(len(self.store), global_batch)
        return full + (1 if remainder and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (a resumed position in it is kept)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """All sample indices of ``epoch`` in the order the global batches take them."""
        count = len(self.store)
        if not self.shuffle:
            return np.arange(count)
        return np.random.default_rng([self.seed, epoch]).permutation(count)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch``: sorted int64 sample indices, one array a batch."""
        order = self.epoch_order(epoch)
        size, global_batch = self.batch_size, self.batch_size * self.world_size
        full = len(order) // global_batch
        start = self.rank * size
        batches = [order[g * global_batch + start:g * global_batch + start + size]
                   for g in range(full)]
        remainder = order[full * global_batch:]
        if len(remainder) and not self.drop_last:
            batches.append(np.array_split(remainder, self.world_size)[self.rank])
        return [np.sort(batch) for batch in batches]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "world_size": self.world_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "samples": len(self.store)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` was taken: same epoch, next unconsumed batch."""
        for key in ("seed", "batch_size", "world_size", "shuffle", "drop_last", "samples"):
            ours = self.state_dict()[key]
            if state.get(key) != ours:
                raise AlexNetError(f"cannot resume the loader: {key} was {state.get(key)} and is "
                                   f"now {ours}; resume with the same data and settings")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        pending_batches = self.batches(epoch)[self.position:]
        self.wait_seconds = 0.0
        executor = ThreadPoolExecutor(self.threads, thread_name_prefix="store-reader")
        in_flight: deque[Future[Batch]] = deque()
        queue = iter(pending_batches)
        try:
            submitted = self.position
            for indices in queue:
                in_flight.append(executor.submit(self._read, indices, epoch, submitted))
                submitted += 1
                if len(in_flight) >= self.prefetch:
                    break
            while in_flight:
                started = time.perf_counter()
                images, labels = in_flight.popleft().result()
                self.wait_seconds += time.perf_counter() - started
                next_indices = next(queue, None)
                if next_indices is not None:
                    in_flight.append(executor.submit(self._read, next_indices, epoch, submitted))
                    submitted += 1
                images, labels = self._to_device(images, labels, epoch, self.position)
                self.position += 1
                yield images, labels
            self.epoch, self.position = epoch + 1, 0  # a full pass moves on to the next epoch
        finally:
            for future in in_flight:
                future.cancel()
            executor.shutdown(wait=True)

    def _read(self, indices: np.ndarray, epoch: int, position: int) -> Batch:
        """Runs in a reader thread: copy the images at sorted ``indices`` into host memory
        (and on a CPU device, apply the transform there, in parallel with the consumer)."""
        size = self.store.size
        shape = (len(indices), size, size, 3)
        transform_here = self.transform is not None and self.device.type == "cpu"
        if transform_here and getattr(self.transform, "accepts_index", False):
            # the transform cuts its crops straight out of the memory-mapped store
            return self._transform(self._store_tensor(), torch.from_numpy(indices), indices,
                                   epoch, position), self._labels(indices)
        if transform_here and self.reuse_buffers:
            images = self._scratch_images(shape)
        elif self.reuse_buffers:
            images = self._slot(position, shape, torch.uint8)
        else:
            images = torch.empty(shape, dtype=torch.uint8, pin_memory=self.pin_memory)
        self.store.read(indices, out=images.numpy())
        if transform_here:
            images = self._transform(images, None, indices, epoch, position)
        return images, self._labels(indices)

    def _labels(self, indices: np.ndarray) -> torch.Tensor:
        labels = torch.from_numpy(self.store.labels[indices])
        return labels.pin_memory() if self.pin_memory else labels

    def _transform(self, images: torch.Tensor, index: torch.Tensor | None, indices: np.ndarray,
                   epoch: int, position: int) -> torch.Tensor:
        """Apply the transform in a reader thread, into this position's buffer if reused."""
        assert self.transform is not None
        options: dict[str, Any] = {} if index is None else {"index": index}
        generator = self._generator(epoch, position)
        if not self.reuse_buffers:
            return self.transform(images, generator, **options)
        key = position % (self.prefetch + 2)
        probe = self._slots.get(key)
        rows = len(indices) * getattr(self.transform, "views_per_image", 1)
        reusable = probe is not None and probe.shape[0] == rows and probe.dtype == torch.float32
        result = self.transform(images, generator, out=probe if reusable else None, **options)
        self._slots[key] = result
        return result

    def _store_tensor(self) -> torch.Tensor:
        """The whole memory-mapped split as a uint8 tensor (no copy, read-only in practice)."""
        if self._whole_store is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "non-writable array": not written
                self._whole_store = torch.from_numpy(self.store.images)
        return self._whole_store

    def _slot(self, position: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The reusable buffer of this batch position. A slot comes back prefetch + 2 batches
        later, when the consumer has asked for two more batches than the one it held."""
        key = position % (self.prefetch + 2)
        buffer = self._slots.get(key)
        if buffer is None or tuple(buffer.shape) != shape or buffer.dtype != dtype:
            buffer = self._slots[key] = torch.empty(shape, dtype=dtype)
        return buffer

    def _scratch_images(self, shape: tuple[int, ...]) -> torch.Tensor:
        buffer = getattr(self._scratch, "images", None)
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = self._scratch.images = torch.empty(shape, dtype=torch.uint8)
        return buffer

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                   position: int) -> Batch:
        if self.device.type == "cpu":
            return images, labels
        # from pinned memory the copy is asynchronous and ordered before later work on the
        # current stream; the caching host allocator keeps the buffer until it has finished
        images = images.to(self.device, non_blocking=self.pin_memory)
        labels = labels.to(self.device, non_blocking=self.pin_memory)
        if self.transform is not None:
            images = self.transform(images, self._generator(epoch, position))
        return images, labels

    def _generator(self, epoch: int, position: int) -> torch.Generator:
        """The transform's randomness for one batch: a function of (seed, epoch, batch, rank)
        only, so it does not depend on thread timing and a resumed run repeats it exactly."""
        state = np.random.SeedSequence([self.seed, epoch, position, self.rank]).generate_state(2)
        seed = int(state[0]) << 32 | int(state[1])
        return torch.Generator(self.device).manual_seed(seed)
