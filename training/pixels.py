"""One stored image -> the uint8 pixels training sees: decoded and squashed to a square, exactly as eval's
resize does. The decoded cache (training/cache.py) and the stream (training/stream.py) both call this, so a
sample's pixels do not depend on the data mode.

    pixels = squash(image_bytes(row["image"], "train-00000 row 3"), 252, "RGB", "train-00000 row 3")
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import PipelineError
from training.preprocess import RESAMPLE


def image_bytes(cell, where: str) -> bytes:
    """An HF datasets Image cell ({bytes, path}) or raw bytes."""
    if isinstance(cell, dict):
        data = cell.get("bytes")
        if data is None and cell.get("path") and Path(cell["path"]).is_file():
            data = Path(cell["path"]).read_bytes()
    else:
        data = cell
    if not data:
        raise PipelineError(f"{where}: image has no bytes")
    return data


def squash(data: bytes, side: int, mode: str, where: str, interpolation: str = "bilinear") -> np.ndarray:
    """(side, side[, 3]) uint8: the image converted to `mode` and resized to a square, aspect not kept."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert(mode)
            # exactly eval's squash (training/preprocess.py: torchvision's Resize on a PIL image)
            return np.asarray(im.resize((side, side), RESAMPLE[interpolation]))
    except (OSError, ValueError) as err:
        raise PipelineError(f"{where}: cannot decode image ({err})") from None
