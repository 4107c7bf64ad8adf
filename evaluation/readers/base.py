"""What every dataset reader returns: samples (an image source, labels, an optional crop box) and the
rows it had to drop, counted by reason. Readers only parse annotations; images are opened later, in the
DataLoader workers (evaluation.data), so a corrupt file costs one sample, not the task.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Sample:
    """One thing to classify.

    source: an image file, a video clip (with `video` set), or a decoded grayscale/RGB array (FER CSVs).
    labels: every label field the dataset has for it, as strings (task picks one, e.g. "age_group").
    box: (x0, y0, x1, y1) pixel crop applied before preprocessing (person/face boxes).
    is_video: source is a clip; one frame is decoded from the middle of `segment` (start, end seconds in
        the original video) or, for a clip already cut to its segment, from the clip's middle.
    """

    source: str | np.ndarray
    labels: dict[str, str]
    box: tuple[float, float, float, float] | None = None
    is_video: bool = False
    segment: tuple[float, float] | None = None
    name: str = ""


@dataclass(slots=True)
class ReadResult:
    samples: list[Sample] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    # The dataset's own class list in index order (actions.txt, the CSV's labels) when it has one.
    classes: tuple[str, ...] | None = None
    # The split actually read (Kinetics falls back from test to val when test has no labels).
    split: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReaderInput:
    """Where a reader looks: the dataset folder, the split, options from the task, and other datasets'
    folders (FER+ can take its pixels from FER2013's CSV)."""

    root: Path
    split: str
    options: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


class DataAbsent(Exception):
    """The annotation files a reader needs are absent: the task is reported skipped, with `looked_for`."""

    def __init__(self, message: str, looked_for: list[Path]):
        super().__init__(message)
        self.looked_for = [str(p) for p in looked_for]


def first_existing(candidates: list[Path]) -> Path | None:
    for path in candidates:
        if path.exists():
            return path
    return None


def require(candidates: list[Path], what: str) -> Path:
    found = first_existing(candidates)
    if found is None:
        raise DataAbsent(f"{what} not found", candidates)
    return found


def index_files(root: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Every file under root with one of the suffixes, by file name (first one wins on duplicates)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in suffixes and path.is_file():
            out.setdefault(path.name, path)
    return out


def pixels_to_array(pixels: str, size: int = 48) -> np.ndarray:
    """FER2013's `pixels` column: size*size space-separated uint8 values, row-major."""
    values = np.array(pixels.split(), dtype=np.int64)
    if values.size != size * size or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise ValueError(f"expected {size * size} values in 0..255, got {values.size}")
    return values.astype(np.uint8).reshape(size, size)
