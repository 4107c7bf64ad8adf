"""build-dataset's options (BuildConfig) and where a heatmap's region of interest may come from (--roi)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.artifacts.descriptions import STATUSES
from pipeline.errors import PipelineError
from pipeline.heatmaps import PNG_ENCODERS
from pipeline.images import max_pixels
from pipeline.store import Recorded, recorded, run_only

ROI_SOURCES = ("keypoints", "box", "mask")
# What an instance's region comes from when it lacks the chosen source: a mask's outline is best approximated
# by the box around it, a box by the box of the keypoints (which the keypoint blob is).
ROI_FALLBACK = {
    "mask": ("mask", "box", "keypoints"),
    "box": ("box", "keypoints"),
    "keypoints": ("keypoints",),
}


@dataclass(slots=True)
class BuildConfig:
    annotations: str
    descriptions: list[str]
    images: Path
    name: str | None = None  # default: the first descriptions artifact's name
    max_side: int | None = None  # shrink images whose longer side exceeds this (pixels); None keeps the bytes
    jpeg_quality: int = 95  # for re-encoded (resized) JPEGs
    max_shard_bytes: int = 500 * 2**20  # roll to a new shard past this many bytes of row payload
    max_shard_rows: int | None = None
    row_group_rows: int = 100  # what datasets itself writes for image data; keeps the Hub viewer fast
    workers: int = run_only(default_factory=lambda: min(8, os.cpu_count() or 1))
    executor: Literal["process", "thread"] = run_only("process")
    include_status: tuple[str, ...] = ("ok",)
    roi: Literal["keypoints", "box", "mask"] = "keypoints"  # where the heatmap's region comes from
    heatmap_parts: bool = False  # the body-part variant of the ROI heatmap (keypoints only)
    heatmap_png_level: int = 1  # zlib level of the heatmap PNGs: 1 is fast, and small enough
    # who writes the heatmap PNGs: Pillow, or our Sub-filter encoder ("fast": pipeline.heatmaps.png_gray,
    # ~2.3x less CPU per map, files ~16% larger, the same pixels)
    heatmap_encoder: Literal["pillow", "fast"] = "pillow"
    overwrite: bool = run_only(False)
    push_to_hub: str | None = run_only(None)
    private: bool = run_only(False)
    # where the images and annotations come from; decides the card's licence: "mpii" (MPII's terms),
    # "synthetic" (the embedded sample focus-pipeline generates, under the project's own licence) or "coco"
    # (a COCO-format source: COCO, CrowdPose, AP-10K, ... under their own terms); None: "mpii" when every
    # image has the MPII skeleton, else "coco"
    origin: Literal["mpii", "synthetic", "coco"] | None = None

    def __post_init__(self) -> None:
        self.images = Path(self.images).expanduser()
        self.descriptions = list(self.descriptions)
        self.include_status = tuple(self.include_status)
        if not self.descriptions:
            raise PipelineError("build-dataset needs at least one --descriptions artifact")
        bad = sorted(set(self.include_status) - set(STATUSES))
        if bad:
            raise PipelineError(
                f"--include-status {', '.join(bad)}: not a description status (one of {', '.join(STATUSES)})"
            )
        if self.max_side is not None and self.max_side < 8:
            raise PipelineError(f"--max-side {self.max_side}: must be at least 8 pixels")
        if self.max_shard_rows is not None and self.max_shard_rows < 1:
            raise PipelineError(f"--max-shard-rows {self.max_shard_rows}: must be at least 1")
        if self.max_shard_bytes < 1:
            raise PipelineError("--shard-size must be positive")
        if self.workers < 0:
            raise PipelineError(f"--workers {self.workers}: must be 0 (in-process) or more")
        if self.origin not in ("mpii", "synthetic", "coco", None):
            raise PipelineError(f"--origin {self.origin!r}: one of mpii, synthetic, coco")
        if self.roi not in ROI_SOURCES:
            raise PipelineError(f"--roi {self.roi!r}: one of {', '.join(ROI_SOURCES)}")
        if self.heatmap_parts and self.roi != "keypoints":
            raise PipelineError(
                f"--heatmap-parts draws body parts from keypoints; it does not go with --roi {self.roi}"
            )
        if self.heatmap_encoder not in PNG_ENCODERS:
            raise PipelineError(
                f"--heatmap-encoder {self.heatmap_encoder!r}: one of {', '.join(PNG_ENCODERS)}"
            )
        if self.executor not in ("process", "thread"):
            raise PipelineError(f"--executor {self.executor!r}: one of process, thread")

    @property
    def dataset_name(self) -> str:
        return self.name or self.descriptions[0]

    def recorded(self) -> Recorded:
        """The config as meta.json records it (the images folder resolved, the name filled in, and the pixel
        limit the images were read under: --max-image-pixels). The images stay content: the dataset embeds
        their bytes, and nothing else pins them."""
        derived = {
            "images": self.images.resolve(),
            "name": self.dataset_name,
            "max_image_pixels": max_pixels(),
        }
        return recorded(self).add(derived)
