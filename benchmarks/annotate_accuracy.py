"""annotate's pose models against ground truth: OKS AP (pycocotools COCOeval) on the real COCO images of
../shared/data, people found / missed, and seconds per image on this CPU.

    .venv/bin/python benchmarks/annotate_accuracy.py                       # every model that can run here
    .venv/bin/python benchmarks/annotate_accuracy.py --weights keypointrcnn_resnet50_fpn_coco-fc266e95.pth

The anchor is the ground truth: the 4 COCO val2017 images of shared/data/coco_format/coco and their 12 people
with keypoints (test_coco.json). AP, not PCK: COCOeval defines it for any number of people, and it is what
pose models are reported with; with 12 people one person is worth about 0.08 of it, so read it coarsely.
Each model runs through the annotate stage itself (one worker, so the time is one thread's), first on the COCO
images with --ground-truth, then on those and the 5 MPII images for the time per image (the model's predict
calls only: loading the model and decoding are left out). Keypoint R-CNN needs weights: torchvision's own
(downloaded when there is network) or --weights FILE; without either it is timed with random weights, where
the accuracy means nothing and is not printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FOCUS_PROGRESS", "0")

from pipeline.annotate.models import MODELS  # noqa: E402
from pipeline.annotate.stage import AnnotateConfig, annotate  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.store import Store  # noqa: E402

DATA = Path(os.environ.get("FOCUS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _folder(tmp: Path, images: list[Path]) -> Path:
    folder = tmp / "images"
    for src in images:
        (folder / src.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / src.parent.name / src.name).symlink_to(src)
    return folder


def _random_weights(tmp: Path) -> Path:
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    torch.manual_seed(0)
    path = tmp / "keypointrcnn-random.pth"
    torch.save(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)
    return path


def measure(model: str, weights: Path | None, tmp: Path, store: Store, *, random: bool = False) -> dict:
    """The model's accuracy on the COCO images (none with random weights), and its time per image on them
    and the MPII images."""
    coco = DATA / "coco_format" / "coco"
    everything = sorted(coco.glob("*.jpg")) + sorted((DATA / "mpii" / "mmpose_tests").glob("*.jpg"))
    common = {"model": model, "weights": weights, "workers": 0, "device": "cpu"}
    if random:  # random scores: keep every person, to time the keypoint head on as many as it gets
        common |= {"min_score": 0.0, "min_keypoint_score": -1e9}
    acc = {}
    if not random:
        truth = coco / "test_coco.json"
        acc = annotate(AnnotateConfig(images=coco, name=f"{model}-coco", ground_truth=truth, **common), store)
        acc = acc["accuracy"]
    folder = _folder(tmp / model, everything)
    timed = annotate(AnnotateConfig(images=folder, name=f"{model}-all", **common), store)
    people_per_image = timed["predicted_people"] / timed["predicted_now"]
    return acc | {"seconds_per_image": timed["seconds_per_image"], "people_per_image": people_per_image}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, help="keypointrcnn state dict file (offline)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = Store(tmp / "store")
        for model in args.models:
            if model == "blazepose" and importlib.util.find_spec("mediapipe") is None:
                rows.append((model, "not installed: pip install -e '.[annotate]'", None))
                continue
            weights = args.weights if MODELS[model].takes_weights else None
            note = ""
            try:
                result = measure(model, weights, tmp, store)
            except PipelineError as err:  # no weights here: torchvision's download failed
                if not MODELS[model].takes_weights or weights is not None:
                    raise
                print(f"{model}: {err}", file=sys.stderr)
                weights, note = _random_weights(tmp), "random weights: time only"
                result = measure(model, weights, tmp, store, random=True)
            rows.append((model, note, result))
    print(
        "| model | AP (OKS) | AP50 | people found / missed (of 12) | false positives | s/img (one worker) |"
    )
    print("|---|---|---|---|---|---|")
    for model, note, r in rows:
        if r is None:
            print(f"| {model} | {note} | | | | |")
        elif note:
            print(
                f"| {model} ({note}, {r['people_per_image']:.1f} people/img) | - | - | - | - | "
                f"{r['seconds_per_image']:.3f} |"
            )
        else:
            print(
                f"| {model} | {r['ap']:.3f} | {r['ap50']:.3f} | {r['found']} / {r['missed']} | "
                f"{r['false_positives']} | {r['seconds_per_image']:.3f} |"
            )


if __name__ == "__main__":
    main()
