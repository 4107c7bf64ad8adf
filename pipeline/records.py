"""The records that flow between stages, and the annotations table they are stored in.

Keypoints are a float32 array of shape (16, 3) in MPII order (KEYPOINT_NAMES): x, y in source image
pixels and a flag v (the COCO convention):
    v = 0  not annotated: x and y are NaN, and nothing may be claimed about the joint
    v = 1  annotated but marked occluded by the source (MPII is_visible = 0): the position is known
    v = 2  annotated and visible, or annotated where the source records no visibility (mmpose JSON, CSV)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KEYPOINT_NAMES: tuple[str, ...] = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
    "pelvis", "thorax", "upper neck", "head top",
    "right wrist", "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist",
)  # fmt: skip
NUM_KEYPOINTS = 16
MISSING, OCCLUDED, VISIBLE = 0, 1, 2
SPLITS = ("train", "val", "test", "unknown")


def empty_keypoints() -> np.ndarray:
    kps = np.full((NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
    kps[:, 2] = MISSING
    return kps


def known(kps: np.ndarray) -> np.ndarray:
    """Boolean mask of joints whose position is known (v > 0 and finite coordinates)."""
    return (kps[..., 2] > 0) & np.isfinite(kps[..., 0]) & np.isfinite(kps[..., 1])


def keypoint_box(kps: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x1, y1, x2, y2) of the known keypoints, or None when none is known."""
    mask = known(kps)
    if not mask.any():
        return None
    xy = kps[mask, :2]
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


@dataclass(slots=True)
class Person:
    keypoints: np.ndarray = field(default_factory=empty_keypoints)  # (16, 3) float32, see module doc
    center: tuple[float, float] | None = None  # MPII objpos (x, y)
    scale: float | None = None  # MPII scale: person height / 200 px
    head_box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2

    @property
    def num_known(self) -> int:
        return int(known(self.keypoints).sum())

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return keypoint_box(self.keypoints)


@dataclass(slots=True)
class ImageAnnotation:
    image: str  # file name as the source gives it, e.g. "015601864.jpg"
    split: str = "unknown"  # one of SPLITS
    activity: str | None = None  # MPII act_name (may be cut at 100 characters in the source)
    category: str | None = None  # MPII cat_name
    activity_id: int | None = None
    people: list[Person] = field(default_factory=list)

    @property
    def keypoints(self) -> np.ndarray:
        """(P, 16, 3) stacked keypoints of all people (P may be 0)."""
        if not self.people:
            return np.zeros((0, NUM_KEYPOINTS, 3), dtype=np.float32)
        return np.stack([p.keypoints for p in self.people]).astype(np.float32)


_F32_LIST = pa.list_(pa.float32())
PERSON_TYPE = pa.struct([
    ("keypoints", _F32_LIST),  # 48 floats: x, y, v per joint
    ("center", _F32_LIST),
    ("scale", pa.float32()),
    ("head_box", _F32_LIST),
    ("box", _F32_LIST),
])  # fmt: skip
ANNOTATIONS_SCHEMA = pa.schema([
    ("image", pa.string()),
    ("split", pa.string()),
    ("activity", pa.string()),
    ("category", pa.string()),
    ("activity_id", pa.int32()),
    ("num_people", pa.int32()),
    ("num_keypoints", pa.int32()),
    ("people", pa.list_(PERSON_TYPE)),
])  # fmt: skip


def _person_row(p: Person) -> dict:
    box = p.box
    return {
        "keypoints": p.keypoints.astype(np.float32).reshape(-1).tolist(),
        "center": None if p.center is None else [float(c) for c in p.center],
        "scale": None if p.scale is None else float(p.scale),
        "head_box": None if p.head_box is None else [float(c) for c in p.head_box],
        "box": None if box is None else list(box),
    }


def annotations_to_table(rows: Iterable[ImageAnnotation]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in ANNOTATIONS_SCHEMA.names}
    for r in rows:
        cols["image"].append(r.image)
        cols["split"].append(r.split)
        cols["activity"].append(r.activity)
        cols["category"].append(r.category)
        cols["activity_id"].append(r.activity_id)
        cols["num_people"].append(len(r.people))
        cols["num_keypoints"].append(sum(p.num_known for p in r.people))
        cols["people"].append([_person_row(p) for p in r.people])
    return pa.table(cols, schema=ANNOTATIONS_SCHEMA)


def _opt_tuple(values: Sequence[float] | None) -> tuple | None:
    return None if values is None else tuple(float(v) for v in values)


def table_to_annotations(table: pa.Table) -> list[ImageAnnotation]:
    out = []
    for r in table.to_pylist():
        people = [
            Person(
                keypoints=np.asarray(p["keypoints"], dtype=np.float32).reshape(NUM_KEYPOINTS, 3),
                center=_opt_tuple(p["center"]),
                scale=p["scale"],
                head_box=_opt_tuple(p["head_box"]),
            )
            for p in r["people"] or []
        ]
        out.append(ImageAnnotation(image=r["image"], split=r["split"], activity=r["activity"],
                                   category=r["category"], activity_id=r["activity_id"], people=people))
    return out


def write_annotations(path: str | Path, rows: Iterable[ImageAnnotation]) -> int:
    table = annotations_to_table(rows)
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def read_annotations(path: str | Path) -> list[ImageAnnotation]:
    return table_to_annotations(pq.read_table(path, schema=ANNOTATIONS_SCHEMA))
