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

Yields ``(images, labels)``: uint8 (B, S, S, 3) and int64 (B,) tensors on ``device``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
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
            for indices in queue:
                in_flight.append(executor.submit(self._read, indices))
                if len(in_flight) >= self.prefetch:
                    break
            while in_flight:
                started = time.perf_counter()
                images, labels = in_flight.popleft().result()
                self.wait_seconds += time.perf_counter() - started
                next_indices = next(queue, None)
                if next_indices is not None:
                    in_flight.append(executor.submit(self._read, next_indices))
                images, labels = self._to_device(images, labels)
                self.position += 1
                yield images, labels
            self.epoch, self.position = epoch + 1, 0  # a full pass moves on to the next epoch
        finally:
            for future in in_flight:
                future.cancel()
            executor.shutdown(wait=True)

    def _read(self, indices: np.ndarray) -> Batch:
        """Runs in a reader thread: copy the images at sorted ``indices`` into host memory."""
        size = self.store.size
        images = torch.empty((len(indices), size, size, 3), dtype=torch.uint8,
                             pin_memory=self.pin_memory)
        self.store.read(indices, out=images.numpy())
        labels = torch.from_numpy(self.store.labels[indices])
        if self.pin_memory:
            labels = labels.pin_memory()
        return images, labels

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        if self.device.type == "cpu":
            return images, labels
        # from pinned memory the copy is asynchronous and ordered before later work on the
        # current stream; the caching host allocator keeps the buffer until it has finished
        return (images.to(self.device, non_blocking=self.pin_memory),
                labels.to(self.device, non_blocking=self.pin_memory))
