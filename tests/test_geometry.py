"""Pose geometry on hand-made poses whose angles and states are known by construction, and the array
functions vectorised over people giving each person what it gives them one at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline import geometry as g
from pipeline.facts import pose_facts
from pipeline.records import MISSING, OCCLUDED, VISIBLE, ImageAnnotation, Person, empty_keypoints


def pose(points: dict[int, tuple[float, float]], v: int = VISIBLE) -> np.ndarray:
    kps = empty_keypoints()
    for j, (x, y) in points.items():
        kps[j] = (x, y, v)
    return kps


def angle(kps: np.ndarray, name: str) -> float:
    """One joint angle of one person through the vectorised g.joint_angles (NaN when unknown)."""
    return float(g.joint_angles(g.points(kps[None]))[0, list(g.ANGLES).index(name)])


def _deg(u: tuple[float, float], v: tuple[float, float]) -> float:
    return float(np.degrees(np.arccos(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))))


# Facing the camera: the person's right side is on the image's left. y grows downward.
STANDING = {
    g.HEAD: (100, 0), g.NECK: (100, 20), g.THORAX: (100, 30), g.PELVIS: (100, 100),
    g.R_SHOULDER: (85, 30), g.L_SHOULDER: (115, 30), g.R_ELBOW: (83, 65), g.L_ELBOW: (117, 65),
    g.R_WRIST: (81, 100), g.L_WRIST: (119, 100), g.R_HIP: (90, 100), g.L_HIP: (110, 100),
    g.R_KNEE: (90, 150), g.L_KNEE: (110, 150), g.R_ANKLE: (90, 200), g.L_ANKLE: (110, 200),
}  # fmt: skip


def test_standing_with_straight_limbs():
    kps = pose(STANDING)
    facts = g.person_facts(kps)
    assert facts.state == "standing" and facts.state_confidence > 0.5
    assert facts.torso == "upright" and facts.torso_tilt == pytest.approx(0.0)
    assert facts.angles["left knee"] == pytest.approx(180.0) and facts.angles["right knee"] == pytest.approx(
        180.0
    )
    assert facts.limbs["left leg"].bend == "straight" and facts.limbs["left leg"].lower_direction == "down"
    assert facts.limbs["right arm"].raised is False and facts.limbs["right arm"].above_head is False
    assert facts.arms_crossed is False and facts.feet_apart is False and facts.head == "upright"
    assert facts.known_joints == 16


def test_known_elbow_and_shoulder_angles():
    # Left upper arm straight down from the shoulder, forearm pointing right: a right angle at the elbow.
    kps = pose(STANDING | {g.L_ELBOW: (115, 65), g.L_WRIST: (150, 65)})
    assert angle(kps, "left elbow") == pytest.approx(90.0)
    assert g.bend_word(90.0) == "bent" and g.bend_word(60.0) == "sharply bent"
    assert g.bend_word(140.0) == "slightly bent" and g.bend_word(170.0) == "straight"
    limb = g.person_facts(kps).limbs["left arm"]
    assert (
        limb.angle == pytest.approx(90.0)
        and limb.upper_direction == "down"
        and limb.lower_direction == "right"
    )
    # Arm held horizontally sideways: 90 degrees between torso side (shoulder->hip) and upper arm.
    side = pose(STANDING | {g.L_ELBOW: (150, 30), g.L_WRIST: (185, 30)})
    shoulder = angle(side, "left shoulder")
    assert shoulder == pytest.approx(_deg((-5, 70), (35, 0)), abs=1e-4)


def test_knee_angle_of_a_known_bend():
    # Thigh straight down, shin at 45 degrees: knee angle 135.
    kps = pose(STANDING | {g.R_ANKLE: (90 + 50 / np.sqrt(2), 150 + 50 / np.sqrt(2))})
    assert angle(kps, "right knee") == pytest.approx(135.0, abs=1e-4)
    assert g.person_facts(kps).limbs["right leg"].bend == "slightly bent"


def test_sitting_and_lying():
    sitting = pose(
        STANDING | {g.R_KNEE: (60, 102), g.L_KNEE: (80, 102), g.R_ANKLE: (60, 150), g.L_ANKLE: (80, 150)}
    )
    f = g.person_facts(sitting)
    assert f.state == "sitting" and f.state_confidence > 0.5
    # Hip angle between hip->shoulder (-5, -70) and hip->knee (-30, 2): close to a right angle.
    assert angle(sitting, "right hip") == pytest.approx(_deg((-5, -70), (-30, 2)), abs=1e-4)
    lying = pose(
        {
            g.HEAD: (0, 100),
            g.NECK: (20, 100),
            g.THORAX: (30, 100),
            g.PELVIS: (100, 100),
            g.R_HIP: (100, 90),
            g.L_HIP: (100, 110),
            g.R_KNEE: (150, 90),
            g.L_KNEE: (150, 110),
        }
    )
    f = g.person_facts(lying)
    assert f.state == "lying" and f.state_confidence >= 0.5
    assert f.torso == "horizontal"


def test_relations_raised_crossed_feet_apart():
    raised = pose(STANDING | {g.L_ELBOW: (120, 0), g.L_WRIST: (122, -30)})
    f = g.person_facts(raised)
    assert f.limbs["left arm"].raised is True and f.limbs["left arm"].above_head is True
    assert f.limbs["right arm"].raised is False
    crossed = pose(STANDING | {g.L_WRIST: (90, 60), g.R_WRIST: (110, 60)})
    assert g.person_facts(crossed).arms_crossed is True
    wide = pose(
        STANDING | {g.R_ANKLE: (40, 200), g.L_ANKLE: (160, 200), g.R_KNEE: (65, 150), g.L_KNEE: (135, 150)}
    )
    assert g.person_facts(wide).feet_apart is True
    knee_up = pose(STANDING | {g.L_KNEE: (130, 95), g.L_ANKLE: (130, 140)})
    legs = g.person_facts(knee_up).limbs
    assert legs["left leg"].raised is True and legs["right leg"].raised is False


def test_occluded_joints_still_count():
    kps = pose(STANDING, v=OCCLUDED)  # annotated but occluded: position known
    assert g.person_facts(kps).state == "standing"


# Which joints each joint angle needs (written out here, not read from g.ANGLES).
ANGLE_JOINTS = {
    "left elbow": (g.L_SHOULDER, g.L_ELBOW, g.L_WRIST), "right elbow": (g.R_SHOULDER, g.R_ELBOW, g.R_WRIST),
    "left knee": (g.L_HIP, g.L_KNEE, g.L_ANKLE), "right knee": (g.R_HIP, g.R_KNEE, g.R_ANKLE),
    "left shoulder": (g.L_HIP, g.L_SHOULDER, g.L_ELBOW), "right shoulder": (g.R_HIP, g.R_SHOULDER, g.R_ELBOW),
    "left hip": (g.L_SHOULDER, g.L_HIP, g.L_KNEE), "right hip": (g.R_SHOULDER, g.R_HIP, g.R_KNEE),
}  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_invisible_joints_never_produce_claims(seed):
    rng = np.random.default_rng(seed)
    kps = pose(STANDING)
    hidden = rng.choice(16, size=int(rng.integers(1, 8)), replace=False)
    # A missing joint keeps plausible-looking coordinates: only v may decide.
    kps[hidden, 2] = MISSING
    f = g.person_facts(kps)
    for name, joints in ANGLE_JOINTS.items():
        if set(joints) & set(hidden.tolist()):
            assert f.angles[name] is None, (name, hidden)
    for name, limb in f.limbs.items():
        root, mid, end = g.LIMBS[name]
        if {root, mid, end} & set(hidden.tolist()):
            assert limb.angle is None and limb.bend is None
        if {root, mid} & set(hidden.tolist()):
            assert limb.upper_direction is None
        if name.endswith("arm") and {g.HEAD, end} & set(hidden.tolist()):
            assert limb.above_head is None
    if {g.L_SHOULDER, g.R_SHOULDER, g.L_WRIST, g.R_WRIST} & set(hidden.tolist()):
        assert f.arms_crossed is None
    if {g.L_ANKLE, g.R_ANKLE, g.L_HIP, g.R_HIP} & set(hidden.tolist()):
        assert f.feet_apart is None
    if {g.NECK, g.HEAD} & set(hidden.tolist()):
        assert f.head is None
    assert f.known_joints == 16 - len(hidden)


def test_nobody_visible_claims_nothing():
    f = g.person_facts(empty_keypoints())
    assert (f.state, f.state_confidence) == ("unknown", 0.0)
    assert f.torso is None and f.head is None and f.arms_crossed is None and f.feet_apart is None
    assert all(v is None for v in f.angles.values())
    for limb in f.limbs.values():
        assert limb.angle is None and limb.raised is None and limb.upper_direction is None


def test_directions_cover_the_compass():
    for (dx, dy), word in zip(
        itertools.product((1, 0, -1), repeat=2),
        ["down-right", "right", "up-right", "down", None, "up", "down-left", "left", "up-left"],
        strict=True,
    ):
        if word:
            assert g.direction(np.array([dx, dy], dtype=float)) == word


def test_positions_among_people():
    assert g.positions([300.0, 10.0, 150.0]) == ["right", "left", "center"]
    assert g.positions([5.0]) == [None]  # alone: no position claim
    assert g.positions([5.0, None, 9.0]) == ["left", None, "right"]
    a = pose({j: (x + 400, y) for j, (x, y) in STANDING.items()})
    b = pose(STANDING)
    people = [Person(keypoints=a), Person(keypoints=b), Person(center=(250.0, 80.0))]
    facts = pose_facts(ImageAnnotation(image="x.jpg", people=people))
    assert facts.positions == ("right", "left", "center")  # the third by its objpos
    assert [f.position for f in facts.people] == ["right", "left", "center"]
    assert facts.position_ranks == (1, 1, 1)
    assert pose_facts(ImageAnnotation(image="y.jpg", people=[Person()])).positions == (None,)


def test_people_at_once_get_what_each_gets_alone():
    """The geometry runs over all people of many images as one array: each person's facts are the same as
    when computed alone, whatever the others are (unknown joints, other poses)."""
    rng = np.random.default_rng(0)
    people = []
    for _ in range(40):
        kps = pose({j: (x + rng.normal(0, 25), y + rng.normal(0, 25)) for j, (x, y) in STANDING.items()})
        kps[rng.choice(16, size=int(rng.integers(0, 10)), replace=False), 2] = MISSING
        people.append(kps)
    together = g.people_facts(np.stack(people))
    assert [f.to_dict() for f in together] == [g.person_facts(k).to_dict() for k in people]
