"""Reader for the official MPII release, mpii_human_pose_v1_u12_1.mat (MATLAB v5, struct RELEASE).

The real file is uneven, and every case below is handled rather than skipped silently (counters say how
often each one occurred):
- `annorect` empty, missing, or a lone struct (loadmat's squeeze_me turns 1x1 arrays into bare values);
- `annopoints` empty or missing (test images and some train rectangles have only scale/objpos);
- joints that are not annotated are absent point ids; `is_visible` is 0/1, the text '0'/'1', or [];
- activity labels missing (act_id = -1, act_name []), names cut at 100 characters.
Visibility: is_visible 1 -> v=2, 0 -> v=1 (annotated but occluded), [] -> v=2 (annotated, no flag).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import mat_struct

from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.records import (
    MISSING,
    NUM_KEYPOINTS,
    OCCLUDED,
    VISIBLE,
    ImageAnnotation,
    Person,
    empty_keypoints,
)
from pipeline.sources.base import SourceData

log = logging.getLogger(__name__)

RELEASE_FIELDS = ("annolist", "img_train", "act")
_EMPTY = np.zeros((0, 0))


def _items(value: Any) -> list:
    """Elements of a MATLAB struct array or cell, whatever loadmat made of it ([] -> no element)."""
    if value is None:
        return []
    if isinstance(value, mat_struct):
        return [value]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return []
        return list(value.ravel()) if value.dtype == object else [value]
    return [value]


def _number(value: Any) -> float | None:
    """A MATLAB scalar (number, 1x1 array, numeric text) as float; None for [] or anything unreadable."""
    kind = type(value)
    if kind is float:  # the common case after squeeze_me: checked first, this loop runs ~2M times
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(()).item()
    if isinstance(value, bytes | str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text(value: Any) -> str | None:
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.reshape(-1)[0] if value.dtype == object or value.size == 1 else "".join(value.ravel())
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _field(struct: Any, name: str) -> Any:
    return getattr(struct, name, None) if isinstance(struct, mat_struct) else None


def _visibility(raw: Any, counts: Counter) -> int:
    if type(raw) is float or type(raw) is int:
        return VISIBLE if raw > 0 else OCCLUDED
    if isinstance(raw, np.ndarray) and raw.size == 0:
        counts["is_visible_empty"] += 1
        return VISIBLE
    if isinstance(raw, str | bytes):
        counts["is_visible_text"] += 1
    flag = _number(raw)
    if flag is None:
        counts["is_visible_unreadable"] += 1
        return VISIBLE
    return VISIBLE if flag > 0 else OCCLUDED


def _person(rect: Any, counts: Counter) -> Person:
    kps = empty_keypoints()
    annopoints = _field(rect, "annopoints")
    points = _items(_field(annopoints, "point")) if isinstance(annopoints, mat_struct) else []
    if not points:
        counts["person_without_annopoints"] += 1
    for pt in points:
        if not isinstance(pt, mat_struct):
            counts["dropped_point:not_a_struct"] += 1
            continue
        jid, x, y = (
            _number(getattr(pt, "id", None)),
            _number(getattr(pt, "x", None)),
            _number(getattr(pt, "y", None)),
        )
        if jid is None or not (0 <= jid < NUM_KEYPOINTS) or jid != int(jid):
            counts["dropped_point:bad_id"] += 1
            continue
        if x is None or y is None:
            counts["dropped_point:no_coordinates"] += 1
            continue
        j = int(jid)
        if kps[j, 2] != MISSING:
            counts["dropped_point:duplicate_id"] += 1
            continue
        kps[j] = (x, y, _visibility(getattr(pt, "is_visible", _EMPTY), counts))
    objpos = _field(rect, "objpos")
    cx, cy = _number(_field(objpos, "x")), _number(_field(objpos, "y"))
    box = tuple(_number(_field(rect, f)) for f in ("x1", "y1", "x2", "y2"))
    return Person(
        keypoints=kps,
        center=None if cx is None or cy is None else (cx, cy),
        scale=_number(_field(rect, "scale")),
        head_box=None if any(b is None for b in box) else box,
    )


def load_release(path: Path) -> mat_struct:
    """RELEASE from the file, or a one-line PipelineError saying what is wrong with it."""
    try:
        variables = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as err:  # noqa: BLE001 -- scipy raises MatReadError, ValueError, zlib.error, EOFError,
        # and on corrupt bytes even internal errors (UnboundLocalError): any of them means an unreadable file.
        raise PipelineError(
            f"{path}: unreadable .mat file (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from None
    names = [k for k in variables if not k.startswith("__")]
    release = variables.get("RELEASE")
    if not isinstance(release, mat_struct):
        raise PipelineError(
            f"{path}: a MATLAB file without the MPII 'RELEASE' struct (it holds "
            f"{', '.join(names) or 'no variables'}); not mpii_human_pose_v1_u12_1.mat"
        )
    missing = [f for f in RELEASE_FIELDS if f not in release._fieldnames]
    if missing:
        raise PipelineError(f"{path}: RELEASE lacks the field(s) {', '.join(missing)}")
    return release


def read(path: Path, *, split: str | None = None) -> SourceData:
    """Read the official .mat; the split comes from img_train (1 = train, 0 = test) unless `split` is set."""
    release = load_release(path)
    annolist = _items(release.annolist)
    img_train = np.atleast_1d(np.asarray(release.img_train)).ravel()
    acts = _items(release.act)
    n = len(annolist)
    if len(img_train) != n or len(acts) != n:
        raise PipelineError(
            f"{path}: RELEASE.annolist has {n} images but img_train has {len(img_train)} and "
            f"act {len(acts)} entries"
        )
    counts: Counter = Counter(rows=n)
    images: dict[str, ImageAnnotation] = {}
    rows = zip(annolist, img_train, acts, strict=True)
    for i, (entry, train, act) in enumerate(
        progress(rows, total=n, desc=f"reading {path.name}", unit="image")
    ):
        name = _text(_field(_field(entry, "image"), "name"))
        if name is None:
            counts["dropped_image:no_name"] += 1
            log.debug("%s: annolist(%d) has no image.name", path, i + 1)
            continue
        if name in images:
            counts["dropped_image:duplicate_name"] += 1
            continue
        people = [_person(rect, counts) for rect in _items(_field(entry, "annorect"))]
        act_id = _number(_field(act, "act_id"))
        activity = _text(_field(act, "act_name"))
        if act_id is not None and act_id < 0:
            act_id, activity = None, None
        images[name] = ImageAnnotation(
            image=name,
            split=split or ("train" if _number(train) == 1 else "test"),
            activity=activity,
            category=_text(_field(act, "cat_name")) if activity is not None else None,
            activity_id=None if act_id is None else int(act_id),
            people=people,
        )
    return SourceData(
        path=path,
        format="mat",
        images=images,
        has_people=True,
        has_activity=True,
        has_occlusion=True,
        split_per_image=split is None,
        counts=counts,
    )
