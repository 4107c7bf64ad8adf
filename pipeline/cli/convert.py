"""`focus-pipeline convert`: MPII annotations (.mat, .json, .h5, CSV) or a COCO-format keypoints file (with
its captions) -> annotations/<name>.

focus-pipeline convert mpii_human_pose_v1_u12_1.mat
focus-pipeline --store s3://bucket/focus convert valid.h5 mpii_dataset.csv --name val
focus-pipeline convert person_keypoints_val2017.json --captions captions_val2017.json --split val --name coco
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app, state
from pipeline.records import SPLITS
from pipeline.sources.merge import JOINS

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Sources = Annotated[
    list[Path],
    typer.Argument(
        help="Annotation files, format detected from content: the official .mat, mmpose/HRNet "
        ".json, stacked-hourglass .h5, mpii_dataset.csv, or one COCO-format keypoints .json (COCO, "
        "CrowdPose, AP-10K, ...). Several MPII files are joined on the image name; the first one "
        "named wins disagreements.",
        show_default=False,
    ),
]
Name = Annotated[str, typer.Option("--name", help="Name of the annotations artifact to write.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing artifact of that name.")]
Join = Annotated[
    str,
    typer.Option(
        "--join",
        help=f"Which images to keep when joining sources ({' | '.join(JOINS)}): left = "
        "the first source's images, outer = every image of every source.",
    ),
]
Split = Annotated[
    str | None,
    typer.Option(
        "--split",
        help=f"Split ({' | '.join(SPLITS)}) for sources that record none per image "
        "(all but the .mat). Default: from the file name (mpii_val.json, valid.h5 -> val), "
        "train for the CSV, else unknown (COCO-format files record none).",
    ),
]
KeepPeopleWithoutKeypoints = Annotated[
    bool,
    typer.Option(
        "--keep-people-without-keypoints",
        help="Keep people that have only a position and scale (test-set rectangles), or COCO "
        "instances without keypoints (their ROI is then their box or mask).",
    ),
]
KeepCrowd = Annotated[
    bool,
    typer.Option(
        "--keep-crowd",
        help="Keep COCO crowd regions (iscrowd=1: no keypoints, one box and mask over several "
        "people) as ROI-only instances.",
    ),
]
Captions = Annotated[
    Path | None,
    typer.Option(
        "--captions",
        help="A COCO captions file (captions_train2017.json) joined on the image id: the images' "
        "human captions, which describe --backend captions turns into descriptions.",
    ),
]
KeepImagesWithoutPeople = Annotated[
    bool, typer.Option("--keep-images-without-people", help="Keep images that end up with no person.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")]


@app.command("convert")
def _convert(
    sources: Sources,
    *,
    name: Name = "mpii",
    overwrite: Overwrite = False,
    join: Join = "left",
    split: Split = None,
    keep_people_without_keypoints: KeepPeopleWithoutKeypoints = False,
    keep_images_without_people: KeepImagesWithoutPeople = False,
    keep_crowd: KeepCrowd = False,
    captions: Captions = None,
    as_json: AsJson = False,
) -> None:
    """Convert MPII Human Pose or COCO-format keypoint annotations into the store (annotations/<name>),
    counting what was dropped."""
    from pipeline.convert import ConvertConfig, convert  # its readers load scipy, h5py and pandas (~1 s)

    cfg = ConvertConfig(
        sources=sources,
        name=name,
        overwrite=overwrite,
        join=join,
        split=split,
        keep_people_without_keypoints=keep_people_without_keypoints,
        keep_images_without_people=keep_images_without_people,
        keep_crowd=keep_crowd,
        captions=captions,
    )
    counts = convert(cfg, state.store)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    typer.echo(
        f"annotations/{name}: {counts['images']} images, {counts['people']} people, "
        f"{counts['keypoints']} keypoints, {counts['images_with_activity']} with activity, "
        f"splits {counts['splits']} ({counts['seconds']:.2f} s)"
    )
    if "instances" in counts:
        typer.echo(
            f"skeleton {', '.join(counts['skeletons'])}; instances: "
            + ", ".join(f"{k}={v}" for k, v in counts["instances"].items())
        )
    if "captions" in counts:
        c = counts["captions"]
        typer.echo(
            f"captions: {c['captions']} on {c['images_with_captions']} images; "
            f"{c['captions_for_images_not_in_instances']} for images not in the instances"
        )
    if counts["dropped"]:
        typer.echo("dropped: " + ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()))
    if any(counts["conflicts"].values()):
        typer.echo("conflicts: " + ", ".join(f"{k}={v}" for k, v in counts["conflicts"].items()))
