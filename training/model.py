"""The CLIP / FocusCLIP training model: an open_clip model plus FocusCLIP's learnable mask strength.

    model = FocusCLIP.create("focus-tiny", focus=True, context_length=77, image_size=64)
    out = model(images, tokens, heatmaps)        # images (B,3,H,W) in [0,1]; heatmaps (B,H,W) in [0,1]
    out["image"], out["text"], out["masked"], out["logit_scale"]

FocusCLIP (arXiv 2403.06904): masked = image * (alpha + heatmap * (1 - alpha)) with alpha learnable (init
0.5). `alpha_param="plain"` is the reference code's unconstrained nn.Parameter (the paper recipe);
"sigmoid" keeps alpha in [0, 1] under any optimizer step (the modern recipe) but moves it ~16x slower under
SGD near 0.5 (d sigmoid / dx = 1/4 there, and the gradient is scaled by it again through the update).
The image and the masked image go through the SAME visual tower as ONE batch of 2B (one pass; better GPU
occupancy than two).
The masking is applied to pixels in [0, 1] before the tower's mean/std normalisation, so "masked out" is
black, as in the paper's figures. The exported checkpoint is the plain open_clip model: inference needs
no heatmap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import open_clip
import torch
from torch import nn

from training.towers import Towers, create_clip

log = logging.getLogger(__name__)

AlphaParam = Literal["sigmoid", "plain"]


class FocusCLIP(nn.Module):
    def __init__(
        self,
        clip: nn.Module,
        *,
        focus: bool,
        alpha_init: float = 0.5,
        alpha_param: AlphaParam = "sigmoid",
        learn_alpha: bool = True,
        temperature: float | None = None,
        learn_temperature: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        """mean/std: the pixel normalisation (the run's recorded preprocessing); default the tower's own."""
        super().__init__()
        self.clip = clip
        self.focus = focus
        self.alpha_param = alpha_param
        if focus and alpha_param == "plain":
            self.alpha_plain = nn.Parameter(torch.tensor(float(alpha_init)))
        elif focus:
            a = min(max(alpha_init, 1e-4), 1 - 1e-4)  # sigmoid reaches 0 and 1 only at infinity
            self.alpha_logit = nn.Parameter(torch.tensor(math.log(a / (1 - a))))
        if focus:
            self._alpha_tensor().requires_grad_(learn_alpha)
        if temperature is not None:
            with torch.no_grad():
                self.clip.logit_scale.fill_(math.log(1.0 / temperature))
        self.clip.logit_scale.requires_grad_(learn_temperature)
        pp = getattr(clip.visual, "preprocess_cfg", {}) or {}
        mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN) if mean is None else mean
        std = pp.get("std", open_clip.OPENAI_DATASET_STD) if std is None else std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def create(
        cls,
        arch: str,
        *,
        focus: bool,
        context_length: int | None = None,
        image_size: int | None = None,
        pretrained: str | Path | None = None,
        towers: Towers = Towers(),
        alpha_init: float = 0.5,
        alpha_param: AlphaParam = "sigmoid",
        learn_alpha: bool = True,
        temperature: float | None = None,
        learn_temperature: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> FocusCLIP:
        clip = create_clip(
            arch, context_length=context_length, image_size=image_size, pretrained=pretrained, towers=towers
        )
        return cls(
            clip,
            focus=focus,
            alpha_init=alpha_init,
            alpha_param=alpha_param,
            learn_alpha=learn_alpha,
            temperature=temperature,
            learn_temperature=learn_temperature,
            mean=mean,
            std=std,
        )

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def context_length(self) -> int:
        return int(self.clip.context_length)

    def alpha(self) -> torch.Tensor:
        if not self.focus:
            raise AttributeError("a CLIP model has no alpha")
        if self.alpha_param == "plain":
            return self.alpha_plain
        return torch.sigmoid(self.alpha_logit)

    def _alpha_tensor(self) -> nn.Parameter:
        return self.alpha_plain if self.alpha_param == "plain" else self.alpha_logit

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, heatmaps: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """images (B,3,H,W) floats in [0,1]; tokens (B,L); heatmaps (B,H,W) in [0,1] (FocusCLIP only)."""
        b = images.shape[0]
        if self.focus:
            if heatmaps is None:
                raise ValueError("FocusCLIP needs heatmaps")
            alpha = self.alpha().to(images.dtype)
            masked = images * (alpha + heatmaps.unsqueeze(1).to(images.dtype) * (1 - alpha))
            images = torch.cat([images, masked], dim=0)
        pixels = (images - self.mean) / self.std
        vis = self.clip.encode_image(pixels, normalize=True)
        out = {
            "image": vis[:b],
            "text": self.clip.encode_text(tokens, normalize=True),
            "logit_scale": self.clip.logit_scale.exp(),
        }
        if self.focus:
            out["masked"] = vis[b:]
        return out

    def clamp_(self) -> None:
        """After each optimizer step: logit scale at most 100 (open_clip's clamp, ln 100)."""
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, math.log(100))

    def fix_norm_stats(self, modules: Sequence[nn.Module]) -> None:
        """Keep these norm layers in eval mode, in training too: a locked tower normalises with the statistics
        it was trained with (training/locking.py), and no batch updates them."""
        self._fixed_norms = tuple(modules)
        self.train(self.training)

    def train(self, mode: bool = True) -> FocusCLIP:
        super().train(mode)
        for module in getattr(self, "_fixed_norms", ()):  # set by fix_norm_stats only
            module.eval()
        return self
