"""The records that flow between stages: an image's annotation and its people (the artifacts that hold them,
their files, schemas and readers, are in pipeline.artifacts).

    ann = ImageAnnotation("015601864.jpg", people=[Person(keypoints)])
    known(ann.keypoints)                            # (P, K) joints whose position is known

Keypoints are a float32 array of shape (K, 3) in the order of the image's skeleton (pipeline.skeletons;
MPII's 16 joints, KEYPOINT_NAMES, unless the source says otherwise): x, y in source image pixels and a
flag v (the COCO convention):
    v = 0  not annotated: x and y are NaN, and nothing may be claimed about the joint
    v = 1  annotated but marked occluded by the source (MPII is_visible = 0): the position is known
    v = 2  annotated and visible, or annotated where the source records no visibility (mmpose JSON, CSV)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.skeletons import MPII, Skeleton

KEYPOINT_NAMES: tuple[str, ...] = MPII.joints
NUM_KEYPOINTS = MPII.num_joints
MISSING, OCCLUDED, VISIBLE = 0, 1, 2
SPLITS = ("train", "val", "test", "unknown")


def empty_keypoints(num_joints: int = NUM_KEYPOINTS) -> np.ndarray:
    kps = np.full((num_joints, 3), np.nan, dtype=np.float32)
    kps[:, 2] = MISSING
    return kps


def known(kps: np.ndarray) -> np.ndarray:
    """Boolean mask of joints whose position is known (v > 0 and finite coordinates)."""
    return (kps[..., 2] > 0) & np.isfinite(kps[..., 0]) & np.isfinite(kps[..., 1])


def keypoint_boxes(kps: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) x1, y1, x2, y2 of the joints in `mask` (default: the known ones) of (N, K, 3) keypoints,
    and whether each has one (N,); rows without any joint get a zero box."""
    mask = known(kps) if mask is None else mask
    valid = mask.any(axis=1)
    # Other joints become +/-inf so min/max skip them without NaN warnings (rows with none are zeroed).
    x, y = kps[..., 0], kps[..., 1]
    boxes = np.stack(
        [
            np.where(mask, x, np.inf).min(1, initial=np.inf),
            np.where(mask, y, np.inf).min(1, initial=np.inf),
            np.where(mask, x, -np.inf).max(1, initial=-np.inf),
            np.where(mask, y, -np.inf).max(1, initial=-np.inf),
        ],
        axis=1,
    )
    return np.where(valid[:, None], boxes, 0.0), valid


def keypoint_box(kps: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x1, y1, x2, y2) of the known keypoints of one person, or None when none is known."""
    boxes, valid = keypoint_boxes(kps[None])
    return tuple(float(c) for c in boxes[0]) if valid[0] else None


@dataclass(slots=True)
class Person:
    keypoints: np.ndarray = field(default_factory=empty_keypoints)  # (K, 3) float32, see module doc
    center: tuple[float, float] | None = None  # MPII objpos (x, y)
    scale: float | None = None  # MPII scale: person height / 200 px
    head_box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    label: str | None = None  # the instance's category as the source names it ("person", "zebra")
    source_box: tuple[float, float, float, float] | None = None  # the source's instance box, x1, y1, x2, y2
    segmentation: str | None = None  # the source's instance mask as COCO JSON text (polygons or RLE)
    crowd: bool = False  # a COCO iscrowd region: several people under one box/mask, no keypoints
    score: float | None = None  # a pose model's detection score for the person (annotate); None: people's
    keypoint_scores: np.ndarray | None = None  # (K,) float32, the model's confidence in each joint (annotate)

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
    skeleton: Skeleton = MPII  # the joints of every person's keypoints
    width: int | None = None  # source image size in pixels, when the source records it
    height: int | None = None
    captions: tuple[str, ...] = ()  # human-written captions from the source (COCO captions)

    @property
    def keypoints(self) -> np.ndarray:
        """(P, K, 3) stacked keypoints of all people (P may be 0)."""
        if not self.people:
            return np.zeros((0, self.skeleton.num_joints, 3), dtype=np.float32)
        return np.stack([p.keypoints for p in self.people]).astype(np.float32)


def image_file(images: Path, name: str) -> Path | None:
    """images/name, or None when the name could point outside `images` (absolute, '..', NUL, empty).

    Image names come from annotation and description files, which may be anyone's: build-dataset embeds the
    file it opens and analyze's gallery shows it, so a name like ../../home/me/.ssh/id_rsa must not be read.
    This check is lexical; pipeline.images.find_image also refuses a link that resolves outside `images`.
    """
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or name.startswith("/") or ".." in parts or "\0" in name:
        return None
    return images / name
