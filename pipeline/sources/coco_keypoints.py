"""Reader for COCO-format keypoint files: person_keypoints_*.json, CrowdPose, OCHuman, AP-10K, MPII-TRB, ...

    {"images": [{"id", "file_name", "width", "height"}],
     "annotations": [{"id", "image_id", "category_id", "keypoints": [x, y, v] * K, "bbox": [x, y, w, h],
                      "segmentation": polygons | RLE, "iscrowd": 0 | 1}],
     "categories": [{"id", "name", "keypoints": [joint names], "skeleton": [[a, b] (1-based)]}]}

One skeleton per file, from the categories that list keypoints (pipeline.skeletons.skeleton_for: a built-in
when the names match one, else a custom skeleton); each instance keeps its category's name as Person.label
(the species in AP-10K). v = 0 is "not labelled" (COCO writes 0, 0, 0), so x and y become NaN; v = 1
labelled but not visible (occluded), v = 2 visible. bbox [x, y, w, h] becomes source_box (x1, y1, x2, y2);
segmentation is kept as JSON text (polygons, or RLE with compressed or uncompressed counts) and decoded only
when a mask heatmap is drawn. COCO files record no split: it comes from --split ("unknown" without).
Crowd regions (iscrowd = 1) and instances without keypoints are read like the others: convert decides.
An instance whose box or mask lies far off its image (pipeline.bounds) is skipped and counted
(dropped_person:<reason>); width and height must be whole numbers of pixels up to bounds.MAX_SIDE.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.bounds import MAX_SIDE, instance_problem
from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation, Person, empty_keypoints
from pipeline.skeletons import Skeleton, skeleton_for
from pipeline.sources.base import SourceData, load_json, record_id, records

log = logging.getLogger(__name__)


def _numbers(path: Path, where: str, key: str, value: object) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PipelineError(f"{path}: {where}: {key} is not a list of numbers") from None
    except OverflowError:  # an integer written with hundreds of digits
        raise PipelineError(f"{path}: {where}: {key} has a number too large for a float") from None
    if arr.dtype == object or not np.isfinite(arr).all():
        raise PipelineError(f"{path}: {where}: {key} is not a list of finite numbers")
    return arr


def _skeleton(path: Path, categories: list[dict]) -> tuple[Skeleton, dict[int | str, str]]:
    """The file's one skeleton and each category's name by id."""
    names: dict[int | str, str] = {}
    lists: dict[tuple[str, ...], str] = {}  # keypoint list -> the first category naming it
    edges: list = []
    for i, cat in enumerate(categories):
        cid = record_id(path, f"categories[{i}]", cat)
        names[cid] = str(cat.get("name") or cid)
        kps = cat.get("keypoints")
        if kps:
            if not isinstance(kps, list) or not all(isinstance(k, str) for k in kps):
                raise PipelineError(
                    f"{path}: category {names[cid]!r}: keypoints is not a list of joint names"
                )
            if tuple(kps) not in lists:
                lists[tuple(kps)] = names[cid]
                edges = edges or cat.get("skeleton") or []
    if not lists:
        raise PipelineError(
            f"{path}: no category lists keypoint names: not a COCO keypoints file (an instances or captions "
            f"file? captions go to convert --captions)"
        )
    if len(lists) > 1:
        (a, na), (b, nb) = list(lists.items())[:2]
        raise PipelineError(
            f"{path}: categories {na!r} ({len(a)} joints) and {nb!r} ({len(b)} joints) list different "
            f"keypoints; split the file by skeleton and convert each part on its own"
        )
    joints = next(iter(lists))
    try:
        return skeleton_for(joints, edges), names
    except (ValueError, TypeError) as err:
        raise PipelineError(f"{path}: category {lists[joints]!r}: bad skeleton ({err})") from None


def _images(path: Path, data: dict, split: str, skeleton: Skeleton) -> dict[int | str, ImageAnnotation]:
    by_id: dict[int | str, ImageAnnotation] = {}
    owner: dict[str, int | str] = {}  # file name -> image id
    for i, rec in enumerate(records(path, data, "images")):
        image_id = record_id(path, f"images[{i}]", rec)
        where = f"images[{i}] (id {image_id})"
        name = rec.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise PipelineError(f"{path}: {where}: file_name is {json.dumps(name)}, not a file name")
        if image_id in by_id:
            raise PipelineError(f"{path}: {where}: the id is used by another image too")
        if name in owner:
            raise PipelineError(f"{path}: {where}: file_name {name!r} is image {owner[name]}'s too")
        size = [rec.get("width"), rec.get("height")]
        if any(s is not None and (type(s) is not int or not 0 < s <= MAX_SIDE) for s in size):
            raise PipelineError(
                f"{path}: {where}: width/height {json.dumps(size)} are not whole numbers of pixels from 1 to "
                f"{MAX_SIDE}"
            )
        owner[name] = image_id
        by_id[image_id] = ImageAnnotation(
            image=name, split=split, skeleton=skeleton, width=size[0], height=size[1]
        )
    return by_id


def _keypoints(path: Path, where: str, value: object, skeleton: Skeleton) -> np.ndarray:
    k = skeleton.num_joints
    kps = empty_keypoints(k)
    if value is None or (isinstance(value, list) and not value):
        return kps  # an instance without keypoints (a crowd region, a small or cut-off one)
    arr = _numbers(path, where, "keypoints", value)
    # COCO writes one flat list; [[x, y, v], ...] with one triple per joint says the same, so it is read too.
    if arr.shape not in ((3 * k,), (k, 3)):
        layout = f"{arr.size} values" if arr.ndim == 1 else f"{' x '.join(map(str, arr.shape))} nested lists"
        raise PipelineError(
            f"{path}: {where}: keypoints has {layout}, expected {3 * k} (x, y, v for the {k} joints of "
            f"{skeleton.name}, as one flat list or {k} [x, y, v] triples)"
        )
    arr = arr.reshape(k, 3)
    v = arr[:, 2]
    bad = ~np.isin(v, (0, 1, 2))
    if bad.any():
        j = int(np.argmax(bad))
        raise PipelineError(f"{path}: {where}: {skeleton.joints[j]} has visibility {v[j]:g}, not 0, 1 or 2")
    labelled = v > 0
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, dropped and counted by drop_implausible
        kps[labelled, :2] = arr[labelled, :2]
    kps[labelled, 2] = v[labelled]
    return kps


def _box(path: Path, where: str, value: object) -> tuple[float, float, float, float] | None:
    if value is None or (isinstance(value, list) and not value):
        return None
    arr = _numbers(path, where, "bbox", value)
    if arr.shape != (4,) or (arr[2:] < 0).any():
        raise PipelineError(f"{path}: {where}: bbox {json.dumps(value)} is not [x, y, width, height]")
    x, y, w, h = arr.tolist()
    return (x, y, x + w, y + h)


def _segmentation(path: Path, where: str, value: object, ann: ImageAnnotation, counts: Counter) -> str | None:
    """The instance mask as compact JSON text, checked enough that pycocotools can decode it later."""
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, list):
        polygons = []
        for poly in value:
            arr = _numbers(path, where, "segmentation polygon", poly)
            if arr.ndim != 1 or arr.size % 2:
                raise PipelineError(
                    f"{path}: {where}: a segmentation polygon is not a flat list of x, y pairs"
                )
            if (
                arr.size < 6
            ):  # fewer than 3 points encloses nothing (pycocotools would read 4 values as a box)
                counts["dropped_polygon:fewer_than_3_points"] += 1
                continue
            polygons.append(poly)
        return json.dumps(polygons, separators=(",", ":")) if polygons else None
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: {where}: segmentation is a {type(value).__name__}, not polygons or RLE")
    size, rle = value.get("size"), value.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise PipelineError(f"{path}: {where}: RLE size {json.dumps(size)} is not [height, width]")
    if ann.width is not None and ann.height is not None and size != [ann.height, ann.width]:
        raise PipelineError(
            f"{path}: {where}: RLE size {size} is not the image's [height, width] [{ann.height}, {ann.width}]"
        )
    if isinstance(rle, list):  # uncompressed: run lengths, alternately 0s and 1s, column-major
        if not all(isinstance(c, int) and c >= 0 for c in rle) or sum(rle) != size[0] * size[1]:
            raise PipelineError(
                f"{path}: {where}: uncompressed RLE counts are not non-negative runs summing to "
                f"{size[0]} x {size[1]}"
            )
    elif not isinstance(rle, str):
        raise PipelineError(f"{path}: {where}: RLE counts is {type(rle).__name__}, not a string or a list")
    return json.dumps({"size": size, "counts": rle}, separators=(",", ":"))


def _crowd(path: Path, where: str, value: object) -> bool:
    if value in (None, 0, 1, False, True):
        return bool(value)
    raise PipelineError(f"{path}: {where}: iscrowd is {json.dumps(value)}, not 0 or 1")


def _center_scale(path: Path, where: str, rec: dict) -> tuple[tuple[float, float] | None, float | None]:
    """MPII-TRB and other MPII-derived files carry the MPII objpos and scale per instance."""
    center = scale = None
    if rec.get("center") is not None:
        c = _numbers(path, where, "center", rec["center"])
        if c.shape != (2,):
            raise PipelineError(f"{path}: {where}: center {json.dumps(rec['center'])} is not [x, y]")
        center = (float(c[0]), float(c[1]))
    if rec.get("scale") is not None:
        s = _numbers(path, where, "scale", rec["scale"])
        scale = float(s) if s.shape == () and s > 0 else None
    return center, scale


def read(path: Path, *, split: str | None = None) -> SourceData:
    data = load_json(path)
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        keys = ", ".join(list(data)[:6]) if isinstance(data, dict) else type(data).__name__
        raise PipelineError(
            f"{path}: JSON object with keys {keys}; expected a COCO-format file (images, annotations, "
            f"categories) or the mmpose/HRNet MPII list of people "
            f"{{image, joints, joints_vis, center, scale}}"
        )
    skeleton, labels = _skeleton(path, records(path, data, "categories"))
    by_id = _images(path, data, split or "unknown", skeleton)
    annotations = records(path, data, "annotations")
    counts: Counter = Counter(rows=len(annotations))
    for i, rec in enumerate(annotations):
        where = f"annotation {i} (id {rec.get('id')})"
        image_id, category_id = (
            record_id(path, where, rec, "image_id"),
            record_id(path, where, rec, "category_id"),
        )
        ann = by_id.get(image_id)
        if ann is None:
            raise PipelineError(f"{path}: {where}: image_id {image_id} is not in images")
        if category_id not in labels:
            raise PipelineError(f"{path}: {where}: category_id {category_id} is not in categories")
        center, scale = _center_scale(path, where, rec)
        person = Person(
            keypoints=_keypoints(path, where, rec.get("keypoints"), skeleton),
            center=center,
            scale=scale,
            label=labels[category_id],
            source_box=_box(path, where, rec.get("bbox")),
            segmentation=_segmentation(path, where, rec.get("segmentation"), ann, counts),
            crowd=_crowd(path, where, rec.get("iscrowd")),
        )
        # Boxes and masks far off the image (1e9) would crash pycocotools later: such an instance is skipped.
        frame = (ann.width, ann.height) if ann.width and ann.height else (MAX_SIDE, MAX_SIDE)
        problem = instance_problem(person, frame, mask=True)
        if problem is not None:
            counts[f"dropped_person:{problem.reason}"] += 1
            if counts[f"dropped_person:{problem.reason}"] == 1:  # the first of each kind, as an example
                log.warning("%s: %s: instance skipped (%s)", path, where, problem)
            continue
        ann.people.append(person)
    return SourceData(
        path=path,
        format="coco",
        images={a.image: a for a in by_id.values()},
        has_people=True,
        has_activity=False,
        has_occlusion=True,
        split_per_image=False,
        counts=counts,
        image_ids={image_id: a.image for image_id, a in by_id.items()},
    )
