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

focus_mode="pooling" (a variant, benchmarks/README.md) moves the same weight from the pixels into the image
tower's attention pooling: the masked view keeps its pixels, and log(alpha + heatmap * (1 - alpha)),
averaged over each token's area, is added to the attention logits of the pooling query. Supported towers:
open_clip's ModifiedResNet (its attention pool: focus-small, RN50, ...) and VisionTransformer with class-
token pooling (the class token's query in the last block: focus-tiny, ViT-B-16, ...). Only training sees
the prior; the plain image view and every later use of the tower (eval, export) run it unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from pipeline.errors import PipelineError
from training.towers import Towers, create_clip

log = logging.getLogger(__name__)

AlphaParam = Literal["sigmoid", "plain"]
FocusMode = Literal["pixels", "pooling"]


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
        focus_mode: FocusMode = "pixels",
    ):
        """mean/std: the pixel normalisation (the run's recorded preprocessing); default the tower's own."""
        super().__init__()
        self.clip = clip
        self.focus = focus
        self.alpha_param = alpha_param
        self.focus_mode = focus_mode
        if focus and focus_mode == "pooling":
            token_grid(clip.visual)  # refuses a tower without attention pooling now, not at the first step
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
        focus_mode: FocusMode = "pixels",
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
            focus_mode=focus_mode,
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
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        heatmaps: torch.Tensor | None = None,
        masked_images: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """images (B,3,H,W) floats in [0,1]; tokens (B,L); heatmaps (B,H,W) in [0,1] (FocusCLIP only);
        masked_images: the masked view's own pixels (independent views), else the images are masked."""
        b = images.shape[0]
        prior = None
        if self.focus:
            if heatmaps is None:
                raise ValueError("FocusCLIP needs heatmaps")
            alpha = self.alpha().to(images.dtype)
            source = images if masked_images is None else masked_images
            if self.focus_mode == "pooling":
                grid = token_grid(self.clip.visual)
                area = F.adaptive_avg_pool2d(heatmaps.unsqueeze(1).to(images.dtype), grid).flatten(1)
                # clamped: the reference's plain alpha is not kept inside (0, 1]
                focus_prior = torch.log((alpha + area * (1 - alpha)).clamp_min(1e-6))
                prior = torch.cat([torch.zeros_like(focus_prior), focus_prior], dim=0)
                masked = source
            else:
                masked = source * (alpha + heatmaps.unsqueeze(1).to(images.dtype) * (1 - alpha))
            images = torch.cat([images, masked], dim=0)
        pixels = (images - self.mean) / self.std
        if prior is None:
            vis = self.clip.encode_image(pixels, normalize=True)
        else:
            vis = F.normalize(encode_image_with_prior(self.clip.visual, pixels, prior), dim=-1)
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


# ---- heatmap-guided pooling (focus_mode="pooling") --------------------------------------------------------
def token_grid(visual: nn.Module) -> tuple[int, int]:
    """The (rows, cols) of tokens the tower's pooling attends over; refuses a tower it cannot guide."""
    if isinstance(visual, ModifiedResNet) and visual.attnpool is not None:
        side = math.isqrt(visual.attnpool.positional_embedding.shape[0] - 1)
        return side, side
    if (
        isinstance(visual, VisionTransformer)
        and visual.attn_pool is None
        and visual.pool_type == "tok"
        and isinstance(visual.patch_dropout, nn.Identity)  # dropped patches would unalign the prior
        and isinstance(visual.transformer.resblocks[-1], ResidualAttentionBlock)
    ):
        return tuple(visual.grid_size)
    raise PipelineError(
        "--focus-mode pooling guides open_clip's ModifiedResNet attention pool (focus-small, RN50, ...) or "
        "a VisionTransformer's class token (focus-tiny, ViT-B-16, ... without patch dropout or an "
        f"attentional pooler); this image tower is a {type(visual).__name__}: use --focus-mode pixels"
    )


def encode_image_with_prior(visual: nn.Module, pixels: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The tower's unnormalised image features with `prior` (N, rows*cols), an additive log-weight per
    token, on the pooling query's attention logits; the summary token's own key gets none. A zero prior
    gives the tower's own output."""
    if isinstance(visual, ModifiedResNet):
        x = visual.stem(pixels)
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
        return _attnpool_with_prior(visual.attnpool, x, prior)
    last = visual.transformer.resblocks[-1]
    n, tokens, heads = prior.shape[0], prior.shape[1] + 1, last.attn.num_heads
    mask = prior.new_zeros(n, heads, tokens, tokens)
    mask[:, :, 0, 1:] = prior[:, None, :]  # row 0: the class token's query
    mask = mask.reshape(n * heads, tokens, tokens)

    def with_mask(module, args, kwargs):
        return args, {**kwargs, "attn_mask": mask}

    handle = last.register_forward_pre_hook(with_mask, with_kwargs=True)
    try:
        return visual(pixels)
    finally:
        handle.remove()


def _attnpool_with_prior(pool: nn.Module, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """open_clip's AttentionPool2d.forward (modified_resnet.py) with the prior as its attention mask."""
    n = x.shape[0]
    x = x.reshape(n, x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)  # NCHW -> (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    tokens = x.shape[0]
    mask = F.pad(prior, (1, 0))[:, None, None, :].expand(n, pool.num_heads, tokens, tokens)
    x, _ = F.multi_head_attention_forward(
        query=x,
        key=x,
        value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=pool.training,
        need_weights=False,
        attn_mask=mask.reshape(n * pool.num_heads, tokens, tokens).to(x.dtype),
    )
    return x[0]
