"""`focus-pipeline annotate`: a folder of images without annotations -> annotations/<name>, from a pose model.

focus-pipeline annotate --images photos/ --name photos
focus-pipeline annotate --images photos/ --name photos --model keypointrcnn --weights kprcnn.pth --device cuda
focus-pipeline annotate --images val2017/ --name val --ground-truth person_keypoints_val2017.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.annotate.models import MODELS
from pipeline.cli.app import app, state
from pipeline.records import SPLITS

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Images = Annotated[
    Path,
    typer.Option(
        metavar="DIR", help="Folder of images (searched recursively; an image's name is its path below DIR)."
    ),
]
Name = Annotated[str, typer.Option(metavar="NAME", help="Name of the annotations artifact to write.")]
Model = Annotated[
    str,
    typer.Option(
        metavar="|".join(MODELS),
        help="Pose model: " + "; ".join(f"{m.name}: {m.summary}" for m in MODELS.values()) + ".",
    ),
]
Weights = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="keypointrcnn: a state dict file (torchvision's keypointrcnn_resnet50_fpn_coco-fc266e95.pth "
        "or your own), read with weights_only=True. Without it torchvision downloads its COCO weights.",
    ),
]
MinScore = Annotated[
    float | None,
    typer.Option(
        metavar="S",
        help="Drop people whose detection score is under S (counted) [default: "
        + ", ".join(f"{m.name} {m.min_score}" for m in MODELS.values())
        + "].",
    ),
]
MinKeypointScore = Annotated[
    float | None,
    typer.Option(
        metavar="S",
        help="Joints scored under S are unknown (nothing is claimed about them) [default: "
        + ", ".join(f"{m.name} {m.min_keypoint_score}" for m in MODELS.values())
        + " (its heatmap logits)].",
    ),
]
InputSize = Annotated[
    int | None,
    typer.Option(
        metavar="PX",
        help="keypointrcnn: the shorter image side it resizes to (torchvision's 800; smaller is faster, with "
        "fewer pixels per person).",
    ),
]
MaxPeople = Annotated[
    int | None,
    typer.Option(metavar="N", help="keypointrcnn: people per image at most, the best scored (default 20)."),
]
Split = Annotated[str, typer.Option(metavar="|".join(SPLITS), help="The split every image gets.")]
GroundTruth = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="COCO-format keypoints of (some of) the images: OKS AP (pycocotools COCOeval) and people "
        "found / missed go to meta.json.",
    ),
]
BatchSize = Annotated[
    int | None, typer.Option(metavar="N", help="Images per model call [default: the model's].")
]
Workers = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Worker threads that read, decode and predict; 0: this thread [default: blazepose 2, each "
        "with its own graph; keypointrcnn 0, one model that all threads share].",
    ),
]
Device = Annotated[
    str, typer.Option(metavar="auto|cpu|cuda", help="keypointrcnn's device (auto: CUDA if present).")
]
Overwrite = Annotated[bool, typer.Option(help="Start over: replace the artifact and forget its predictions.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")]


@app.command("annotate")
def annotate_cmd(
    *,
    images: Images,
    name: Name,
    model: Model = "blazepose",
    weights: Weights = None,
    min_score: MinScore = None,
    min_keypoint_score: MinKeypointScore = None,
    input_size: InputSize = None,
    max_people: MaxPeople = None,
    split: Split = "train",
    ground_truth: GroundTruth = None,
    batch_size: BatchSize = None,
    workers: Workers = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Keypoints for a folder of images from a pose model, written as annotations/<name> (what convert
    writes: describe, build-dataset and train take it). A re-run annotates only new or changed images."""
    from pipeline.annotate.stage import AnnotateConfig, annotate  # torch and the model: only when run

    cfg = AnnotateConfig(
        images=images, name=name, model=model, weights=weights, min_score=min_score,
        min_keypoint_score=min_keypoint_score, input_size=input_size, max_people=max_people, split=split,
        ground_truth=ground_truth, batch_size=batch_size, workers=workers, device=device, overwrite=overwrite,
    )  # fmt: skip
    counts = annotate(cfg, state.store)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    per_image = counts["seconds_per_image"]
    typer.echo(
        f"annotations/{name}: {counts['images']} of {counts['image_files']} images, "
        f"{counts['people']} people, {counts['keypoints']} keypoints "
        f"({model}; {counts['predicted_now']} predicted now"
        + (f", {per_image:.3f} s/img" if per_image is not None else "")
        + f", {counts['from_journal']} from the journal)"
    )
    if counts["dropped"]:
        typer.echo("dropped: " + ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()))
    acc = counts.get("accuracy")
    if acc:
        typer.echo(
            f"vs {Path(acc['ground_truth']).name} ({acc['images']} images, {acc['people']} people): "
            f"AP {acc['ap']:.3f}, AP50 {acc['ap50']:.3f} (OKS, COCOeval); found {acc['found']}, missed "
            f"{acc['missed']}, false positives {acc['false_positives']} at --min-score {acc['min_score']}"
        )
