"""BlazePose through MediaPipe 0.10.14's Pose graph: one person per image, offline, on the CPU.

    model = BlazePose()
    people = model.predict([rgb])[0]      # [] or [Prediction]: the most prominent person

The mediapipe 0.10.14 wheel ships the person detector and the full landmark model
(mediapipe/modules/pose_detection/pose_detection.tflite, pose_landmark/pose_landmark_full.tflite), so nothing
is downloaded at run time; mediapipe 1.x wheels ship no .tflite files, hence the pin of the annotate extra.
The graph is MediaPipe's own (pose_landmark_cpu.binarypb, what `mp.solutions.pose.Pose` runs) with one more
output, the detection, for the person's detection score; the segmentation mask gives the person's box and
mask. The graph finds one person per image (the detector's best): people beyond the first are missed.
"""

from __future__ import annotations

import json
import warnings
from importlib import metadata
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.annotate.prediction import Prediction
from pipeline.errors import PipelineError

PACKAGE = "mediapipe"
INSTALL_HINT = "pip install 'focus-pipeline[annotate]' (mediapipe 0.10.14, which ships the BlazePose models)"
# BlazePose's 33 landmarks in COCO-17 order: nose, eyes (2, 5), ears (7, 8), shoulders 11-12, elbows 13-14,
# wrists 15-16, hips 23-24, knees 25-26, ankles 27-28 (mediapipe.python.solutions.pose.PoseLandmark); left and
# right are the person's own in both.
TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
GRAPH = "mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb"
LANDMARK_MODEL = "pose_landmark_full"  # model_complexity 1: the one landmark model the wheel ships
# The detector's own threshold is set low so that a weak person still comes back with its score and
# annotate's --min-score decides; the landmark model's "a pose is present" check keeps MediaPipe's default.
DETECTION_FLOOR = 0.1
PRESENCE_THRESHOLD = 0.5
MASK_THRESHOLD = 0.5  # a pixel belongs to the person when the segmentation says so with p > 0.5


def version() -> str:
    """The installed mediapipe's version; a one-line error naming the extra when it is not installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise PipelineError(f"--model blazepose needs mediapipe: {INSTALL_HINT}") from None


def identity() -> dict[str, Any]:
    """What determines this backend's predictions (annotate's journal keys hash it)."""
    return {
        "model": "blazepose",
        "package": PACKAGE,
        "version": version(),
        "landmark_model": LANDMARK_MODEL,
        "detection_floor": DETECTION_FLOOR,
        "presence_threshold": PRESENCE_THRESHOLD,
        "mask_threshold": MASK_THRESHOLD,
    }


class BlazePose:
    """One MediaPipe graph; it serves one thread at a time (annotate gives each worker thread its own)."""

    def __init__(self) -> None:
        version()
        # protobuf 4.25 warns on mediapipe's own message lookups in every call; a process-wide filter, since
        # warnings.catch_warnings is not safe in the worker threads that run the graphs.
        warnings.filterwarnings("ignore", "SymbolDatabase.GetPrototype", UserWarning)
        from mediapipe.python.solution_base import SolutionBase  # the optional extra: imported when used

        self._graph = SolutionBase(
            binary_graph_path=GRAPH,
            side_inputs={
                "model_complexity": 1,
                "smooth_landmarks": False,  # still images: no filtering across frames
                "enable_segmentation": True,
                "smooth_segmentation": False,
                "use_prev_landmarks": False,
            },
            calculator_params={
                "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": DETECTION_FLOOR,
                "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__ThresholdingCalculator"
                ".threshold": PRESENCE_THRESHOLD,
            },
            outputs=["pose_landmarks", "pose_detection", "segmentation_mask"],
        )

    def predict(self, images: list[np.ndarray]) -> list[list[Prediction]]:
        return [self._one(rgb) for rgb in images]

    def _one(self, rgb: np.ndarray) -> list[Prediction]:
        out = self._graph.process({"image": np.ascontiguousarray(rgb)})
        if out.pose_landmarks is None:
            return []
        h, w = rgb.shape[:2]
        marks = out.pose_landmarks.landmark
        xy = np.array([[marks[i].x * w, marks[i].y * h] for i in TO_COCO17], dtype=np.float32)
        # visibility: the model's probability that the joint is in the frame and not occluded
        scores = np.array([marks[i].visibility for i in TO_COCO17], dtype=np.float32)
        score = float(out.pose_detection.score[0])  # static images: the detector ran on this one
        mask = None if out.segmentation_mask is None else out.segmentation_mask > MASK_THRESHOLD
        if mask is not None and mask.any():
            box, segmentation = _mask_box(mask), _rle(mask)
        else:  # no mask pixel: the box of all 33 landmarks, inside the image
            every = np.array([[m.x * w, m.y * h] for m in marks], dtype=np.float32)
            lo, hi = np.clip(every.min(0), 0, [w, h]), np.clip(every.max(0), 0, [w, h])
            box, segmentation = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), None
        return [Prediction(xy, scores, box, score, segmentation)]


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _rle(mask: np.ndarray) -> str:
    """The mask as COCO compressed RLE JSON text, as convert stores a COCO file's masks."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    size = [int(s) for s in rle["size"]]
    return json.dumps({"size": size, "counts": rle["counts"].decode("ascii")}, separators=(",", ":"))
