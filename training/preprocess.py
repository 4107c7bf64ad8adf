"""A run's image and text preprocessing, recorded once (meta.json "preprocess") and used by training, by
`eval --run` and by open_clip's preprocess_cfg of the loaded model: one pipeline per model.

    pp = Preprocess.for_run(cfg, clip)           # at training set-up
    pp.resize(pil_image)                          # the training cache's resize (uint8, before any crop)
    transform = pp.transform()                    # eval: the same resize, ToTensor, then (x - mean) / std

Training squashes every image to a square (no crop at load time: the descriptions talk about every
person and who is left or right) and normalises on the device (training/model.py); eval applies the
same squash with the same PIL call (torchvision's Resize on a PIL image is `image.resize(size, resample)`),
so the pixels a model is scored on are the pixels it was trained on, bit for bit. `normalize="none"` is
the reference code's ToTensor-only input in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import open_clip
from PIL import Image

from pipeline.errors import PipelineError

NO_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True, slots=True)
class Preprocess:
    size: int
    context_length: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "squash"
    interpolation: str = "bicubic"

    @classmethod
    def for_run(
        cls, *, size: int, context_length: int, normalize: str, clip, interpolation: str = "bicubic"
    ) -> Preprocess:
        """normalize: "arch" (the model's own mean/std, open_clip's preprocess_cfg) or "none" ([0, 1])."""
        if normalize == "none":
            mean, std = NO_NORMALIZATION
        elif normalize == "arch":
            pp = getattr(clip.visual, "preprocess_cfg", {}) or {}
            mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN)
            std = pp.get("std", open_clip.OPENAI_DATASET_STD)
        else:
            raise PipelineError(f"normalize must be arch or none, not {normalize!r}")
        return cls(
            size=int(size),
            context_length=int(context_length),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            interpolation=interpolation,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resize(self, image: Image.Image) -> Image.Image:
        if self.resize_mode != "squash":
            raise PipelineError(f"training supports resize_mode squash only, not {self.resize_mode!r}")
        return image.resize((self.size, self.size), RESAMPLE[self.interpolation])

    def open_clip_cfg(self) -> dict[str, Any]:
        """open_clip's preprocess_cfg (set on the loaded model, so exports carry it)."""
        return {
            "size": (self.size, self.size),
            "mode": "RGB",
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": 0,
        }

    def transform(self):
        return open_clip.image_transform(
            self.size,
            is_train=False,
            mean=self.mean,
            std=self.std,
            resize_mode=self.resize_mode,
            interpolation=self.interpolation,
        )
