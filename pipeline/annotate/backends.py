"""Building the models of pipeline.annotate.models, and what determines their predictions.

key = model_identity("keypointrcnn", weights)    # hashed into annotate's journal keys
model = load_model("keypointrcnn", weights=weights, device="auto")
people = model.predict([rgb])[0]                 # list[Prediction] of the first image
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.annotate import blazepose, keypoint_rcnn
from pipeline.annotate.models import model_info
from pipeline.annotate.prediction import Prediction
from pipeline.errors import PipelineError


class PoseModel(Protocol):
    def predict(self, images: list[np.ndarray]) -> list[list[Prediction]]:
        """People per image, for (H, W, 3) uint8 RGB arrays."""
        ...


def model_identity(name: str, weights: Path | None) -> dict[str, Any]:
    """What determines a model's predictions, without building it (and whether it can be built here)."""
    info = model_info(name)
    if weights is not None and not info.takes_weights:
        raise PipelineError(f"--weights: {name} runs the models its package ships; drop --weights")
    return blazepose.identity() if name == "blazepose" else keypoint_rcnn.identity(weights)


def load_model(name: str, *, weights: Path | None, device: str) -> PoseModel:
    model_info(name)
    return blazepose.BlazePose() if name == "blazepose" else keypoint_rcnn.KeypointRCNN(weights, device)
