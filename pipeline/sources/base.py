"""What every annotation reader shares: the SourceData record it returns, the JSON helpers of the COCO-format
readers, the split a file's name implies, and the check that drops implausible coordinates.

    src = SourceData(path, "coco", images, has_people=True, ...)   # what a reader returns
    data = load_json(path)                                          # a one-line error for bad JSON
    split_from_name(Path("mpii_val.json"))                          # "val"
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.records import MISSING, ImageAnnotation

# No MPII image is wider than 1920 px (the real CSV's joints span -36 .. 1921): a coordinate beyond this is
# an encoding error (1e40, a unit mix-up), and a "visible" joint there would blank the person's heatmap.
MAX_COORD = 10_000.0


@dataclass(slots=True)
class SourceData:
    """What one annotation file holds, as records, plus what it can and cannot tell."""

    path: Path
    format: str  # one of pipeline.sources.formats.FORMATS
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


# What convert reads from JSON, said whenever a JSON file is something else.
EXPECTED_JSON = (
    "convert reads a COCO-format keypoints object {images, annotations, categories} "
    "(person_keypoints_*.json, CrowdPose, AP-10K, ...) or the mmpose/HRNet MPII list of people "
    "[{image, joints, joints_vis, center, scale}, ...]"
)
_RESULT_KEYS = {"keypoints", "bbox", "segmentation"}  # what a COCO annotation (or detection result) carries
_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words: "JSON null", "a JSON list of 3 numbers", "a JSON list of COCO
    annotations (image_id, keypoints, ...)" (a keypoint results file, or a file's bare annotations list)."""
    if value is None:
        return "JSON null"
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if not isinstance(value, list):
        return f"a JSON {kind}"
    if not value:
        return "an empty JSON list"
    first = value[0]
    if isinstance(first, dict) and "image_id" in first and _RESULT_KEYS & first.keys():
        return (
            f"a JSON list of COCO annotations ({', '.join(list(first)[:5])}, ...) without images or "
            f"categories: a keypoint results file, or a file's bare annotations list"
        )
    inner = "null value" if first is None else _JSON_TYPES.get(type(first), type(first).__name__)
    n = len(value)
    return f"a JSON list of {n} {inner}{'' if n == 1 else 's'} (the first: {json.dumps(first)[:40]})"


def load_json(path: Path) -> Any:
    """The parsed file; a one-line PipelineError for text that is not UTF-8 JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError as err:
        raise PipelineError(f"{path}: not UTF-8 text: {err}") from None
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); truncated file?"
        ) from None
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from None


def records(path: Path, data: dict, key: str) -> list[dict]:
    """data[key] as a list of objects, or a one-line error naming the first record that is not one."""
    items = data.get(key)
    if not isinstance(items, list):
        raise PipelineError(f"{path}: '{key}' is {type(items).__name__}, not a list (COCO format)")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PipelineError(f"{path}: {key}[{i}] is a {type(item).__name__}, not an object")
    return items


def record_id(path: Path, where: str, rec: dict, key: str = "id") -> int | str:
    """An image, category or annotation id: COCO writes integers, some exports strings."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PipelineError(f"{path}: {where}: {key} is {json.dumps(value)}, not an id (integer or string)")
    return value


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
