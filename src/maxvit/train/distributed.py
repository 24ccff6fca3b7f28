"""Process group and device: one process per device under torchrun, or a single process.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with more than one process we join
the group (NCCL on CUDA, gloo on CPU) and each process drives ``cuda:LOCAL_RANK`` or the CPU.
Without torchrun everything still works as a group of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and which part of the work it does."""

    rank: int  # global process index (0 writes files and prints)
    world_size: int  # number of processes
    local_rank: int  # process index on this node (0 prepares this node's data)
    device: torch.device  # cuda:LOCAL_RANK when CUDA is available, else cpu
    owns_group: bool  # True when `setup` created the process group (so `cleanup` ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Sum a few numbers over all processes (in float64; identity for one process)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_tensor(self, t: torch.Tensor) -> list[float]:
        """Sum a small device tensor over all processes and read it on the host: one host sync
        (and one all-reduce under DDP)."""
        if self.distributed:
            dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup() -> DistContext:
    """Join the torchrun process group if there is one, and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        owns = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return DistContext(rank, world_size, local_rank, device, owns)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if `setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
