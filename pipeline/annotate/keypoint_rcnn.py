"""torchvision's Keypoint R-CNN (keypointrcnn_resnet50_fpn): every person of an image, COCO-17, CPU or CUDA.

    model = KeypointRCNN(Path("keypointrcnn_resnet50_fpn_coco-fc266e95.pth"), input_size=800, max_people=20)
    people = model.predict([rgb, rgb2])     # a list of Predictions per image, one batch on the device

Weights: a state dict file (--weights FILE, read with torch.load(weights_only=True)), or, without a file,
torchvision's COCO weights (KeypointRCNN_ResNet50_FPN_Weights.COCO_V1: keypoint AP 65.0 on COCO val2017 in
torchvision's model table), which torchvision downloads once into the torch hub cache (TORCH_HOME). Keypoint
scores are the model's heatmap logits at the chosen locations, not probabilities: detectron2's visualizer
draws joints above 0.05 (detectron2/utils/visualizer.py, _KEYPOINT_THRESHOLD), annotate's default too.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

from pipeline.annotate.prediction import Prediction
from pipeline.devices import torch_device
from pipeline.errors import PipelineError
from pipeline.store import file_sha256

DEFAULT_WEIGHTS = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1
# torchvision's own box score threshold: people down to it come back with their score, --min-score decides.
DETECTION_FLOOR = 0.05
# torchvision resizes an image so that its shorter side is 800 px (annotate's --input-size), its longer at
# most 1333 (the detectron recipe); another input size keeps that ratio.
MAX_SIDE_RATIO = 1333 / 800


def identity(weights: Path | None, input_size: int, max_people: int) -> dict[str, Any]:
    """What determines this backend's predictions (annotate's journal keys hash it): the weights' content."""
    if weights is None:
        source = {"torchvision": str(DEFAULT_WEIGHTS), "url": DEFAULT_WEIGHTS.url}
    else:
        if not weights.is_file():
            raise PipelineError(f"--weights {weights}: no such file")
        source = {"sha256": file_sha256(weights)}  # the content, not the path: a moved file is the same
    return {
        "model": "keypointrcnn",
        "package": "torchvision",
        "version": torchvision.__version__,
        "weights": source,
        "detection_floor": DETECTION_FLOOR,
        "max_people": max_people,
        "input_size": input_size,
    }


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict file, read without running any pickled code; a one-line error for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PipelineError(
            f"--weights {path}: not a state dict that loads with weights_only=True ({first})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"--weights {path}: not a state dict (a mapping of parameter names to tensors)")
    return state


class KeypointRCNN:
    def __init__(
        self, weights: Path | None, *, input_size: int, max_people: int, device: str = "auto"
    ) -> None:
        self.device = torch_device(device)
        state = load_weights(weights) if weights is not None else _download()
        # Built on the meta device, its parameters then taken from the state dict: no random initialisation
        # of 59 M parameters that the weights replace anyway (about 2 s on a CPU).
        with torch.device("meta"):
            model = keypointrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, box_score_thresh=DETECTION_FLOOR,
                box_detections_per_img=max_people, min_size=input_size,
                max_size=round(input_size * MAX_SIDE_RATIO),
            )  # fmt: skip
        name = weights or DEFAULT_WEIGHTS.url
        try:
            missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        except RuntimeError as err:  # tensors of other shapes
            first = str(err).strip().splitlines()[-1].strip()
            raise PipelineError(
                f"--weights {name}: not keypointrcnn_resnet50_fpn's state dict ({first})"
            ) from None
        if missing or unexpected:
            raise PipelineError(
                f"--weights {name}: not keypointrcnn_resnet50_fpn's state dict ({len(missing)} parameters "
                f"missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})"
            )
        self.model = model.eval().float().to(self.device)  # float: a half-precision file computes in fp32

    def predict(self, images: list[np.ndarray]) -> list[list[Prediction]]:
        batch = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).to(self.device) for im in images]
        with torch.inference_mode():
            outputs = self.model([im.float().div_(255) for im in batch])
        return [_people(out) for out in outputs]


def _people(out: dict[str, torch.Tensor]) -> list[Prediction]:
    boxes, scores = out["boxes"].cpu().numpy(), out["scores"].cpu().numpy()
    kps, kp_scores = out["keypoints"].cpu().numpy(), out["keypoints_scores"].cpu().numpy()
    return [
        Prediction(
            keypoints=kps[i, :, :2].astype(np.float32),
            keypoint_scores=kp_scores[i].astype(np.float32),
            box=tuple(float(v) for v in boxes[i]),
            score=float(scores[i]),
        )
        for i in range(len(scores))
    ]


def _download() -> dict[str, torch.Tensor]:
    try:
        return DEFAULT_WEIGHTS.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except OSError as err:  # URLError is an OSError: no network, a proxy, a DNS failure
        raise PipelineError(
            f"--model keypointrcnn: could not download torchvision's weights from {DEFAULT_WEIGHTS.url} "
            f"({err}); download that file where there is network and pass it with --weights FILE"
        ) from None
