"""Building the models of pipeline.annotate.models, and what determines their predictions.

    settings = ModelSettings("keypointrcnn", weights=Path("w.pth")).resolved()
    key = model_identity(settings)                   # hashed into annotate's journal keys
    model = load_model(settings, device="auto")
    people = model.predict([rgb])[0]                 # list[Prediction] of the first image

Each backend module holds its own settings; this is the one place that knows which module a name means.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from pipeline.annotate import blazepose, keypoint_rcnn
from pipeline.annotate.models import ModelSettings
from pipeline.annotate.prediction import Prediction


class PoseModel(Protocol):
    def predict(self, images: list[np.ndarray]) -> list[list[Prediction]]:
        """People per image, for (H, W, 3) uint8 RGB arrays."""
        ...


def model_identity(settings: ModelSettings) -> dict[str, Any]:
    """What determines a model's predictions (resolved settings), without building it, and whether it can be
    built here (the package installed, the weights file there)."""
    if settings.name == "blazepose":
        return blazepose.identity()
    return keypoint_rcnn.identity(settings.weights, settings.input_size, settings.max_people)


def load_model(settings: ModelSettings, device: str) -> PoseModel:
    if settings.name == "blazepose":
        return blazepose.BlazePose()
    return keypoint_rcnn.KeypointRCNN(
        settings.weights, input_size=settings.input_size, max_people=settings.max_people, device=device
    )
