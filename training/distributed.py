"""Where a training process runs: its place in a torchrun job (its device: pipeline.devices).

    device = torch_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device)      # DistInfo(rank, world, local_rank); world 1 without torchrun
    barrier(info)                        # every rank waits here (a no-op in a single process)

Without torchrun (WORLD_SIZE unset or 1) nothing is initialised and every helper is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(slots=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", 0))
    )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        info.started_here = True
    return info


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def value_range(value: int, info: DistInfo, device: torch.device) -> tuple[int, int]:
    """(smallest, largest) of an int over every rank (one all-reduce); (value, value) in one process."""
    if info.world == 1:
        return value, value
    both = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -int(both[1]), int(both[0])
