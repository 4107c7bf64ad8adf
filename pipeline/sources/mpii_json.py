"""Reader for the mmpose/HRNet MPII JSON (mpii_train.json, mpii_val.json, ...): a list of people.

    [{"image": "051423444.jpg", "joints": [[x, y] x16], "joints_vis": [0/1 x16], "center": [x, y],
      "scale": 3.14}, ...]

joints_vis is 1 for an *annotated* joint (occluded ones included) and 0 for a joint that was not annotated,
whose coordinates are [-1, -1]; so v = 2 (annotated, no occlusion flag) or 0. center and scale are the .mat
objpos and scale, unshifted. The file has no activity labels and no split field: the split is taken from
the file name (mpii_val.json -> val) unless given.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.records import MISSING, NUM_KEYPOINTS, VISIBLE, ImageAnnotation, Person
from pipeline.sources.base import EXPECTED_JSON, SourceData, json_kind, load_json, split_from_name


def _load(path: Path) -> list:
    """The list of people; a one-line error saying what the file is instead (null, a list of numbers, a COCO
    results file, ...) when it is not one."""
    data = load_json(path)
    first = data[0] if isinstance(data, list) and data else None
    if not (isinstance(first, dict) and {"image", "joints"} <= first.keys()):
        raise PipelineError(f"{path}: {json_kind(data)}; {EXPECTED_JSON}")
    return data


def _check_record(path: Path, i: int, rec: object) -> None:
    if not isinstance(rec, dict):
        raise PipelineError(
            f"{path}: record {i} is a {type(rec).__name__}, not an object with image and joints"
        )
    missing = [k for k in ("image", "joints") if k not in rec]
    if missing:
        raise PipelineError(
            f"{path}: record {i} has no {' or '.join(missing)} (keys: {', '.join(rec)}); "
            f"not the mmpose/HRNet MPII format"
        )
    if not isinstance(rec["image"], str):
        raise PipelineError(
            f"{path}: record {i}: image is {json.dumps(rec['image'])}, not a file name (a JSON string)"
        )


def _array(path: Path, i: int, key: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PipelineError(f"{path}: record {i}: {key} is not numeric") from None
    except OverflowError:  # an integer written with hundreds of digits
        raise PipelineError(f"{path}: record {i}: {key} has a number too large for a float") from None
    if arr.shape != shape:
        raise PipelineError(
            f"{path}: record {i}: {key} has shape {list(arr.shape)}, expected {list(shape)} (16 MPII joints)"
        )
    return arr


def read(path: Path, *, split: str | None = None) -> SourceData:
    records = _load(path)
    split = split or split_from_name(path)
    counts: Counter = Counter(rows=len(records))
    images: dict[str, ImageAnnotation] = {}
    for i, rec in enumerate(records):
        _check_record(path, i, rec)
        name = rec["image"].strip()
        if not name:
            counts["dropped_person:no_image_name"] += 1
            continue
        joints = _array(path, i, "joints", rec["joints"], (NUM_KEYPOINTS, 2))
        vis = rec.get("joints_vis")
        # NaN / inf stay annotated here so that read_source counts them (dropped_point:out_of_range).
        annotated = ~(joints == -1).all(1)
        if vis is not None:
            annotated &= _array(path, i, "joints_vis", vis, (NUM_KEYPOINTS,)).reshape(-1) > 0
        kps = np.full((NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
        kps[:, 2] = MISSING
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, dropped and counted by read_source
            kps[annotated, :2] = joints[annotated]
        kps[annotated, 2] = VISIBLE
        center = rec.get("center")
        center_xy = None
        if center is not None:
            c = _array(path, i, "center", center, (2,))
            # mmpose marks an unknown center as [-1, -1].
            center_xy = None if (c == -1).all() else (float(c[0]), float(c[1]))
        scale = rec.get("scale")
        if scale is not None:
            scale = float(_array(path, i, "scale", scale, ()))
        person = Person(keypoints=kps, center=center_xy, scale=scale if scale and scale > 0 else None)
        ann = images.get(name)
        if ann is None:
            ann = images[name] = ImageAnnotation(image=name, split=split)
        ann.people.append(person)
    return SourceData(
        path=path,
        format="json",
        images=images,
        has_people=True,
        has_activity=False,
        has_occlusion=False,
        split_per_image=False,
        counts=counts,
    )
