"""Turning reader samples into model inputs inside DataLoader workers: open the image (or decode one frame
of a clip with PyAV, cached on disk), crop the box, apply the model's preprocess. A sample that cannot be
loaded comes back with a reason instead of a tensor, so the run counts it rather than crashing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluation.readers.base import Sample

log = logging.getLogger(__name__)


class LoadError(Exception):
    """A sample that cannot be turned into an image; str(err) is the reason it is counted under."""


def clamp_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    x0, x1 = sorted((max(0, min(width, round(x0))), max(0, min(width, round(x1)))))
    y0, y1 = sorted((max(0, min(height, round(y0))), max(0, min(height, round(y1)))))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise LoadError("empty crop box")
    return x0, y0, x1, y1


def decode_middle_frame(path: str, segment: tuple[float, float] | None) -> Image.Image:
    """The frame at the middle of `segment` in a full video, or at the middle of a clip already cut to it.

    A clip is taken to be cut to its segment when it is no longer than the segment (+1 s of slack), which is
    how the usual Kinetics downloaders store them (10 s files named id_start_end)."""
    import av  # PyAV loads FFmpeg's libraries; only the video tasks (Kinetics) read clips

    with av.open(path) as container:
        stream = container.streams.video[0]
        duration = None
        if container.duration:
            duration = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        if segment is not None and duration is not None and duration > (segment[1] - segment[0]) + 1.0:
            target = (segment[0] + segment[1]) / 2
        else:
            target = (duration or 0.0) / 2
        if target > 0 and stream.time_base:
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        last = None
        for frame in container.decode(stream):
            last = frame
            if frame.time is None or frame.time + 1e-6 >= target:
                break
        if last is None:
            raise LoadError("clip decode failed")
        return last.to_image()


def cached_frame(sample: Sample, cache_dir: Path) -> Image.Image:
    # Keyed by the clip's path and segment: the frame stays usable after the clips are moved off disk.
    ident = f"{os.path.abspath(str(sample.source))}|{sample.segment}"
    key = hashlib.sha1(ident.encode()).hexdigest()[:12]
    cached = cache_dir / f"{Path(str(sample.source)).stem}-{key}.jpg"
    if cached.is_file():
        with Image.open(cached) as image:
            return image.convert("RGB")
    try:
        image = decode_middle_frame(str(sample.source), sample.segment).convert("RGB")
    except LoadError:
        raise
    except Exception as err:  # PyAV raises its own error types for every container/codec problem
        log.debug("decode failed for %s: %s", sample.source, err)
        raise LoadError("clip decode failed") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}.jpg")
    image.save(tmp, quality=95)
    tmp.replace(cached)  # atomic: a concurrent worker never reads half a file
    return image


def load_image(sample: Sample, cache_dir: Path | None) -> Image.Image:
    if isinstance(sample.source, np.ndarray):
        image = Image.fromarray(sample.source).convert("RGB")
    elif sample.is_video:
        if cache_dir is None:
            raise LoadError("clip decode failed")
        image = cached_frame(sample, cache_dir)
    else:
        try:
            with Image.open(sample.source) as opened:
                image = opened.convert("RGB")
        except FileNotFoundError:
            raise LoadError("image missing") from None
        except (OSError, ValueError, Image.DecompressionBombError):
            raise LoadError("unreadable image") from None
    if sample.box is not None:
        image = image.crop(clamp_box(sample.box, *image.size))
    return image


class EvalDataset(torch.utils.data.Dataset):
    """Item i -> (tensor or None, i, reason); reason is "" when the sample loaded."""

    def __init__(self, samples: list[Sample], transform, cache_dir: Path | None = None):
        self.samples = samples
        self.transform = transform
        self.cache_dir = cache_dir

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        try:
            return self.transform(load_image(self.samples[i], self.cache_dir)), i, ""
        except LoadError as err:
            return None, i, str(err)
        except Exception as err:  # anything else one odd file triggers (codec, transform) costs one sample
            log.debug("sample %d (%s) failed: %r", i, self.samples[i].name, err)
            return None, i, f"load failed ({type(err).__name__})"


def collate(batch):
    """-> (stacked images of the loaded samples or None, their indices, [(index, reason)] of the others)."""
    loaded = [(x, i) for x, i, reason in batch if not reason]
    failed = [(i, reason) for _, i, reason in batch if reason]
    images = torch.stack([x for x, _ in loaded]) if loaded else None
    return images, torch.tensor([i for _, i in loaded], dtype=torch.long), failed
