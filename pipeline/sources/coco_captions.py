"""Reader for COCO captions files (captions_train2017.json, ...) and their join onto converted images.

    {"images": [{"id", "file_name", "width", "height"}], "annotations": [{"image_id", "id", "caption"}]}

About five human-written captions per image. They join the keypoint file's images on the image id (both files
come from the same COCO release, so the ids agree), in the captions file's order, with runs of whitespace
(COCO captions end in spaces and newlines) collapsed.

    captions, counts = read_captions(Path("captions_val2017.json"))
    images, joined = join_captions(images, src.image_ids, captions)
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation
from pipeline.sources.base import load_json, record_id, records


def read_captions(path: Path) -> tuple[dict[int | str, list[str]], Counter]:
    """Captions by image id, and the read counters (rows, empty captions skipped)."""
    data = load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise PipelineError(
            f"{path}: not a COCO captions file (a JSON object whose annotations are "
            f"{{image_id, id, caption}})"
        )
    out: dict[int | str, list[str]] = {}
    annotations = records(path, data, "annotations")
    counts: Counter = Counter(rows=len(annotations))
    for i, rec in enumerate(annotations):
        where = f"annotation {i} (id {rec.get('id')})"
        image_id = record_id(path, where, rec, "image_id")
        caption = rec.get("caption")
        if not isinstance(caption, str):
            raise PipelineError(f"{path}: {where}: caption is {type(caption).__name__}, not text")
        text = " ".join(caption.split())
        if not text:
            counts["empty_caption"] += 1
            continue
        out.setdefault(image_id, []).append(text)
    return out, counts


def join_captions(
    images: list[ImageAnnotation], image_ids: dict[int | str, str], captions: dict[int | str, list[str]]
) -> tuple[list[ImageAnnotation], Counter]:
    """The images with their captions (new records), and how many captions found no image."""
    by_name = {name: texts for image_id, texts in captions.items() if (name := image_ids.get(image_id))}
    unmatched = [texts for image_id, texts in captions.items() if image_id not in image_ids]
    counts = Counter(
        captions_for_images_not_in_instances=sum(len(t) for t in unmatched),
        images_not_in_instances=len(unmatched),
    )
    return [dataclasses.replace(a, captions=tuple(by_name.get(a.image, ()))) for a in images], counts
