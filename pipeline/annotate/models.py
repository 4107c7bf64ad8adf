"""The pose models annotate can run, as data (pipeline.annotate.backends builds them).

    info = model_info("blazepose")      # its defaults: thresholds, batch size, how workers run it
    settings = ModelSettings("keypointrcnn", weights=Path("w.pth"), max_people=5).resolved()

Choice (issue 26): BlazePose is the offline default: the mediapipe 0.10.14 wheel on PyPI ships its models
and installs beside our stack (numpy 2, protobuf 4); it finds one person per image. Keypoint R-CNN finds
everyone, but its weights come from torchvision's download or a file the user has (--weights).
This module imports neither backend, so the CLI's help lists the models without loading torch or mediapipe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.errors import PipelineError


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    summary: str
    min_score: float  # default --min-score, on the model's detection score
    min_keypoint_score: float  # default --min-keypoint-score, on the model's own joint score scale
    batch_size: int  # images per predict call
    # Worker threads each build their own (a MediaPipe graph serves one thread at a time), or share one (a
    # torch model, on the GPU if any).
    one_per_thread: bool
    default_workers: int
    takes_weights: bool  # --weights FILE
    torch: bool  # a torch model, which --device places; MediaPipe runs on the CPU
    input_size: int | None  # default --input-size (pixels of the shorter side); None: fixed by the model
    max_people: int | None  # default --max-people per image; None: fixed by the model


MODELS: dict[str, ModelInfo] = {
    "blazepose": ModelInfo(
        name="blazepose",
        summary="MediaPipe BlazePose (full), one person per image, offline (the annotate extra)",
        min_score=0.5,  # MediaPipe's own default min_detection_confidence
        min_keypoint_score=0.5,  # landmark visibility is a probability
        batch_size=1,
        one_per_thread=True,
        default_workers=2,
        takes_weights=False,
        torch=False,
        input_size=None,  # the detector sees 224 x 224, the landmark model 256 x 256
        max_people=None,  # one: the detector's best
    ),
    "keypointrcnn": ModelInfo(
        name="keypointrcnn",
        summary="torchvision Keypoint R-CNN ResNet-50 FPN, every person, CPU or CUDA (offline: --weights)",
        min_score=0.5,
        min_keypoint_score=0.05,  # detectron2's visualizer threshold on the same kind of heatmap logits
        batch_size=4,
        one_per_thread=False,
        default_workers=0,
        takes_weights=True,
        torch=True,
        input_size=800,  # torchvision's
        # torchvision keeps 100; COCO's keypoint evaluation counts 20 (COCOeval maxDets), and the keypoint
        # head runs once per person kept
        max_people=20,
    ),
}


def model_info(name: str) -> ModelInfo:
    info = MODELS.get(name)
    if info is None:
        raise PipelineError(f"--model {name!r}: one of {', '.join(MODELS)}")
    return info


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """The model and what the user chose for it (None: its default); all of it determines the predictions."""

    name: str
    weights: Path | None = None
    input_size: int | None = None
    max_people: int | None = None

    def resolved(self) -> ModelSettings:
        """The settings with the model's defaults filled in; a one-line error for one it does not take."""
        info = model_info(self.name)
        if self.weights is not None and not info.takes_weights:
            raise PipelineError(f"--weights: {self.name} runs the models its package ships; drop --weights")
        for option, value, default in (
            ("--input-size", self.input_size, info.input_size),
            ("--max-people", self.max_people, info.max_people),
        ):
            if value is not None and default is None:
                raise PipelineError(f"{option}: {self.name} fixes it ({info.summary}); drop {option}")
            if value is not None and value < 1:
                raise PipelineError(f"{option} {value}: must be at least 1")
        return replace(
            self,
            input_size=info.input_size if self.input_size is None else self.input_size,
            max_people=info.max_people if self.max_people is None else self.max_people,
        )
