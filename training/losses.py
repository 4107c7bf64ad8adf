"""Contrastive losses for CLIP and FocusCLIP: pure functions of (already normalised) embeddings.

    loss, terms = focusclip_loss(image, text, masked, logit_scale)            # one process
    loss, terms = focusclip_loss(image, text, masked, logit_scale, gather=gather_with_grad)  # DDP

Each term is one of two pair losses (`kind`):
- "infonce": the symmetric CLIP loss (InfoNCE both ways, averaged; Radford et al. 2021, open_clip
  `ClipLoss`): each row's negatives are the B-1 other rows of the OTHER view.
- "ntxent": the reference code's loss (pytorch-metric-learning `SelfSupervisedLoss(NTXentLoss(T))`,
  symmetric): both views stacked into 2B rows, each row's positive is its partner and its negatives are the
  other 2B-2 rows, same-view rows included (SimCLR's NT-Xent, Chen et al. 2020).
FocusCLIP (arXiv 2403.06904) sums three: L(masked, image) + L(masked, text) + L(image, text).
Distributed training follows open_clip's `local_loss=True, gather_with_grad=True`: each rank scores its own
rows against everybody's columns, so the logits are B x (world*B) and gradients flow through the gather.
"""

from __future__ import annotations

import functools
import operator
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

# open_clip's gather_with_grad uses torch.distributed.nn.all_gather; torch marks it deprecated in favour of a
# private functional API, so we keep the public one and silence its notice.
warnings.filterwarnings(
    "ignore", message=r".*distributed\.nn\.functional\.all_gather is deprecated", category=FutureWarning
)

Gather = Callable[[torch.Tensor], torch.Tensor]
LossKind = Literal["infonce", "ntxent"]


def contrastive_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    a_all: torch.Tensor | None = None,
    b_all: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Symmetric InfoNCE between the local rows a, b (B, D) and the global columns a_all, b_all.

    logit_scale is the multiplier (1 / temperature). Without a_all/b_all the batch is the whole world;
    otherwise `offset` is where this rank's rows sit inside the gathered (world*B, D) tensors.
    """
    a_all = a if a_all is None else a_all
    b_all = b if b_all is None else b_all
    labels = torch.arange(a.shape[0], device=a.device) + offset
    logits_ab = logit_scale * a @ b_all.T
    logits_ba = logit_scale * b @ a_all.T
    # the softmax in at least fp32, whatever the autocast dtype of the features
    dtype = torch.promote_types(logits_ab.dtype, torch.float32)
    return 0.5 * (F.cross_entropy(logits_ab.to(dtype), labels) + F.cross_entropy(logits_ba.to(dtype), labels))


def ntxent_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    a_all: torch.Tensor | None = None,
    b_all: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Symmetric NT-Xent between the local rows a, b (B, D) over the stacked global rows [a_all; b_all].

    Row a_i's positive is b_i and b_i's is a_i; every other row of the 2N stacked rows (N = world * B),
    same view included, is a negative; a row is never compared with itself. The mean over the local 2B
    rows; under DDP, the mean of the ranks' values is the single-process loss of the whole batch.
    """
    a_all = a if a_all is None else a_all
    b_all = b if b_all is None else b_all
    n, rows = a_all.shape[0], a.shape[0]
    cols = torch.cat([a_all, b_all], dim=0)  # (2N, D)
    local = torch.arange(rows, device=a.device) + offset
    logits = logit_scale * torch.cat([a, b], dim=0) @ cols.T  # (2B, 2N)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.to(dtype)
    own = torch.cat([local, local + n])  # where each local row sits among the columns
    logits[torch.arange(2 * rows, device=a.device), own] = float("-inf")
    partner = torch.cat([local + n, local])
    return F.cross_entropy(logits, partner)


PAIR_LOSSES = {"infonce": contrastive_loss, "ntxent": ntxent_loss}


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0, differentiable (torch.distributed.nn, as open_clip's gather_with_grad)."""
    import torch.distributed.nn as dist_nn  # only multi-process runs gather; some torch builds lack it

    return torch.cat(dist_nn.all_gather(x), dim=0)


def clip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    gather: Gather | None = None,
    rank: int = 0,
    kind: LossKind = "infonce",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The CLIP baseline: one image-text term."""
    pair = PAIR_LOSSES[kind]
    feats = _gathered(gather, image=image, text=text)
    off = rank * image.shape[0]
    loss = pair(image, text, logit_scale, a_all=feats["image"], b_all=feats["text"], offset=off)
    return loss, {"loss_image_text": loss.detach()}


def focusclip_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    masked: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    gather: Gather | None = None,
    rank: int = 0,
    kind: LossKind = "infonce",
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """FocusCLIP: L(masked, image) + L(masked, text) + L(image, text), each times its weight; returns (the
    weighted sum, the three unweighted terms). A term of weight 0 is still computed and reported, so its
    curve shows what the model learns about it without being trained on it."""
    pair = PAIR_LOSSES[kind]
    g = _gathered(gather, image=image, text=text, masked=masked)
    off = rank * image.shape[0]
    mi = pair(masked, image, logit_scale, a_all=g["masked"], b_all=g["image"], offset=off)
    mt = pair(masked, text, logit_scale, a_all=g["masked"], b_all=g["text"], offset=off)
    it = pair(image, text, logit_scale, a_all=g["image"], b_all=g["text"], offset=off)
    terms = {
        "loss_masked_image": mi.detach(),
        "loss_masked_text": mt.detach(),
        "loss_image_text": it.detach(),
    }
    # a weight of 1 adds the term itself, so the default sum is mi + mt + it, bit for bit as before weights
    weighted = [t if w == 1 else w * t for w, t in zip(weights, (mi, mt, it), strict=True) if w]
    return functools.reduce(operator.add, weighted), terms


def _gathered(gather: Gather | None, **feats: torch.Tensor) -> dict[str, torch.Tensor]:
    if gather is None:
        return feats
    return {k: gather(v) for k, v in feats.items()}
