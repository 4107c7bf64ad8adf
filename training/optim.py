"""The optimizer over a run's trainable parameters, its learning-rate schedule and the precision's autocast.

    optimizer = build_optimizer(model, cfg, device)       # open_clip_train's groups (+ FocusCLIP's alpha)
    scheduler = build_schedule(optimizer, total=1000, warmup=50, schedule="cosine")
    apply_optimizer_settings(optimizer, scheduler, cfg)   # after loading a checkpoint: this config's values
    clip_state, own_state = split_optimizer_state(optimizer.state_dict())   # the checkpoint's two halves

Only parameters with requires_grad enter the optimizer: a locked tower (training/locking.py) has no state in
it, and so no memory for momentum or Adam moments.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from training.config import TrainConfig
from training.model import FocusCLIP


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup to 1, then constant or cosine to 0 at `total` (step counts completed steps)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress_frac = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac)))


def build_optimizer(model: FocusCLIP, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """open_clip_train's two groups over the open_clip model's parameters, in its order and with its rule (no
    weight decay on gains, biases, norms and the logit scale), so that a checkpoint's optimizer state loads
    in open_clip_train; FocusCLIP's alpha, which a plain CLIP has no place for, is a third group."""
    decay, no_decay = [], []
    for name, p in model.clip.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": cfg.weight_decay}]
    own = [p for name, p in model.named_parameters() if not name.startswith("clip.") and p.requires_grad]
    if own:
        groups.append({"params": own, "weight_decay": 0.0})
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **fused)


def build_schedule(
    optimizer: torch.optim.Optimizer, *, total: int, warmup: int, schedule: str
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=total, warmup=warmup, schedule=schedule)
    )


def apply_optimizer_settings(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, cfg: TrainConfig
) -> None:
    """Put this config's hyperparameters into the loaded optimizer and schedule (the state dicts carry the
    old run's); the schedule's lambda is already built from this config's steps and warmup."""
    groups = optimizer.param_groups  # build_optimizer's order: no decay, decay[, FocusCLIP's own]
    groups[1]["weight_decay"] = cfg.weight_decay
    for group in groups:
        group["initial_lr"] = cfg.lr
        if cfg.optimizer == "sgd":
            group["momentum"] = cfg.momentum
        else:
            group["betas"], group["eps"] = tuple(cfg.betas), cfg.eps
    scheduler.base_lrs = [cfg.lr] * len(groups)
    for group, fn in zip(groups, scheduler.lr_lambdas, strict=True):
        group["lr"] = cfg.lr * fn(scheduler.last_epoch)


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the first two groups, as open_clip_train's optimizer over a plain CLIP holds them; the rest)."""
    groups = state["param_groups"]
    ids = {i for g in groups[:2] for i in g["params"]}
    clip = {"state": {i: s for i, s in state["state"].items() if i in ids}, "param_groups": groups[:2]}
    own = {"state": {i: s for i, s in state["state"].items() if i not in ids}, "param_groups": groups[2:]}
    return clip, own


def join_optimizer_state(clip: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    groups = clip["param_groups"] + own["param_groups"]
    return {"state": {**clip["state"], **own["state"]}, "param_groups": groups}


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
