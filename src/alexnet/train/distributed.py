"""Data parallelism, switched on by the environment torchrun sets (as in nanoGPT).

``torchrun --nproc_per_node=N -m alexnet train ...`` starts N processes with RANK,
LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT set; multi-node runs add ``--nnodes`` and a c10d
rendezvous (``--rdzv-backend c10d --rdzv-endpoint HOST:PORT``). Without those variables
training is a plain single process. GPUs talk over NCCL, CPUs over gloo.

Batch size semantics: ``TrainConfig.batch_size`` is global. Each of the N ranks takes
batch_size / N images a step, and DistributedDataParallel averages the gradients, so one
step sees the same images and makes the same update as one process with the whole batch.
Only rank 0 writes logs and checkpoints; every rank reads the checkpoint to resume, which
needs the same world size (the loader position is counted in global steps).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alexnet.errors import AlexNetError
from alexnet.runtime.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None  # None: a single process, nothing initialised

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes (no-op for one process).

    ``device`` is this process's training device; on CUDA it must already be
    ``cuda:LOCAL_RANK`` (see ``rank_device``).
    """
    if not launched_by_torchrun():
        return Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # device_id binds NCCL's communicator to this rank's GPU up front (torch >= 2.3)
        options = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30), **options)
    return Distributed(rank, local_rank, world_size, backend)


def rank_device(requested: str) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` under torchrun with GPUs."""
    device = resolve_device(requested)
    if device.type == "cuda":
        if launched_by_torchrun():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def per_rank_batch(global_batch: int, world: Distributed) -> int:
    if global_batch % world.world_size:
        raise AlexNetError(f"batch_size {global_batch} is global and must divide evenly over "
                           f"{world.world_size} processes; use a multiple of {world.world_size}")
    return global_batch // world.world_size


def mean_over_ranks(values: torch.Tensor, world: Distributed) -> torch.Tensor:
    """The mean of ``values`` over all ranks (identity for one process)."""
    if world.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= world.world_size
    return values


def sum_over_ranks(values: torch.Tensor, world: Distributed) -> torch.Tensor:
    if world.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, world: Distributed, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any (e.g. a stop request)."""
    if not world.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(world: Distributed) -> None:
    if world.enabled:
        dist.barrier()


def shutdown(world: Distributed) -> None:
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()
