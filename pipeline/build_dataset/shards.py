"""The row an image becomes in the dataset's shards.

    writer.add(dataset_row(ann, descs, res, sources), nbytes)

The writer and the columns (FEATURES) are the datasets artifact's: pipeline.artifacts.datasets.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from pipeline.build_dataset.images import ImageResult
from pipeline.build_dataset.index import Description
from pipeline.records import ImageAnnotation, Person


def _person_row(p: Person, roi: str | None, sx: float, sy: float) -> dict:
    kps = p.keypoints.astype(np.float32).copy()
    kps[:, 0] *= sx
    kps[:, 1] *= sy
    box = p.source_box
    return {
        "keypoints": kps.reshape(-1).tolist(),
        "center": None if p.center is None else [float(p.center[0]) * sx, float(p.center[1]) * sy],
        # scale is person height / 200 px, so it follows the vertical factor.
        "scale": None if p.scale is None else float(p.scale) * sy,
        "label": p.label,
        "box": None if box is None else [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy],
        "crowd": p.crowd,
        "roi": roi,
    }


def dataset_row(
    ann: ImageAnnotation, descs: list[Description], res: ImageResult, sources: list[str | None]
) -> dict:
    sx, sy = res.scale
    return {
        "image": {"bytes": res.image, "path": ann.image},
        "heatmap": {"bytes": res.heatmap, "path": None},
        "image_id": ann.image,
        "split": ann.split,
        "activity": ann.activity,
        "category": ann.category,
        "activity_id": ann.activity_id,
        "description": descs[0].text,
        "descriptions": [asdict(d) for d in descs],
        "width": res.width,
        "height": res.height,
        "people": [_person_row(p, s, sx, sy) for p, s in zip(ann.people, sources, strict=True)],
        "skeleton": ann.skeleton.name,
    }
