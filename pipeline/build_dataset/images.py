"""build-dataset's per-image work, run in its worker pool: read one image file, match it to the size its
annotations record, check its instances' boxes and masks, maybe shrink it, render its ROI heatmap.

    res = process_image(ImageJob(path, people, sources, texts, skeleton, recorded_size), opts)
    res.reason    # None (usable) or why the image is left out: missing_image, unreadable_image,
                  # corrupt_image, image_too_large (over --max-image-pixels), size_mismatch
    res.dropped   # {instance index: Problem}: instances left out of the row (pipeline.bounds)
    res.scale     # stored pixels per annotation pixel, x and y: what the row's coordinates are multiplied by

A file whose size is not the one the annotations record (COCO files record it) is used when it is the recorded
picture resized (bounds.rescale_factor: the same aspect ratio up to one pixel of rounding): its keypoints,
boxes and masks are scaled to it (`rescaled`). Any other size is size_mismatch: the ROI would not line up.
An instance whose box, or mask when the mask draws its region, lies far off the image is dropped before
pycocotools sees it (bounds.instance_problem); the image keeps its other instances.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipeline.bounds import Problem, instance_problem, rescale_factor
from pipeline.build_dataset.card import count_words, token_counter
from pipeline.build_dataset.config import ROI_FALLBACK
from pipeline.heatmaps import PNG_ENCODERS, instance_heatmap, to_uint8
from pipeline.images import ImageError, ImageTooLarge, decoding, max_pixels, open_image
from pipeline.records import Person
from pipeline.skeletons import MPII, Skeleton

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class ImageOptions:
    max_side: int | None
    jpeg_quality: int
    heatmap_parts: bool
    png_level: int
    png_encoder: str = "pillow"  # a key of pipeline.heatmaps.PNG_ENCODERS


@dataclass(slots=True)
class ImageJob:
    path: str
    people: list[Person]  # the image's instances, in annotation pixels
    sources: list[str | None]  # per instance, where its region comes from (roi_choice)
    texts: list[str]  # descriptions, for their length statistics
    skeleton: Skeleton = MPII  # the keypoints' (the part heatmap's body parts)
    recorded_size: tuple[int, int] | None = None  # (width, height) the annotations record, if they do


@dataclass(slots=True)
class ImageResult:
    reason: str | None = None  # None: the image is usable
    detail: str = ""
    image: bytes = b""
    heatmap: bytes = b""
    width: int = 0
    height: int = 0
    scale: tuple[float, float] = (1.0, 1.0)  # stored / annotation pixels, x and y
    words: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    dropped: dict[int, Problem] = field(default_factory=dict)  # instance index -> why it was left out
    rescaled: bool = False  # the file is the recorded picture at another size; the annotations followed


def stored_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Size after shrinking the longer side to max_side (never enlarging), aspect ratio kept."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    f = max_side / max(width, height)
    return max(1, round(width * f)), max(1, round(height * f))


def encode_heatmap(
    keypoints: np.ndarray,
    size: tuple[int, int],
    *,
    parts: bool,
    png_level: int,
    png_encoder: str = "pillow",
    boxes: np.ndarray | None = None,
    segmentations: Sequence[str] = (),
    mask_size: tuple[int, int] | None = None,
    skeleton: Skeleton = MPII,
) -> bytes:
    """ROI heatmap of keypoints and boxes given in stored-image pixels (and masks decoded at mask_size, the
    size their coordinates refer to), as an 8-bit grayscale PNG of the stored size."""
    boxes = np.zeros((0, 4)) if boxes is None else boxes
    hm = instance_heatmap(
        keypoints, boxes, segmentations, size, size, mask_size=mask_size, parts=parts, skeleton=skeleton
    )
    return PNG_ENCODERS[png_encoder](to_uint8(hm), png_level)


def roi_choice(people: list[Person], roi: str) -> list[str | None]:
    """Per instance, where its part of the heatmap comes from under --roi: the first of ROI_FALLBACK[roi] it
    has (keypoints: any known joint), None when it has none (a crowd region under --roi keypoints)."""
    out = []
    for p in people:
        has = {
            "mask": p.segmentation is not None,
            "box": p.source_box is not None,
            "keypoints": p.num_known > 0,
        }
        out.append(next((s for s in ROI_FALLBACK[roi] if has[s]), None))
    return out


def annotation_frame(
    recorded: tuple[int, int] | None, actual: tuple[int, int], path: str
) -> tuple[tuple[int, int], tuple[float, float]]:
    """(the size the annotations' pixels refer to, the factors from it to the file's pixels); ImageError when
    the file is not the recorded picture (size_mismatch)."""
    if recorded is None or recorded == actual:
        return actual, (1.0, 1.0)
    (rw, rh), (aw, ah) = recorded, actual
    factor = rescale_factor(recorded, actual)
    if factor is None:
        raise ImageError(
            f"{path}: the file is {aw}x{ah}, the annotations record {rw}x{rh} (another aspect ratio: the "
            f"keypoints, boxes and masks would not line up)"
        )
    if rw * rh > max_pixels():  # masks are decoded at the recorded size
        raise ImageError(f"{path}: the recorded size {rw}x{rh} is over the pixel limit ({aw}x{ah} on disk)")
    return recorded, factor


def roi_inputs(job: ImageJob, dropped: dict[int, Problem]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The kept instances' keypoints (K, 3 each; those without a region too, which draw nothing), boxes (B, 4)
    and masks, each from the instances whose region it gives, in annotation pixels."""
    kept = [(p, s) for i, (p, s) in enumerate(zip(job.people, job.sources, strict=True)) if i not in dropped]
    kps = [p.keypoints for p, s in kept if s in ("keypoints", None)]
    k = job.skeleton.num_joints
    keypoints = np.stack(kps).astype(np.float32) if kps else np.zeros((0, k, 3), np.float32)
    boxes = np.array([p.source_box for p, s in kept if s == "box"], dtype=np.float64).reshape(-1, 4)
    return keypoints, boxes, [p.segmentation for p, s in kept if s == "mask"]


def _read(path: str) -> bytes | ImageResult:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return ImageResult("missing_image", path)
    except OSError as err:
        return ImageResult("unreadable_image", f"{path}: {err.strerror or err}")


def process_image(job: ImageJob, opts: ImageOptions) -> ImageResult:
    """Read, check, fully decode, maybe shrink and render the heatmap of one image; bad data -> a reason."""
    data = _read(job.path)
    if isinstance(data, ImageResult):
        return data
    try:
        with decoding(job.path), open_image(data, job.path) as img:
            width, height = img.size
            try:
                frame, (fx, fy) = annotation_frame(job.recorded_size, (width, height), job.path)
            except ImageError as err:
                return ImageResult("size_mismatch", str(err))
            fmt = img.format
            size = stored_size(width, height, opts.max_side)
            if size != (width, height):
                img.draft(img.mode, size)  # JPEG DCT scaling: decode at >= the target size, much faster
            img.load()  # a full decode: truncated or corrupt files fail here, not in a user's training loop
            # datasets' Image feature applies an EXIF rotation when decoding, which would turn the picture
            # away from the keypoints (annotated on the stored pixels): such files are re-encoded without it.
            rotated = img.getexif().get(EXIF_ORIENTATION, 1) != 1
            if size != (width, height):
                data = _reencode(img.resize(size, Image.Resampling.LANCZOS), fmt, opts.jpeg_quality)
            elif rotated:
                data = _reencode(img, fmt, opts.jpeg_quality)
    except ImageTooLarge as err:
        return ImageResult("image_too_large", str(err))
    except ImageError as err:
        return ImageResult("corrupt_image", str(err))
    dropped = {
        i: problem
        for i, (p, s) in enumerate(zip(job.people, job.sources, strict=True))
        if (problem := instance_problem(p, frame, mask=s == "mask")) is not None
    }
    sx, sy = size[0] / width * fx, size[1] / height * fy
    kps, boxes, masks = roi_inputs(job, dropped)
    kps[..., 0] *= sx
    kps[..., 1] *= sy
    boxes *= np.array([sx, sy, sx, sy])
    heatmap = encode_heatmap(
        kps, size, parts=opts.heatmap_parts, png_level=opts.png_level, png_encoder=opts.png_encoder,
        boxes=boxes, segmentations=masks, mask_size=frame, skeleton=job.skeleton,
    )  # fmt: skip
    count = token_counter()
    return ImageResult(
        None,
        "",
        data,
        heatmap,
        size[0],
        size[1],
        (sx, sy),
        words=[count_words(t) for t in job.texts],
        tokens=[count(t) for t in job.texts],
        dropped=dropped,
        rescaled=(fx, fy) != (1.0, 1.0),
    )


def _reencode(img: Image.Image, fmt: str | None, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG" or (fmt != "PNG" and img.mode in ("RGB", "L", "CMYK")):
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def run_job(item: tuple[ImageJob, ImageOptions]) -> ImageResult:
    return process_image(*item)
