"""Building the models of pipeline.annotate.models, and what determines their predictions.

    key = model_identity("keypointrcnn", weights, input_size=800)   # hashed into annotate's journal keys
    model = load_model("keypointrcnn", weights, input_size=800, device="auto")
    people = model.predict([rgb])[0]                                # list[Prediction] of the first image

Each backend module holds its own settings; this is the one place that knows which module a name means.
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


def model_identity(name: str, weights: Path | None, *, input_size: int | None) -> dict[str, Any]:
    """What determines a model's predictions, without building it (and whether it can be built here)."""
    info = model_info(name)
    if weights is not None and not info.takes_weights:
        raise PipelineError(f"--weights: {name} runs the models its package ships; drop --weights")
    if input_size is not None and info.input_size is None:
        raise PipelineError(f"--input-size: {name}'s input size is fixed by its models; drop --input-size")
    if name == "blazepose":
        return blazepose.identity()
    return keypoint_rcnn.identity(weights, input_size or info.input_size)


def load_model(name: str, weights: Path | None, *, input_size: int | None, device: str) -> PoseModel:
    info = model_info(name)
    if name == "blazepose":
        return blazepose.BlazePose()
    return keypoint_rcnn.KeypointRCNN(weights, input_size=input_size or info.input_size, device=device)
