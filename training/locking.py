"""Locked towers for fine-tuning on small data: a tower's weights frozen and its norm statistics fixed, as in
LiT (Zhai et al. 2022, arXiv 2111.07991, "locked-image tuning"), optionally with its last N blocks trainable.

    locked = lock_towers(model.clip, image=True, text=False, unlock_last=1)
    model.fix_norm_stats(locked.fixed_norms)   # their BatchNorm layers stay in eval mode while training
    locked.towers                              # what meta.json and the model card say was locked

A tower is read in the order its input flows: stem (patch or token embedding, ...) -> blocks (transformer
blocks, residual blocks, BERT layers) -> head (final norm, pooling, projection). Locking freezes the whole
tower; `unlock_last=N` leaves its last N blocks and the head after them trainable. Known layouts: open_clip's
VisionTransformer, ModifiedResNet and text transformer, a timm trunk with `blocks` (ViT family) or `stages`,
and a Hugging Face encoder with `encoder.layer` (BERT, RoBERTa). Any tower can be locked whole.

A frozen parameter gets requires_grad=False, so the optimizer never sees it (training/optim.py) and autograd
keeps no gradient for it; FocusCLIP's masked view goes through the same image tower, locked or not. The norm
layers with running statistics (BatchNorm) in the frozen part are kept in eval mode: they normalise with the
statistics the tower was trained with instead of each batch's (LayerNorm has none to fix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pipeline.errors import PipelineError

TOWERS = ("image", "text")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a tower's parameters are, by name in the open_clip model: inside `root` (a module path; "" for
    CLIP's own text tower, which lives at the top level beside the image tower), its blocks' paths in order,
    and the paths that form its head."""

    kind: str  # the tower module's class, for messages
    root: str
    blocks: tuple[str, ...]
    head: tuple[str, ...]
    outside: tuple[str, ...] = ()  # with root "": names at the top level that are not this tower's

    def member(self, name: str) -> bool:
        if self.root:
            return _under(name, self.root)
        return not any(_under(name, o) for o in self.outside)

    def part(self, name: str) -> int | str:
        """Where a parameter or module of the tower is: its block's index, "head" or "stem"."""
        for i, block in enumerate(self.blocks):
            if _under(name, block):
                return i
        return "head" if any(_under(name, h) for h in self.head) else "stem"

    def frozen(self, name: str, unlock_last: int) -> bool:
        """Is this member of the tower frozen when its last `unlock_last` blocks (and head) train?"""
        part = self.part(name)
        if part == "head":
            return unlock_last == 0
        return part == "stem" or part < len(self.blocks) - unlock_last


def _under(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def _indexed(prefix: str, container: nn.Module) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in range(len(container)))


def _after(prefix: str, module: nn.Module, child: str) -> tuple[str, ...]:
    """The paths of module's children registered after `child` (timm and Hugging Face models register their
    modules in the order the input flows through them)."""
    names = [n for n, _ in module.named_children()]
    return tuple(f"{prefix}.{n}" for n in names[names.index(child) + 1 :])


def _image_layout(clip: nn.Module) -> Layout:
    visual = clip.visual
    kind = type(visual).__name__
    if hasattr(visual, "trunk"):  # open_clip's TimmModel: a timm trunk and open_clip's projection head
        trunk = visual.trunk
        if isinstance(getattr(trunk, "blocks", None), nn.Sequential | nn.ModuleList):
            blocks, after = _indexed("visual.trunk.blocks", trunk.blocks), "blocks"
        elif isinstance(getattr(trunk, "stages", None), nn.Sequential | nn.ModuleList):
            blocks, after = _indexed("visual.trunk.stages", trunk.stages), "stages"
        else:
            return Layout(f"timm {type(trunk).__name__}", "visual", (), ())
        return Layout(
            f"timm {type(trunk).__name__}",
            "visual",
            blocks,
            ("visual.head", *_after("visual.trunk", trunk, after)),
        )
    if hasattr(visual, "transformer"):  # open_clip's VisionTransformer
        blocks = _indexed("visual.transformer.resblocks", visual.transformer.resblocks)
        head = ("visual.ln_post", "visual.proj", "visual.attn_pool", "visual.attn_pool_contrastive")
        return Layout(kind, "visual", blocks, head)
    if hasattr(visual, "layer4"):  # open_clip's ModifiedResNet: every residual block of the four stages
        blocks = tuple(
            f"visual.layer{s}.{i}" for s in range(1, 5) for i in range(len(getattr(visual, f"layer{s}")))
        )
        return Layout(kind, "visual", blocks, ("visual.attnpool",))
    return Layout(kind, "visual", (), ())


def _text_layout(clip: nn.Module) -> Layout:
    text = getattr(clip, "text", None)
    if text is None:  # open_clip's CLIP: the text tower's modules sit on the model itself
        blocks = _indexed("transformer.resblocks", clip.transformer.resblocks)
        head = ("ln_final", "text_projection")
        return Layout("text transformer", "", blocks, head, outside=("visual", "logit_scale", "logit_bias"))
    kind = type(text).__name__
    encoder = getattr(getattr(text, "transformer", None), "encoder", None)
    if encoder is not None and isinstance(getattr(encoder, "layer", None), nn.ModuleList):  # Hugging Face
        blocks = _indexed("text.transformer.encoder.layer", encoder.layer)
        head = (
            *_after("text.transformer", text.transformer, "encoder"),
            *_after("text", text, "transformer"),
        )
        return Layout(f"Hugging Face {type(text.transformer).__name__}", "text", blocks, head)
    if hasattr(text, "transformer") and hasattr(text.transformer, "resblocks"):  # open_clip's TextTransformer
        blocks = _indexed("text.transformer.resblocks", text.transformer.resblocks)
        return Layout(kind, "text", blocks, ("text.ln_final", "text.text_projection"))
    return Layout(kind, "text", (), ())


def tower_layout(clip: nn.Module, tower: str) -> Layout:
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
    return _image_layout(clip) if tower == "image" else _text_layout(clip)


def _has_running_stats(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats


@dataclass(slots=True)
class Locked:
    """What lock_towers froze: per tower its counts, and the norm layers whose statistics stay fixed."""

    towers: dict[str, dict[str, Any]] = field(default_factory=dict)  # meta.json "locked"
    fixed_norms: list[nn.Module] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the log: which towers are locked, how far, and how many parameters that freezes."""
        parts = []
        for tower, r in self.towers.items():
            n, of = r["unlocked_blocks"], r["blocks"]
            how = f"but its last {n} of {of} blocks and its head" if n else "whole"
            parts.append(
                f"{tower} tower ({r['kind']}) locked {how}: {r['frozen_params']:,} parameters frozen"
            )
        return "; ".join(parts)


def lock_towers(clip: nn.Module, *, image: bool, text: bool, unlock_last: int = 0) -> Locked:
    """Freeze the image and/or text tower of an open_clip model but for their last `unlock_last` blocks and
    head; returns what was frozen. Raises PipelineError when a tower has fewer blocks than asked for, or a
    layout this module does not know and unlock_last > 0."""
    locked = Locked()
    names = dict(clip.named_parameters())
    for tower, on in (("image", image), ("text", text)):
        if not on:
            continue
        layout = tower_layout(clip, tower)
        if unlock_last and not layout.blocks:
            raise PipelineError(
                f"--unlock-last {unlock_last}: the {tower} tower ({layout.kind}) has no blocks this tool "
                f"knows how to find (training/locking.py); lock it whole (--unlock-last 0) or not at all"
            )
        if unlock_last > len(layout.blocks):
            raise PipelineError(
                f"--unlock-last {unlock_last}: the {tower} tower ({layout.kind}) has only "
                f"{len(layout.blocks)} blocks"
            )
        counts = {"frozen_params": 0, "trainable_params": 0}
        for name, p in names.items():
            if not layout.member(name):
                continue
            if layout.frozen(name, unlock_last):
                p.requires_grad_(False)
                counts["frozen_params"] += p.numel()
            else:
                counts["trainable_params"] += p.numel()
        norms = [
            m
            for n, m in clip.named_modules()
            if n and layout.member(n) and layout.frozen(n, unlock_last) and _has_running_stats(m)
        ]
        locked.fixed_norms += norms
        locked.towers[tower] = {
            "kind": layout.kind,
            "blocks": len(layout.blocks),
            "unlocked_blocks": unlock_last,
            **counts,
            "fixed_norms": len(norms),
        }
    return locked
