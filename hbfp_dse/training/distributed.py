"""One run on several processes (GPUs), launched by ``torchrun``, with DDP.

Every process reads the same global batches (the same order and augmentation draws, which
follow from the seed) and trains on its contiguous share of each; DDP sums the gradients.
A process's loss is its share's sum over the global batch's size times the process count, so
that DDP's averaging gives the global batch's mean gradient, shares of unequal size included:
the run is the single-process run, up to the order of float sums, where no block of a quantized
operand crosses a share (the weight gradient is blocked along the batch, and each process blocks
its own share, as each accelerator would). Losses and accuracies are
summed over the processes before they are read. BatchNorm is synchronised over the processes
(on CUDA; the CPU's gloo backend has no synchronised BatchNorm, so models with BatchNorm are
refused there). The quantized layers are unchanged; stochastic rounding draws its noise from a
stream of each process's own. Each process reads (and, for image folders, decodes) every global
batch: the data path does the work of one process per process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError

_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local`` on its
    machine (the index of its GPU)."""

    rank: int
    world: int
    local: int

    @property
    def leader(self) -> bool:
        """The process that records: callbacks, checkpoints, output."""
        return self.rank == 0


def launched() -> Ranks | None:
    """This process's ranks where ``torchrun`` started several, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def current() -> Ranks | None:
    """The ranks of the process group this process is in, or None without one."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def process_group(device_kind: str) -> Iterator[Ranks | None]:
    """Inside: the process group ``torchrun`` asked for (NCCL for CUDA runs, gloo for the
    CPU), or nothing when this process runs alone."""
    ranks = launched()
    if ranks is None or dist.is_initialized():
        yield current()
        return
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ranks.local)
    dist.init_process_group(backend, timeout=_TIMEOUT)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks | None) -> torch.device:
    """A CUDA run's process trains on the GPU of its local rank."""
    if ranks is None or device.type != "cuda":
        return device
    return torch.device("cuda", ranks.local)


def prepare(
    model: nn.Module, device: torch.device, ranks: Ranks | None
) -> tuple[nn.Module, nn.Module]:
    """The model the run keeps (its state is what checkpoints save and formats act on) and
    the module its training steps call: DDP over it, or the model itself alone."""
    if ranks is None:
        return model, model
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_batch_norm and device.type != "cuda":
        raise UserError(
            "a model with BatchNorm trains on several processes on CUDA only (gloo has no "
            "synchronised BatchNorm); run it in one process or on GPUs"
        )
    if has_batch_norm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=device_ids)


def share(batch: Tensor, ranks: Ranks | None) -> Tensor:
    """This process's contiguous share of a global batch."""
    if ranks is None:
        return batch
    return torch.tensor_split(batch, ranks.world)[ranks.rank]


def sum_over_processes(values: Tensor, ranks: Ranks | None) -> Tensor:
    if ranks is not None:
        dist.all_reduce(values)
    return values


def barrier(ranks: Ranks | None) -> None:
    if ranks is not None:
        dist.barrier()


def disagree(value: int, device: torch.device, ranks: Ranks | None) -> bool:
    """Whether the processes hold different values."""
    if ranks is None:
        return False
    low_high = torch.tensor([-value, value], device=device)
    dist.all_reduce(low_high, op=dist.ReduceOp.MAX)
    return bool(-low_high[0] != low_high[1])


def any_process(flag: bool, device: torch.device, ranks: Ranks | None) -> bool:
    """Whether ``flag`` holds in any process (the leader's callbacks stop every process)."""
    if ranks is None:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
