"""The one reading of a --device option, for every stage that runs torch (train, eval, annotate)."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def torch_device(name: str, *, local_rank: int = 0) -> torch.device:
    """name: auto | cpu | cuda | cuda:N (or any torch device). auto is the GPU when there is one, else the
    CPU; "cuda" is this process's local GPU (LOCAL_RANK under torchrun). A one-line error for a name torch
    does not know or a GPU that is not here."""
    asked = name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
    except RuntimeError:
        raise PipelineError(f"--device {asked!r}: not a torch device (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"--device {asked}: CUDA is not available on this machine")
    return device
