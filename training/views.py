"""The device half of a training step: a HostBatch (a step's uint8 pixels at the cache side, keypoints and
tokens, as the cache (training/data.py) or the stream (training/stream.py) hands them over) becomes the
step's Batch of views on the device (BatchViews): a random square crop (and optional flip) applied to the
image by one affine grid_sample and the SAME crop to the keypoints, from which the ROI heatmap is rendered
at the output size; the independent masked view (--masked-view independent) gets its own crop and colour
jitter. Every random draw comes from generators seeded from (seed, rank, epoch, step) (step_generators), so a
resumed run sees the very same batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import PipelineError
from pipeline.heatmaps import roi_heatmap_torch
from pipeline.skeletons import Skeleton
from training.text import BatchStats

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HostBatch:
    """A step's samples as the host hands them over, before any view is made (cache or stream alike)."""

    images: torch.Tensor  # (B, S, S, 3) uint8 at the cache side (on the device when the cache is)
    heatmaps: torch.Tensor | None  # (B, S, S) uint8 stored heatmaps, or None
    keypoints: torch.Tensor  # (B, P, K, 3) float32 in S pixels, NaN coordinates for padding
    tokens: torch.Tensor  # (B, L) int64
    text_stats: BatchStats


@dataclass(slots=True)
class Batch:
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1], on the device
    heatmaps: torch.Tensor | None  # (B, H, W) float in [0, 1]: of the masked view
    tokens: torch.Tensor  # (B, L) int64
    text_stats: BatchStats
    masked_images: torch.Tensor | None = None  # the masked view's own pixels (independent views), or None


def step_generators(
    seed: int, rank: int, epoch: int, step: int
) -> tuple[torch.Generator, np.random.Generator]:
    """The step's two random streams: torch's for the crop (device half), numpy's for the sentence sampling
    (host half); both a pure function of (seed, rank, epoch, step), whichever process draws them."""
    rng = np.random.default_rng([seed, rank, epoch, step])
    return torch.Generator().manual_seed(int(rng.integers(2**62))), rng


def view_generator(seed: int, rank: int, epoch: int, step: int) -> torch.Generator:
    """The independent masked view's own stream, so the image view's crops stay those of a default run."""
    rng = np.random.default_rng([seed, rank, epoch, step, 1])
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def crop_params(
    b: int, generator: torch.Generator, *, scale: tuple[float, float], hflip: bool
) -> torch.Tensor:
    """(B, 4): crop side and left/top offset as fractions of the source side, and a flip flag (0/1)."""
    u = torch.rand(b, 4, generator=generator)
    side = torch.sqrt(scale[0] + (scale[1] - scale[0]) * u[:, 0])
    x0 = (1 - side) * u[:, 1]
    y0 = (1 - side) * u[:, 2]
    flip = (u[:, 3] < 0.5).float() if hflip else torch.zeros(b)
    return torch.stack([side, x0, y0, flip], dim=1)


def crop_images(x: torch.Tensor, params: torch.Tensor, out: int) -> torch.Tensor:
    """Crop (and flip) a (B, C, S, S) float batch to (B, C, out, out) by one affine grid_sample."""
    side, x0, y0, flip = params.unbind(1)
    sign = 1 - 2 * flip
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = side * sign
    theta[:, 0, 2] = (x0 + side / 2) * 2 - 1
    theta[:, 1, 1] = side
    theta[:, 1, 2] = (y0 + side / 2) * 2 - 1
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], out, out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# The independent masked view (masked_view="independent"), fixed before any run of the study
# (benchmarks/README.md): a random square crop of 50-100% of the area (the image view keeps the recipe's),
# a horizontal flip half the time, and brightness, contrast and saturation each scaled by a factor drawn
# from [0.6, 1.4] (torchvision's ColorJitter(0.4, 0.4, 0.4) without hue, SimCLR's strongest terms).
VIEW_CROP_SCALE = (0.5, 1.0)
VIEW_JITTER = 0.4


def color_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] with (B, 3) factors for brightness, contrast and saturation, applied in that
    order as torchvision's adjust_* do (contrast about the image's mean grey, saturation about each pixel's
    grey, with torchvision's rgb_to_grayscale weights), clamped to [0, 1] after each."""
    luma = torch.tensor([0.2989, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    b, c, s = (f.view(-1, 1, 1, 1) for f in factors.to(x.dtype).unbind(1))
    x = (x * b).clamp(0, 1)
    mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = ((x - mean) * c + mean).clamp(0, 1)
    grey = (x * luma).sum(1, keepdim=True)
    return ((x - grey) * s + grey).clamp(0, 1)


def crop_keypoints(kps: torch.Tensor, params: torch.Tensor, src: int, out: int) -> torch.Tensor:
    """The same crop applied to keypoints (B, P, K, 3) given in source pixels: returns output pixels."""
    side, x0, y0, flip = (t[:, None, None] for t in params.unbind(1))
    scale = out / (side * src)
    x = (kps[..., 0] - x0 * src) * scale
    y = (kps[..., 1] - y0 * src) * scale
    x = torch.where(flip > 0, out - x, x)
    return torch.stack([x, y, kps[..., 2]], dim=-1)


class BatchViews:
    """The device half of a step: a HostBatch's pixels, heatmaps and tokens to the device, and the step's
    views made there (crop, flip, heatmap; the independent masked view)."""

    def __init__(
        self,
        *,
        image_size: int,
        side: int,
        device: torch.device,
        seed: int,
        rank: int,
        skeleton: Skeleton,
        crop_scale: tuple[float, float],
        hflip: bool,
        focus: bool,
        heatmap_parts: bool,
        uniform_heatmap: bool,
        stored_heatmaps: bool,
        shuffled_heatmap: bool = False,
        channels_last: bool,
        masked_view: str,
    ):
        self.image_size, self.side, self.device = image_size, side, device
        self.seed, self.rank, self.skeleton = seed, rank, skeleton
        self.crop_scale, self.hflip, self.focus, self.parts = crop_scale, hflip, focus, heatmap_parts
        self.crop = tuple(crop_scale) != (1.0, 1.0) or hflip or side != image_size
        self.uniform, self.shuffled = uniform_heatmap, shuffled_heatmap
        self.independent = focus and masked_view == "independent"
        self.channels_last = channels_last
        self.pin = device.type == "cuda"
        rendered = focus and not stored_heatmaps and not uniform_heatmap  # from the keypoints, per step
        if heatmap_parts and rendered and not skeleton.parts:
            raise PipelineError(f"--heatmap-parts: the {skeleton.name} skeleton defines no body parts")

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if x.device == self.device:
            return x
        if self.pin and not x.is_pinned():
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def make(self, host: HostBatch, epoch: int, step: int) -> Batch:
        b = host.images.shape[0]
        gen, _ = step_generators(self.seed, self.rank, epoch, step)
        params = self._to_device(crop_params(b, gen, scale=self.crop_scale, hflip=self.hflip))
        tokens = self._to_device(host.tokens)
        source = self._to_device(host.images).permute(0, 3, 1, 2).float().div_(255.0)
        if host.heatmaps is not None and self.focus:
            heat_u8 = self._to_device(host.heatmaps)
            source = torch.cat([source, heat_u8.unsqueeze(1).float().div_(255.0)], dim=1)
        kps = self._to_device(host.keypoints)
        x, heat = self._view(source, params, kps, crop=self.crop, render=not self.independent)
        masked = None
        if self.independent:  # its own crop, flip and jitter; the heatmap goes with the masked view
            view_gen = view_generator(self.seed, self.rank, epoch, step)
            view = crop_params(b, view_gen, scale=VIEW_CROP_SCALE, hflip=True).to(self.device)
            factors = 1 + VIEW_JITTER * (2 * torch.rand(b, 3, generator=view_gen) - 1)
            masked, heat = self._view(source, view, kps, crop=True)
            masked = color_jitter(masked, factors.to(self.device))
        if self.shuffled and heat is not None:  # each image gets the next one's: location information gone
            heat = heat.roll(1, dims=0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            if masked is not None:
                masked = masked.contiguous(memory_format=torch.channels_last)
        return Batch(images=x, heatmaps=heat, tokens=tokens, text_stats=host.text_stats, masked_images=masked)

    def _view(
        self,
        source: torch.Tensor,
        params: torch.Tensor,
        kps: torch.Tensor,
        *,
        crop: bool,
        render: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One view of the batch: (B, 3, S, S) pixels [+ a stored heatmap channel] cropped by `params`, and
        its heatmap (FocusCLIP: the stored one under the same crop, ones, or, with `render`, drawn from the
        keypoints under the same crop)."""
        b = source.shape[0]
        x = crop_images(source, params, self.image_size) if crop else source
        heat = None
        if self.focus:
            if self.uniform:
                heat = torch.ones((b, self.image_size, self.image_size), device=self.device)
            elif x.shape[1] == 4:
                heat = x[:, 3].clamp(0, 1)
                x = x[:, :3]
            elif render:
                if crop:
                    kps = crop_keypoints(kps, params, self.side, self.image_size)
                sizes = torch.full((b, 2), float(self.image_size), device=self.device)
                heat = roi_heatmap_torch(
                    kps, sizes, (self.image_size, self.image_size), parts=self.parts, skeleton=self.skeleton
                )
        return x.clamp(0, 1), heat
