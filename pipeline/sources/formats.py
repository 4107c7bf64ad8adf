"""Which reader an annotation file needs, from its content, and the file read through it.

    from pipeline.sources.formats import read_source
    src = read_source(Path("valid.h5"))  # SourceData: images by name, what the source provides, counters

Formats (see ../shared/data/mpii/PROVENANCE.md for each one's conventions):
    mat   the official mpii_human_pose_v1_u12_1.mat (struct RELEASE)               (pipeline.sources.mpii_mat)
    json  the mmpose/HRNet list of people {image, joints, joints_vis, center, scale} (.mpii_json)
    h5    the stacked-hourglass annotations (imgname, part, visible, center, scale) (.mpii_h5)
    csv   the widely shared mpii_dataset.csv (NAME, 16 joints x _X/_Y, Scale, ...)   (.mpii_csv)
    coco  a COCO-format keypoints JSON object {images, annotations, categories}: COCO, CrowdPose, AP-10K,
          MPII-TRB, ... with its own skeleton (.coco_keypoints)

Every reader returns keypoints in the one convention of pipeline.records, in the .mat's pixel coordinates
(the raw values every one of these formats stores; none is shifted by -1 here), with center = the .mat
objpos and scale = the .mat scale (height / 200 px); format-specific shifts are undone by the readers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.sources import coco_keypoints, mpii_csv, mpii_h5, mpii_json, mpii_mat
from pipeline.sources.base import EXPECTED_JSON, SourceData, drop_implausible, json_kind

log = logging.getLogger(__name__)

# format -> its reader: read(path, *, split) -> SourceData
READERS: dict[str, Callable[..., SourceData]] = {
    "mat": mpii_mat.read,
    "json": mpii_json.read,
    "h5": mpii_h5.read,
    "csv": mpii_csv.read,
    "coco": coco_keypoints.read,
}
FORMATS = tuple(READERS)

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
    src = READERS[fmt](path, split=split)
    drop_implausible(src)
    log.info(
        "read %s: %d images, %d people",
        src.label,
        len(src.images),
        sum(len(a.people) for a in src.images.values()),
    )
    return src
