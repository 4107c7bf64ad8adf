"""What a test runs on each rank of a 2-process gloo group (torch.multiprocessing.spawn): kept in a module
of its own, which each process imports, so that a rank does not import a whole test module."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from training.distributed import DistInfo, value_range


def value_range_on_rank(rank: int, rendezvous: str, out: str) -> None:
    """Rank 0 found a checkpoint of step 300, rank 1 none: what each learns of the range."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    found = value_range(300 if rank == 0 else 0, DistInfo(rank=rank, world=2), torch.device("cpu"))
    dist.destroy_process_group()
    (Path(out) / f"{rank}.txt").write_text(f"{found[0]} {found[1]}")
