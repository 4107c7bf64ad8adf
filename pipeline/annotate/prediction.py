"""What a pose model returns for one person, and how that becomes a Person of an annotations artifact.

    person = to_person(pred, min_keypoint_score=0.5)   # joints under the threshold become unknown (v = 0)

Every backend gives people in the COCO-17 joint order (pipeline.skeletons COCO17) with x, y in pixels of the
image as it is decoded without its EXIF orientation: the pixels build-dataset stores and draws heatmaps on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.records import MISSING, VISIBLE, Person, empty_keypoints
from pipeline.skeletons import SKELETONS

COCO17 = SKELETONS["coco-17"]


@dataclass(slots=True)
class Prediction:
    keypoints: np.ndarray  # (17, 2) float32: x, y in image pixels, COCO-17 order
    keypoint_scores: np.ndarray  # (17,) float32: the model's confidence in each joint, on its own scale
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 of the person, image pixels
    score: float  # the detection score of the person
    segmentation: str | None = None  # the person's mask as COCO RLE JSON text, when the model gives one

    def to_json(self) -> dict[str, Any]:
        return {
            "keypoints": np.round(self.keypoints.astype(np.float64), 3).tolist(),
            "keypoint_scores": np.round(self.keypoint_scores.astype(np.float64), 5).tolist(),
            "box": [round(float(v), 3) for v in self.box],
            "score": round(float(self.score), 6),
            "segmentation": self.segmentation,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prediction:
        return cls(
            keypoints=np.asarray(d["keypoints"], dtype=np.float32).reshape(COCO17.num_joints, 2),
            keypoint_scores=np.asarray(d["keypoint_scores"], dtype=np.float32).reshape(COCO17.num_joints),
            box=tuple(float(v) for v in d["box"]),
            score=float(d["score"]),
            segmentation=d.get("segmentation"),
        )


def to_person(pred: Prediction, min_keypoint_score: float) -> Person:
    """The Person an annotations artifact holds: joints scored under min_keypoint_score are unknown (NaN,
    v = 0, nothing is claimed about them); the others are VISIBLE (v = 2: "annotated", as sources without a
    visibility flag are read). Every joint's score is kept, so a later reader can choose its own threshold."""
    kps = empty_keypoints(COCO17.num_joints)
    keep = pred.keypoint_scores >= min_keypoint_score
    kps[keep, :2] = pred.keypoints[keep]
    kps[keep, 2] = VISIBLE
    kps[~keep, 2] = MISSING
    return Person(
        keypoints=kps,
        label="person",
        source_box=pred.box,
        segmentation=pred.segmentation,
        score=float(pred.score),
        keypoint_scores=pred.keypoint_scores.astype(np.float32),
    )
