"""pipeline.animals and pipeline.instances on the real AP-10K file: facing, visible parts, nouns and counts.

What the facts say was checked against the two real images (shared/data/coco_format/ap10k, viewed with the
keypoints drawn on them): 000000037516.jpg is a jaguar walking along a wall, its head at the left of the
frame (nose at x = 94) and its tail root at the right (x = 890), all four legs in view; 000000000004.jpg is
an antelope grazing, head lowered to the grass at the left (nose x = 466), tail root at the right (x = 787),
all four legs in view. Both faces left; in both the right eye is hidden (v = 0), the rest annotated.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.animals import FACING_MIN_COS, animal_facts, facing
from pipeline.instances import annotation_facts, claim_nouns, groups, instances, plural
from pipeline.records import MISSING, OCCLUDED, ImageAnnotation, Person
from pipeline.skeletons import SKELETONS, skeleton_for
from pipeline.sources.coco_keypoints import read as read_coco


def coco_rows(path):
    """Every image of a real COCO-format file, each instance kept (crowds and keypoint-less ones too)."""
    return list(read_coco(path).images.values())


AP10K = SKELETONS["ap10k-17"]
ALL_PARTS = ("head", "body", "left front leg", "right front leg", "left back leg", "right back leg")


@pytest.fixture(scope="module")
def ap10k(shared_data) -> dict[str, ImageAnnotation]:
    return {a.image: a for a in coco_rows(shared_data / "coco_format/ap10k/test_ap10k.json")}


def joint(name: str) -> int:
    return AP10K.joints.index(name)


def test_real_animals_face_left_with_every_part_visible(ap10k):
    jaguar, antelope = ap10k["000000037516.jpg"], ap10k["000000000004.jpg"]
    assert [p.label for p in jaguar.people] == ["jaguar"] and [p.label for p in antelope.people] == [
        "antelope"
    ]
    for ann in (jaguar, antelope):
        (f,) = annotation_facts(ann)
        assert f.facing == "left" and f.position is None  # alone: no left/right among instances
        assert f.visible == ALL_PARTS and f.hidden == () and f.known_joints == 16


def test_facing_follows_the_head_end_and_needs_a_clear_side(ap10k):
    kps = ap10k["000000037516.jpg"].people[0].keypoints.copy()
    mirrored = kps.copy()
    mirrored[:, 0] = 1200 - mirrored[:, 0]
    assert facing(mirrored, AP10K) == "right"
    # Without the tail root the neck is the back end: the nose (x 94) is still left of it (x 302).
    no_tail = kps.copy()
    no_tail[joint("root of tail")] = [np.nan, np.nan, MISSING]
    assert facing(no_tail, AP10K) == "left"
    # Seen from the front: the nose below the tail root, the head->tail line within 60 degrees of vertical
    # (|dx| < FACING_MIN_COS |d|), faces neither side; tilted further towards horizontal, it does.
    tail = kps[joint("root of tail"), :2]
    for dx, dy, side in ((100, 300, None), (-100, 300, None), (200, -300, "right"), (-200, 300, "left")):
        assert (abs(dx) >= FACING_MIN_COS * np.hypot(dx, dy)) == (side is not None)
        turned = kps.copy()
        turned[joint("nose"), :2] = tail + [dx, dy]
        assert facing(turned, AP10K) == side, (dx, dy)
    # Two joints a few pixels apart (under a tenth of the instance's size, here about 800 px) decide nothing.
    close = kps.copy()
    close[joint("nose"), :2] = tail - [30, 0]
    assert facing(close, AP10K) is None
    # No named head or tail joint known: unknown, not guessed from the paws.
    bare = kps.copy()
    bare[[joint("nose"), joint("neck"), joint("root of tail")]] = [np.nan, np.nan, MISSING]
    assert facing(bare, AP10K) is None


def test_parts_are_visible_when_a_joint_is_marked_visible(ap10k):
    kps = ap10k["000000000004.jpg"].people[0].keypoints.copy()
    leg = [joint(n) for n in ("right hip", "right knee", "right back paw")]
    kps[leg[:2], 2] = OCCLUDED  # annotated but occluded: not visible
    kps[leg[2]] = [np.nan, np.nan, MISSING]
    f = animal_facts(kps, AP10K)
    assert f.hidden == ("right back leg",) and "right back leg" not in f.visible
    assert f.known_joints == 15  # the occluded joints are still known


def test_a_custom_skeleton_has_one_part_per_joint_and_no_facing():
    sk = skeleton_for(["tip", "left base", "right base"], [[1, 2], [1, 3]])
    assert sk.name.startswith("custom-") and not sk.human
    kps = np.array([[10, 10, 2], [0, 30, 2], [20, 30, 1]], dtype=np.float32)
    f = animal_facts(kps, sk)
    assert f.facing is None and f.visible == ("tip", "left base") and f.hidden == ("right base",)


def test_nouns_counts_and_crowd_regions(ap10k):
    zebra = Person(keypoints=ap10k["000000037516.jpg"].people[0].keypoints, label="zebra")
    giraffe = replace(zebra, label="giraffe")
    crowd = Person(keypoints=zebra.keypoints * np.nan, label="zebra", crowd=True)
    ann = ImageAnnotation(image="z.jpg", people=[zebra, crowd, giraffe, zebra], skeleton=AP10K)
    assert instances(ann) == [zebra, giraffe, zebra]
    assert groups(ann) == [("zebra", 2), ("giraffe", 1)]
    assert claim_nouns(ann) == ("zebra", "giraffe", "animal")
    assert len(annotation_facts(ann)) == 3
    # People add no nouns: the claim parser knows the people words already.
    assert claim_nouns(ImageAnnotation(image="p.jpg", people=[Person(label="person")])) == ()


def test_plurals_of_every_ap10k_species(shared_data):
    names = [
        c["name"]
        for c in json.loads(Path(shared_data / "coco_format/ap10k/test_ap10k.json").read_text())["categories"]
    ]
    plurals = dict(zip(names, map(plural, names), strict=True))
    assert len(plurals) == 54
    assert (
        plurals["argali sheep"] == "argali sheep"
        and plurals["mouse"] == "mice"
        and plurals["wolf"] == "wolves"
    )
    assert plurals["fox"] == "foxes" and plurals["arctic fox"] == "arctic foxes" and plurals["deer"] == "deer"
    assert plurals["spider monkey"] == "spider monkeys" and plurals["polar bear"] == "polar bears"
    assert plurals["buffalo"] == "buffalo" and plurals["moose"] == "moose" and plurals["bison"] == "bison"
    assert (
        plural("person") == "people" and plural("animal") == "animals" and plural("instance") == "instances"
    )
    unchanged = {n for n, p in plurals.items() if n == p}
    assert unchanged == {"argali sheep", "sheep", "deer", "moose", "bison", "buffalo"}
