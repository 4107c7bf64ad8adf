"""`focus-pipeline convert`: MPII annotations (.mat, .json, .h5, CSV) -> annotations/<name>.

focus-pipeline convert mpii_human_pose_v1_u12_1.mat
focus-pipeline --store s3://bucket/focus convert valid.h5 mpii_dataset.csv --name val
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app, state
from pipeline.convert import JOINS, ConvertConfig, convert
from pipeline.records import SPLITS

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Sources = Annotated[
    list[Path],
    typer.Argument(
        help="Annotation files, format detected from content: the official .mat, mmpose/HRNet "
        ".json, stacked-hourglass .h5, mpii_dataset.csv. Several are joined on the image name; "
        "the first one named wins disagreements.",
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
        "train for the CSV, else unknown.",
    ),
]
KeepPeopleWithoutKeypoints = Annotated[
    bool,
    typer.Option(
        "--keep-people-without-keypoints",
        help="Keep people that have only a position and scale (test-set rectangles).",
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
    as_json: AsJson = False,
) -> None:
    """Convert MPII Human Pose annotations into the store (annotations/<name>), counting what was dropped."""
    cfg = ConvertConfig(
        sources=sources,
        name=name,
        overwrite=overwrite,
        join=join,
        split=split,
        keep_people_without_keypoints=keep_people_without_keypoints,
        keep_images_without_people=keep_images_without_people,
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
    if counts["dropped"]:
        typer.echo("dropped: " + ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()))
    if any(counts["conflicts"].values()):
        typer.echo("conflicts: " + ", ".join(f"{k}={v}" for k, v in counts["conflicts"].items()))
