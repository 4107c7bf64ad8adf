"""A pose model's predictions measured against COCO-format ground truth: OKS-based AP with pycocotools'
COCOeval (the COCO keypoint challenge's metric), and the people found and missed at annotate's --min-score.

    truth = GroundTruth.read(Path("person_keypoints_val2017.json"))   # checked before any model runs
    result = keypoint_accuracy(truth, predictions, min_score=0.5)
    result["ap"], result["found"], result["missed"]

`predictions` maps annotate's image names (paths under --images) to every person the model returned, before
any threshold: AP ranks them by their detection score, as COCO's evaluation does. A ground-truth image is
matched to an annotated image by its file_name, or by the base name when exactly one annotated image has it;
only matched images are evaluated. People without keypoints (num_keypoints 0) and crowd regions are ignored,
as COCOeval ignores them. found / missed: the ground-truth people a prediction kept by --min-score matches at
OKS >= 0.5 (COCOeval's greedy matching by score); false_positives: kept predictions that match nobody.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.annotate.prediction import COCO17, Prediction
from pipeline.errors import PipelineError
from pipeline.skeletons import skeleton_for
from pipeline.sources.base import load_json, record_id, records

METRIC = "OKS AP (pycocotools COCOeval, iouType keypoints, maxDets 20)"


def _person_category(path: Path, data: dict) -> int | str:
    """The id of the file's one category with keypoints, checked to be COCO-17 (the OKS sigmas are COCO's)."""
    with_kps = [c for c in records(path, data, "categories") if c.get("keypoints")]
    if len(with_kps) != 1:
        raise PipelineError(
            f"{path}: {len(with_kps)} categories list keypoints; the ground truth needs exactly one (person)"
        )
    cat = with_kps[0]
    try:
        skeleton = skeleton_for(cat["keypoints"], cat.get("skeleton") or [])
    except (ValueError, TypeError) as err:
        raise PipelineError(f"{path}: category {cat.get('name')!r}: bad skeleton ({err})") from None
    if skeleton.name != COCO17.name:
        raise PipelineError(
            f"{path}: category {cat.get('name')!r}: its {len(cat['keypoints'])} joints are not COCO-17's, "
            f"which the predictions and COCO's OKS constants are"
        )
    return record_id(path, "categories", cat)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    path: Path
    data: dict
    category: int | str  # the person category's id

    @classmethod
    def read(cls, path: Path) -> GroundTruth:
        data = load_json(path)
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
            raise PipelineError(f"{path}: not a COCO-format keypoints file (images, annotations, categories)")
        records(path, data, "images")
        records(path, data, "annotations")
        return cls(path, data, _person_category(path, data))


def match_images(path: Path, data: dict, names: list[str]) -> dict[int | str, str]:
    """Ground-truth image id -> annotated image name, by file_name, else by a base name that is unique."""
    exact = set(names)
    by_base: dict[str, list[str]] = {}
    for n in names:
        by_base.setdefault(PurePosixPath(n).name, []).append(n)
    out = {}
    for i, rec in enumerate(records(path, data, "images")):
        file_name = str(rec.get("file_name"))
        candidates = [file_name] if file_name in exact else by_base.get(PurePosixPath(file_name).name, [])
        if len(candidates) == 1:
            out[record_id(path, f"images[{i}]", rec)] = candidates[0]
    return out


def _ground_truth(data: dict, category: int | str, image_ids: set) -> dict:
    """The file restricted to the matched images, with the fields COCOeval needs filled in where missing."""
    annotations = []
    for a in data.get("annotations", []):
        if a.get("image_id") not in image_ids or a.get("category_id") != category:
            continue
        kps = np.asarray(a.get("keypoints") or [0] * 3 * COCO17.num_joints, dtype=np.float64)
        x, y, w, h = (list(a.get("bbox") or []) + [0, 0, 0, 0])[:4]
        annotations.append(
            {
                **a,
                "keypoints": kps.tolist(),
                "num_keypoints": int(a.get("num_keypoints", (kps[2::3] > 0).sum())),
                "area": float(a.get("area", w * h)),
                "bbox": [x, y, w, h],
                "iscrowd": int(a.get("iscrowd", 0)),
            }
        )
    images = [im for im in data["images"] if im.get("id") in image_ids]
    categories = [c for c in data["categories"] if c.get("id") == category]
    return {"images": images, "annotations": annotations, "categories": categories}


def _run(gt: COCO, dets: list[dict], image_ids: list) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _matches(ev: COCOeval) -> tuple[int, int, int]:
    """(people, found, false positives) at OKS 0.5 over every image, area range "all"."""
    people = found = false_pos = 0
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        gt_ok = ~np.asarray(e["gtIgnore"], dtype=bool)
        people += int(gt_ok.sum())
        found += int(((np.asarray(e["gtMatches"])[0] > 0) & gt_ok).sum())
        dt_ok = ~np.asarray(e["dtIgnore"], dtype=bool)[0]
        false_pos += int(((np.asarray(e["dtMatches"])[0] == 0) & dt_ok).sum())
    return people, found, false_pos


def keypoint_accuracy(
    truth: GroundTruth, predictions: dict[str, list[Prediction]], *, min_score: float
) -> dict[str, Any]:
    path, data, category = truth.path, truth.data, truth.category
    matched = match_images(path, data, list(predictions))
    if not matched:
        raise PipelineError(
            f"{path}: none of its {len(data['images'])} images is among the annotated images "
            f"(matched by file_name, or by base name)"
        )
    gt = COCO()
    gt.dataset = _ground_truth(data, category, set(matched))
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    ids = sorted(matched, key=str)

    def dets(floor: float) -> list[dict]:
        return [
            {
                "image_id": image_id,
                "category_id": category,
                "keypoints": np.column_stack([p.keypoints, np.ones(COCO17.num_joints)]).reshape(-1).tolist(),
                "score": p.score,
            }
            for image_id in ids
            for p in predictions[matched[image_id]]
            if p.score >= floor
        ]

    every, kept = dets(-np.inf), dets(min_score)
    people = sum(1 for a in gt.dataset["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])
    ap = _run(gt, every, ids).stats if every else np.zeros(10)  # no prediction at all: nothing is found
    _, found, false_pos = _matches(_run(gt, kept, ids)) if kept else (people, 0, 0)
    return {
        "ground_truth": str(path),
        "metric": METRIC,
        "images": len(ids),
        "ground_truth_images_not_annotated": len(data["images"]) - len(ids),
        "people": people,
        "predictions": len(every),
        "ap": round(float(ap[0]), 4),
        "ap50": round(float(ap[1]), 4),
        "ap75": round(float(ap[2]), 4),
        "min_score": min_score,
        "found": found,
        "missed": people - found,
        "false_positives": false_pos,
    }
