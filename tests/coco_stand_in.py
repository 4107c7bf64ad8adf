"""A TEST-ONLY stand-in for convert's COCO-format reader: the real keypoint files of
shared/data/coco_format as pipeline.records ImageAnnotation rows, so the language side (prompts, the rules
describer, the gate, analyze) is tested on real COCO, CrowdPose and AP-10K instances before the reader lands.

    rows = read_coco_stand_in(shared_data / "coco_format/coco/test_coco.json")

Swap every call for the real reader (pipeline.convert on a COCO-format file) at merge; nothing in pipeline/
imports this. It follows the COCO keypoints format and the records contract: [x, y, v] * K with v = 0 ->
NaN and MISSING, v = 1 -> OCCLUDED, v = 2 -> VISIBLE; the skeleton from the category's `keypoints` and
`skeleton` (pipeline.skeletons.skeleton_for); Person.label = the category name; source_box from bbox
[x, y, w, h]; width and height from `images`; every annotation kept (crowd regions and instances without
keypoints included), in file order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.records import MISSING, ImageAnnotation, Person
from pipeline.skeletons import skeleton_for


def read_coco_stand_in(path: Path) -> list[ImageAnnotation]:
    data = json.loads(Path(path).read_text())
    categories = {c["id"]: c for c in data["categories"]}
    # Every category of a COCO keypoints file shares one skeleton (AP-10K: 54 species, one skeleton).
    first = data["categories"][0]
    skeleton = skeleton_for(first["keypoints"], first.get("skeleton", ()))
    people: dict[int, list[Person]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        kps = np.asarray(a["keypoints"], dtype=np.float32).reshape(-1, 3)
        unknown = kps[:, 2] == 0
        kps[unknown, :2], kps[unknown, 2] = np.nan, MISSING
        x, y, w, h = (float(v) for v in a["bbox"])
        seg = a.get("segmentation")
        people[a["image_id"]].append(
            Person(
                keypoints=kps,
                label=categories[a["category_id"]]["name"],
                source_box=(x, y, x + w, y + h),
                segmentation=json.dumps(seg) if seg else None,
                crowd=bool(a.get("iscrowd", 0)),
            )
        )
    return [
        ImageAnnotation(
            image=im["file_name"],
            people=people[im["id"]],
            skeleton=skeleton,
            width=int(im["width"]),
            height=int(im["height"]),
        )
        for im in data["images"]
    ]
