"""Readers for every common form of the MPII Human Pose annotations, and for COCO-format keypoint files,
chosen by the file's content.

    from pipeline.mpii import read_source
    src = read_source(Path("valid.h5"))  # SourceData: images by name, what the source provides, counters

Formats (see ../shared/data/mpii/PROVENANCE.md for each one's conventions):
    mat   the official mpii_human_pose_v1_u12_1.mat (struct RELEASE)               (pipeline.mpii.mat)
    json  the mmpose/HRNet list of people {image, joints, joints_vis, center, scale} (.mmpose_json)
    h5    the stacked-hourglass annotations (imgname, part, visible, center, scale) (.hourglass_h5)
    csv   the widely shared mpii_dataset.csv (NAME, 16 joints x _X/_Y, Scale, ...)   (.csv_table)
    coco  a COCO-format keypoints JSON object {images, annotations, categories}: COCO, CrowdPose, AP-10K,
          MPII-TRB, ... with its own skeleton (pipeline.coco.keypoints)

Every reader returns keypoints in the one convention of pipeline.records, in the .mat's pixel coordinates
(the raw values every one of these formats stores; none is shifted by -1 here), with center = the .mat
objpos and scale = the .mat scale (height / 200 px); format-specific shifts are undone by the readers.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.coco import EXPECTED_JSON, json_kind
from pipeline.errors import PipelineError
from pipeline.records import MISSING, ImageAnnotation

log = logging.getLogger(__name__)

FORMATS = ("mat", "json", "h5", "csv", "coco")
_READERS = {
    "mat": "pipeline.mpii.mat",
    "json": "pipeline.mpii.mmpose_json",
    "h5": "pipeline.mpii.hourglass_h5",
    "csv": "pipeline.mpii.csv_table",
    "coco": "pipeline.coco.keypoints",
}

# No MPII image is wider than 1920 px (the real CSV's joints span -36 .. 1921): a coordinate beyond this is
# an encoding error (1e40, a unit mix-up), and a "visible" joint there would blank the person's heatmap.
MAX_COORD = 10_000.0

_MAT5 = b"MATLAB 5.0 MAT-file"
_MAT73 = b"MATLAB 7.3 MAT-file"
_HDF5 = b"\x89HDF\r\n\x1a\n"
# Magic numbers of files people pass by mistake, to say what the file is instead.
_OTHER_MAGIC = {
    b"\xff\xd8\xff": "a JPEG image",
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip file",
    b"PAR1": "a Parquet file",
    b"%PDF": "a PDF document",
}


@dataclass(slots=True)
class SourceData:
    """What one annotation file holds, as records, plus what it can and cannot tell."""

    path: Path
    format: str  # one of FORMATS
    images: dict[str, ImageAnnotation]  # by image name, in file order
    has_people: bool  # the source carries keypoints
    has_activity: bool  # the source carries activity labels
    has_occlusion: bool  # the source separates occluded (v=1) from visible (v=2) joints
    split_per_image: bool  # the split comes from the file's content (img_train), not from a guess
    counts: Counter = field(default_factory=Counter)  # read-time counters: rows, dropped_<what>:<reason>, ...
    image_ids: dict[int | str, str] = field(
        default_factory=dict
    )  # COCO image id -> name (captions join on it)

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.format})"


def sniff_format(path: Path) -> str:
    """The format of an annotation file from its first bytes (the extension is not trusted)."""
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, not an annotation file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise PipelineError(f"{path}: empty file")
    if head.startswith(_MAT73):
        raise PipelineError(
            f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save it in MATLAB "
            f"with save(..., '-v7') (the official MPII file is v5)"
        )
    if head.startswith(_MAT5):
        return "mat"
    if head.startswith(_HDF5):
        return "h5"
    for magic, what in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise PipelineError(
                f"{path}: {what}, not an annotation file (MPII .mat, mmpose .json, hourglass "
                f".h5, mpii_dataset.csv or a COCO-format .json)"
            )
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text[:1] == "[":  # the mmpose/HRNet list of people
        return "json"
    if text[:1] == "{":  # a COCO-format object; pipeline.coco.keypoints says what else an object is
        return "coco"
    if len(head) < 4096:  # the whole file: JSON null, a number or a string says what it is
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            raise PipelineError(f"{path}: {json_kind(value)}; {EXPECTED_JSON}")
    first_line = text.split("\n", 1)[0]
    if "," in first_line and ("_X" in first_line or "NAME" in first_line.upper()):
        return "csv"
    if b"\0" in head:
        raise PipelineError(
            f"{path}: binary file of unknown kind, not an MPII annotation file (.mat, mmpose "
            f".json, hourglass .h5 or mpii_dataset.csv)"
        )
    raise PipelineError(
        f"{path}: text that is neither JSON nor an MPII CSV (first line: {first_line[:60]!r})"
    )


def read_source(path: str | Path, *, split: str | None = None) -> SourceData:
    """Read one annotation file of any supported format.

    split: the split for sources that do not record one per image (json, h5, csv, coco); default: guessed
    from the file name (train/val/test), "train" for the CSV (it holds only img_train == 1 images), "unknown"
    for a COCO-format file.
    """
    path = Path(path)
    fmt = sniff_format(path)
    module = importlib.import_module(_READERS[fmt])
    src = module.read(path, split=split)
    drop_implausible(src)
    log.info(
        "read %s: %d images, %d people",
        src.label,
        len(src.images),
        sum(len(a.people) for a in src.images.values()),
    )
    return src


def _plausible(values: tuple[float, ...] | None, limit: float) -> bool:
    return values is None or all(math.isfinite(v) and abs(v) <= limit for v in values)


def drop_implausible(src: SourceData) -> None:
    """Annotated joints with a non-finite or out-of-range coordinate become missing (v=0), counted in
    src.counts as dropped_point:out_of_range; such a center or scale becomes unknown, counted likewise."""
    for ann in src.images.values():
        for person in ann.people:
            kps = person.keypoints
            xy_ok = np.isfinite(kps[:, :2]).all(1) & (np.abs(kps[:, :2]) <= MAX_COORD).all(1)
            bad = (kps[:, 2] > MISSING) & ~xy_ok
            if bad.any():
                kps[bad, :2] = np.nan
                kps[bad, 2] = MISSING
                src.counts["dropped_point:out_of_range"] += int(bad.sum())
            if not _plausible(person.center, MAX_COORD):
                person.center = None
                src.counts["dropped_point:center_out_of_range"] += 1
            if person.scale is not None and not (
                _plausible((person.scale,), MAX_COORD / 200) and person.scale > 0
            ):
                person.scale = None
                src.counts["dropped_point:scale_out_of_range"] += 1


# The names the split files carry in mmpose (mpii_val.json), HRNet (valid.json) and pose-hg-train (valid.h5).
_SPLIT_STEMS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_from_name(path: Path, default: str = "unknown") -> str:
    """Split implied by a split file's name: mpii_val.json / valid.h5 -> val, mpii_train.json -> train.

    Only the names those projects use count (with an optional mpii_ prefix); anything else, such as mmpose's
    test fixture test_mpii.json, is `default` rather than a guess.
    """
    stem = path.stem.lower().removeprefix("mpii_").removeprefix("mpii-")
    return _SPLIT_STEMS.get(stem, default)
