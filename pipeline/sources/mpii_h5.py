"""Reader for the stacked-hourglass MPII annotations (Newell et al.: train.h5, valid.h5, test.h5).

One row per person: imgname, part (16x2), visible (16), center, scale (+ index, person, normalize, ...).
Its conventions differ from the .mat, and are undone here so that every source agrees:
- a joint that was not annotated is (0, 0); `visible` is the .mat is_visible, 0 both for missing and for
  annotated-but-occluded joints, so (x, y) != (0, 0) with visible = 0 is v = 1 (occluded);
- center is objpos shifted down by 15 * scale and scale is the .mat scale x 1.25 (pose-hg-train's
  loader applies both when it writes the file); we store the raw objpos and scale.
The split is not in the file: taken from its name (valid.h5 -> val) unless given.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import PipelineError
from pipeline.records import MISSING, NUM_KEYPOINTS, OCCLUDED, VISIBLE, ImageAnnotation, Person
from pipeline.sources.base import SourceData, split_from_name

REQUIRED = ("imgname", "part", "center", "scale")
# pose-hg-train (data/mpii/annot generation): c[2] = c[2] + 15 * s; s = s * 1.25.
CENTER_SHIFT = 15.0
SCALE_FACTOR = 1.25


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED if k not in f]
            if missing:
                raise PipelineError(
                    f"{path}: HDF5 file without the hourglass MPII datasets "
                    f"{', '.join(missing)} (it holds {', '.join(list(f)[:8]) or 'nothing'})"
                )
            return {k: f[k][()] for k in (*REQUIRED, "visible", "person") if k in f}
    except PipelineError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise PipelineError(f"{path}: unreadable HDF5 file (truncated or corrupt?): {err}") from None


def read(path: Path, *, split: str | None = None) -> SourceData:
    d = _load(path)
    names = np.asarray(d["imgname"]).reshape(-1)
    n = len(names)
    part = np.asarray(d["part"], dtype=np.float64)
    center = np.asarray(d["center"], dtype=np.float64)
    scale = np.asarray(d["scale"], dtype=np.float64).reshape(-1)
    if part.shape != (n, NUM_KEYPOINTS, 2) or center.shape != (n, 2) or scale.shape != (n,):
        raise PipelineError(
            f"{path}: inconsistent shapes: imgname {n}, part {list(part.shape)}, "
            f"center {list(center.shape)}, scale {list(scale.shape)} (expected N, Nx16x2, Nx2, N)"
        )
    visible = np.asarray(d.get("visible", np.ones((n, NUM_KEYPOINTS))), dtype=np.float64)
    if visible.shape != (n, NUM_KEYPOINTS):
        raise PipelineError(f"{path}: visible has shape {list(visible.shape)}, expected [{n}, 16]")

    annotated = np.isfinite(part).all(-1) & ~(part == 0).all(-1)
    kps = np.full((n, NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
    kps[..., :2] = np.where(annotated[..., None], part, np.nan)
    kps[..., 2] = np.where(annotated, np.where(visible > 0, VISIBLE, OCCLUDED), MISSING)
    raw_scale = scale / SCALE_FACTOR
    has_center = (center[:, 0] != -1) & np.isfinite(center).all(1) & (scale > 0)
    raw_cy = center[:, 1] - CENTER_SHIFT * raw_scale

    person_idx = np.asarray(d["person"]).reshape(-1) if "person" in d else np.arange(n)
    counts: Counter = Counter(rows=n, occluded_joints=int((kps[..., 2] == OCCLUDED).sum()))
    split = split or split_from_name(path)
    rows: dict[str, list[tuple[float, Person]]] = {}
    for i, raw in enumerate(names):
        name = (raw.decode() if isinstance(raw, bytes) else str(raw)).strip()
        if not name:
            counts["dropped_person:no_image_name"] += 1
            continue
        person = Person(
            keypoints=kps[i],
            center=(float(center[i, 0]), float(raw_cy[i])) if has_center[i] else None,
            scale=float(raw_scale[i]) if has_center[i] else None,
        )
        rows.setdefault(name, []).append((float(person_idx[i]), person))
    # People in their .mat annorect order (the file's `person` column), images in file order.
    images = {
        name: ImageAnnotation(
            image=name, split=split, people=[p for _, p in sorted(people, key=lambda t: t[0])]
        )
        for name, people in rows.items()
    }
    return SourceData(
        path=path,
        format="h5",
        images=images,
        has_people=True,
        has_activity=False,
        has_occlusion="visible" in d,
        split_per_image=False,
        counts=counts,
    )
