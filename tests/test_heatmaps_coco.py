"""ROI heatmaps beyond MPII, on the real COCO-format files: keypoints of any skeleton (COCO-17 gives the MPII
path's map on the shared joints), the instance box through the same blob rule, the instance mask covering
the real COCO polygons and nothing far from them, compressed and uncompressed RLE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy.ndimage import binary_dilation

from pipeline.heatmaps import decode_mask, instance_heatmap, pad_people, roi_heatmap, roi_heatmap_torch
from pipeline.records import VISIBLE, empty_keypoints
from pipeline.skeletons import MPII, SKELETONS, skeleton_for

COCO17 = SKELETONS["coco-17"]
LIMB_JOINTS = [
    f"{side} {joint}"
    for side in ("left", "right")
    for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
]


@pytest.fixture(scope="module")
def coco(shared_data: Path) -> dict:
    return json.loads((shared_data / "coco_format" / "coco" / "test_coco.json").read_text())


def _both(ann: dict) -> tuple[np.ndarray, np.ndarray]:
    """One real COCO person's 12 limb joints, in a COCO-17 array and in an MPII-16 array (nothing else)."""
    raw = np.array(ann["keypoints"], np.float32).reshape(17, 3)
    coco, mpii = empty_keypoints(17), empty_keypoints(16)
    for name in LIMB_JOINTS:
        x, y, v = raw[COCO17.joints.index(name)]
        if v > 0:
            coco[COCO17.joints.index(name)] = (x, y, v)
            mpii[MPII.joints.index(name)] = (x, y, v)
    return coco, mpii


@pytest.mark.parametrize("parts", [False, True])
def test_coco_keypoints_give_the_mpii_heatmap_on_the_shared_joints(coco, parts):
    images = {i["id"]: i for i in coco["images"]}
    per_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        if any(v > 0 for v in ann["keypoints"][2::3]):
            per_image.setdefault(ann["image_id"], []).append(_both(ann))
    assert len(per_image) == 4
    for image_id, people in per_image.items():
        c, m = np.stack([p[0] for p in people]), np.stack([p[1] for p in people])
        size = (images[image_id]["width"], images[image_id]["height"])
        a = roi_heatmap(c, size, (160, 120), parts=parts, skeleton=COCO17)
        b = roi_heatmap(m, size, (160, 120), parts=parts)
        assert a.max() > 0.9
        np.testing.assert_array_equal(a, b)
        sizes = torch.tensor([size], dtype=torch.float32)
        ta = roi_heatmap_torch(torch.from_numpy(c[None]), sizes, (64, 48), parts=parts, skeleton=COCO17)
        tb = roi_heatmap_torch(torch.from_numpy(m[None]), sizes, (64, 48), parts=parts)
        assert torch.equal(ta, tb)


def test_any_skeleton_whole_instance_blob_and_parts():
    ap10k = SKELETONS["ap10k-17"]
    kps = empty_keypoints(17)
    kps[ap10k.joints.index("nose")] = (100, 50, VISIBLE)
    kps[ap10k.joints.index("root of tail")] = (300, 150, VISIBLE)
    whole = roi_heatmap(kps[None], (400, 200), skeleton=ap10k)
    assert whole[99, 199] == pytest.approx(1.0, abs=0.02)  # the centre of the two joints' box
    parts = roi_heatmap(kps[None], (400, 200), parts=True, skeleton=ap10k)
    assert parts[50, 100] == pytest.approx(1.0, abs=0.02)  # the head part is the nose alone here
    bird = skeleton_for(["beak", "tail"])
    two = np.array([[[10, 10, 2], [30, 50, 2]]], np.float32)
    assert roi_heatmap(two, (40, 60), skeleton=bird).max() > 0.9  # no joint names needed
    with pytest.raises(ValueError, match="defines no body parts"):
        roi_heatmap(two, (40, 60), parts=True, skeleton=bird)
    assert pad_people([two, np.zeros((0, 2, 3), np.float32)]).shape == (2, 1, 2, 3)


def test_box_roi_is_the_keypoint_blob_rule_on_the_box():
    kps = empty_keypoints(17)
    kps[0], kps[16] = (40, 30, VISIBLE), (140, 230, VISIBLE)  # keypoint box (40, 30, 140, 230)
    from_kps = roi_heatmap(kps[None], (320, 240), (160, 120), skeleton=COCO17)
    from_box = instance_heatmap(
        np.zeros((0, 17, 3)), np.array([[40, 30, 140, 230]]), [], (320, 240), (160, 120)
    )
    np.testing.assert_allclose(from_box, from_kps, atol=1e-6)
    both = instance_heatmap(kps[None], np.array([[200, 20, 300, 60]]), [], (320, 240), (160, 120))
    assert both[20, 125] > 0.9 and both[65, 45] > 0.9  # the box blob and the keypoint blob, summed


def _truth(coco: dict, image: dict) -> np.ndarray:
    """The image's instance masks decoded straight with pycocotools, as their union."""
    h, w = image["height"], image["width"]
    union = np.zeros((h, w), bool)
    for a in coco["annotations"]:
        if a["image_id"] == image["id"]:
            union |= mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))) > 0
    return union


def _footprints(mask: np.ndarray, out: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel at size out (w, h): whether the source pixels it covers are all in the mask, or none is."""
    h, w = mask.shape
    table = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    y0 = np.floor(np.arange(out[1]) * h / out[1]).astype(int)
    y1 = np.ceil(np.arange(1, out[1] + 1) * h / out[1]).astype(int)
    x0 = np.floor(np.arange(out[0]) * w / out[0]).astype(int)
    x1 = np.ceil(np.arange(1, out[0] + 1) * w / out[0]).astype(int)
    total = table[y1][:, x1] - table[y0][:, x1] - table[y1][:, x0] + table[y0][:, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return total == area, total == 0


def test_mask_heatmap_covers_the_real_masks_and_nothing_far_away(coco):
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        segs = [json.dumps(a["segmentation"]) for a in coco["annotations"] if a["image_id"] == image["id"]]
        truth = _truth(coco, image)
        assert truth.sum() > 1000
        near = binary_dilation(truth, iterations=3)
        # At the source size (what build-dataset stores without --max-side): exactly the mask.
        hm = instance_heatmap(np.zeros((0, 17, 3)), np.zeros((0, 4)), segs, (w, h))
        assert hm.dtype == np.float32 and hm.shape == (h, w)
        assert hm[truth].min() >= 0.99 and hm[~near].max() == 0.0
        # Shrunk (--max-side): area averaging, so cells wholly inside the mask are 1 and wholly outside 0.
        out = (round(w * 0.45), round(h * 0.45))
        small = instance_heatmap(np.zeros((0, 17, 3)), np.zeros((0, 4)), segs, out, mask_size=(w, h))
        inside, outside = _footprints(truth, out)
        assert inside.sum() > 100 and small[inside].min() >= 0.99 and small[outside].max() <= 0.01
        assert small.min() >= 0.0 and small.max() <= 1.0


def test_rle_masks_decode_like_the_polygons(coco):
    image = coco["images"][0]
    w, h = image["width"], image["height"]
    truth = _truth(coco, image).astype(np.uint8)
    compressed = mask_utils.encode(np.asfortranarray(truth))
    compressed = json.dumps({"size": [h, w], "counts": compressed["counts"].decode()})
    flat = truth.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    uncompressed = json.dumps({"size": [h, w], "counts": runs if flat[0] == 0 else [0, *runs]})
    for seg in (compressed, uncompressed):
        np.testing.assert_array_equal(decode_mask(seg, (w, h)), truth)
    with pytest.raises(ValueError, match=r"mask of 640x425 px on an image of 320x200 px"):
        decode_mask(compressed, (320, 200))
