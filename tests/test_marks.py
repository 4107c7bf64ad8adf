"""pipeline.marks on real images: numbered boxes and skeletons drawn where the keypoints are, any skeleton
given as data (MPII's, COCO's), unknown joints never drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_describe_rules import csv_annotations

from pipeline.marks import BOX_MARGIN, PERSON_COLOURS, draw_people
from pipeline.records import keypoint_boxes
from pipeline.skeletons import MPII


@pytest.fixture(scope="module")
def mpii(shared_data):
    """052475643.jpg (854x480, two seated people; the CSV annotates the left one) and its keypoints."""
    (ann,) = [r for r in csv_annotations(shared_data, 17372) if r.image == "052475643.jpg"]
    with Image.open(shared_data / "mpii/mmpose_tests/052475643.jpg") as im:
        return im.convert("RGB"), ann.keypoints


@pytest.fixture(scope="module")
def coco(shared_data):
    """000000196141.jpg: five COCO people (one with no keypoint), 17 joints, and COCO's own skeleton."""
    data = json.loads((shared_data / "coco_format/coco/test_coco.json").read_text())
    anns = [a for a in data["annotations"] if a["image_id"] == 196141]
    kps = np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(len(anns), 17, 3)
    edges = [(a - 1, b - 1) for a, b in data["categories"][0]["skeleton"]]  # 1-based in the file
    with Image.open(shared_data / "coco_format/coco/000000196141.jpg") as im:
        return im.convert("RGB"), kps, edges


def _px(img, x, y):
    return img.getpixel((round(float(x)), round(float(y))))


def _near(img, x, y) -> set[tuple[int, int, int]]:
    """The colours within one pixel of (x, y): a 2-3 px line's centre can round either way."""
    x, y = round(float(x)), round(float(y))
    return {img.getpixel((i, j)) for i in range(x - 1, x + 2) for j in range(y - 1, y + 2)}


def test_none_is_an_unchanged_copy(mpii):
    img, kps = mpii
    out = draw_people(img, kps, "none")
    assert out is not img and np.array_equal(np.asarray(out), np.asarray(img))


def test_box_frames_the_known_joints_with_the_number(mpii):
    img, kps = mpii
    out = draw_people(img, kps, "box")
    red = PERSON_COLOURS[0]
    x1, y1, x2, y2 = keypoint_boxes(kps)[0][0]
    width = max(2, round(max(img.size) / 256))
    m = BOX_MARGIN * max(x2 - x1, y2 - y1) + width
    mid_y = (y1 + y2) / 2
    assert _px(out, x1 - m + 1, mid_y) == red and _px(out, x2 + m - 1, mid_y) == red  # left and right edges
    assert _px(out, (x1 + x2) / 2, y2 + m - 1) == red  # bottom edge
    inside = np.asarray(out)[int(y1) + 5 : int(y2) - 5, int(x1) + 5 : int(x2) - 5]
    assert np.array_equal(inside, np.asarray(img)[int(y1) + 5 : int(y2) - 5, int(x1) + 5 : int(x2) - 5])
    # The label: a red tag above the box's top-left with black text ("1") in it.
    tag = np.asarray(out)[max(0, int(y1 - m) - 30) : int(y1 - m), int(x1 - m) : int(x1 - m) + 25]
    colours = {tuple(c) for c in tag.reshape(-1, 3)}
    assert red in colours and (0, 0, 0) in colours
    # Nothing drawn on the second (unannotated) person on the right half.
    right = np.asarray(out)[:, int(x2 + m) + 2 :]
    assert np.array_equal(right, np.asarray(img)[:, int(x2 + m) + 2 :])


def test_skeleton_lines_follow_the_edges_given(mpii):
    img, kps = mpii
    out = draw_people(img, kps, "skeleton")
    person = kps[0]
    for a, b in MPII.edges:
        mid = (person[a, :2] + person[b, :2]) / 2
        assert PERSON_COLOURS[0] in _near(out, *mid), (a, b)
    # Only the edges passed are drawn: the left forearm alone.
    only = draw_people(img, kps, "skeleton", edges=[(14, 15)])
    forearm = (person[14, :2] + person[15, :2]) / 2
    shin = (person[4, :2] + person[5, :2]) / 2
    assert PERSON_COLOURS[0] in _near(only, *forearm) and _near(only, *shin) == _near(img, *shin)


def test_unknown_joints_are_never_drawn(mpii):
    img, kps = mpii
    hidden = kps.copy()
    hidden[0, 15] = (np.nan, np.nan, 0)  # left wrist unknown
    out = draw_people(img, hidden, "skeleton")
    forearm = (kps[0, 14, :2] + kps[0, 15, :2]) / 2
    assert _near(out, *forearm) == _near(img, *forearm)


def test_coco_people_each_in_their_colour(coco):
    img, kps, edges = coco
    out = draw_people(img, kps, "skeleton", edges=edges)
    drawn = 0
    for p, person in enumerate(kps):
        colour = PERSON_COLOURS[p % len(PERSON_COLOURS)]
        for a, b in edges:
            if person[a, 2] > 0 and person[b, 2] > 0 and np.hypot(*(person[a, :2] - person[b, :2])) > 12:
                mid = (person[a, :2] + person[b, :2]) / 2
                # A later person's line may cross an earlier one's: the last drawn colour wins there.
                later = [PERSON_COLOURS[q % len(PERSON_COLOURS)] for q in range(p, len(kps))]
                assert _near(out, *mid) & set(later), (p, a, b)
                drawn += colour in _near(out, *mid)
    assert drawn > 40  # most lines show their own person's colour
    assert (kps[:, :, 2] > 0).sum(axis=1).min() == 0  # the person without keypoints got nothing (no crash)
