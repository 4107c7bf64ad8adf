"""The activity library: body proportions and poses whose 16 MPII keypoints are known exactly.

A pose is built by forward kinematics in a person-local frame (pelvis at the origin, y up, units of body
height) from a few angles per limb, then placed in the image by the scene composer (pipeline.synthetic.scene).
Angles are degrees measured from straight down: 0 = hanging down, 90 = horizontal, 180 = straight up.
Positive angles point "forward": towards the facing direction in a side view, and away from the body's
midline in a front view (where the person faces the camera, so their right side is on the image's left).

    rng = np.random.default_rng(0)
    body = sample_body(rng)
    pose = sample_pose("waving", body, rng)          # Pose: keypoints (16, 2) local, props, view
    pose.keypoints[HEAD]                             # head top, y up
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.geometry import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NECK,
    PELVIS,
    R_ANKLE,
    R_ELBOW,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    THORAX,
)


@dataclass(frozen=True, slots=True)
class Activity:
    """One class of the sample: the MPII-style labels and the body state the pose geometry should find."""

    name: str  # act_name, phrased to read after "a photo of a person ..."
    category: str  # cat_name
    act_id: int
    # The body state this activity stands for in the body-state eval set (None: not used there). It is
    # what pipeline.geometry reports as the body state for these poses, so the descriptions say the same word.
    state: str | None


# act_ids start at 1001 so they never collide with the official MPII ids (1..~1000 range is theirs).
ACTIVITIES: tuple[Activity, ...] = (
    Activity("standing", "inactivity quiet/light", 1001, "standing"),
    Activity("sitting", "inactivity quiet/light", 1002, "sitting"),
    Activity("squatting", "conditioning exercise", 1003, None),
    Activity("lying down", "inactivity quiet/light", 1004, "lying"),
    Activity("raising both arms", "conditioning exercise", 1005, "standing"),
    Activity("waving", "miscellaneous", 1006, "standing"),
    Activity("walking", "walking", 1007, "standing"),
    Activity("running", "running", 1008, None),
    Activity("kicking", "sports", 1009, None),
    Activity("bending over", "home activities", 1010, None),
)
ACTIVITY_BY_NAME = {a.name: a for a in ACTIVITIES}
BODY_STATES = ("standing", "sitting", "lying")


@dataclass(frozen=True, slots=True)
class Body:
    """Segment lengths as fractions of a standing body's height, and a thickness factor."""

    head: float  # upper neck -> head top
    neck: float  # thorax -> upper neck
    torso: float  # pelvis -> thorax
    shoulder_width: float
    hip_width: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    build: float  # limb thickness multiplier


def sample_body(rng: np.random.Generator) -> Body:
    """Varied but human proportions (about 1.0 tall when standing straight)."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    leg = u(0.92, 1.08)
    return Body(
        head=0.13 * u(0.85, 1.25),
        neck=0.05 * u(0.8, 1.2),
        torso=0.30 * u(0.9, 1.1),
        shoulder_width=0.23 * u(0.85, 1.2),
        hip_width=0.15 * u(0.85, 1.2),
        upper_arm=0.17 * u(0.92, 1.08),
        forearm=0.15 * u(0.92, 1.08),
        thigh=0.245 * leg,
        shin=0.25 * leg,
        build=u(0.8, 1.3),
    )


@dataclass(slots=True)
class Pose:
    """Keypoints (16, 2) in the local frame (y up), the view, and props (e.g. a seat) as local boxes."""

    keypoints: np.ndarray
    view: str  # "front" | "side"
    facing: int  # +1 faces image right, -1 image left (side view); +1 in a front view
    props: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (kind, (4,) x1, y1, x2, y2) local
    on_floor: bool = True  # the lowest point touches the floor (False: e.g. mid-stride of a run)


@dataclass(slots=True)
class _Angles:
    torso: float = 0.0  # lean from vertical, positive = forward (side view) / to the person's left (front)
    head: float = 0.0  # head tilt relative to the torso, same sign convention
    limbs: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (upper, lower) angles


def _unit(angle_deg: float, sign: float) -> np.ndarray:
    """Direction of a segment at `angle_deg` from straight down, mirrored by `sign` (y up)."""
    a = math.radians(angle_deg)
    return np.array([sign * math.sin(a), -math.cos(a)])


def _forward_kinematics(body: Body, ang: _Angles, view: str, facing: int) -> np.ndarray:
    kps = np.zeros((16, 2), dtype=np.float64)
    lean = math.radians(ang.torso)
    up = np.array([facing * math.sin(lean), math.cos(lean)])  # torso axis, pelvis -> thorax
    across = np.array([up[1], -up[0]])  # perpendicular, towards image right for an upright torso
    kps[PELVIS] = 0.0
    kps[THORAX] = up * body.torso
    kps[NECK] = kps[THORAX] + up * body.neck
    head_dir = math.radians(ang.torso + ang.head)
    kps[HEAD] = kps[NECK] + np.array([facing * math.sin(head_dir), math.cos(head_dir)]) * body.head
    if view == "front":
        # Facing the camera: the person's right side is on the image's left.
        half_s, half_h = body.shoulder_width / 2, body.hip_width / 2
        offsets = {"right": -1.0, "left": 1.0}
        signs = {"right": -1.0, "left": 1.0}  # "outward" = away from the midline
    else:
        # Side view: both sides overlap; a small offset keeps joints distinct. Facing image right, the
        # person's right side is nearer the camera (right = forward x up).
        half_s, half_h = 0.015, 0.01
        offsets = {"right": 1.0, "left": -1.0}
        signs = {"right": float(facing), "left": float(facing)}
    shoulder_level = kps[THORAX] - up * 0.02
    joints = {
        "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE),
        "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE),
    }
    for side, (sh, el, wr, hip, kn, an) in joints.items():
        kps[sh] = shoulder_level + across * offsets[side] * half_s
        kps[hip] = kps[PELVIS] + across * offsets[side] * half_h
        a_up, a_lo = ang.limbs[f"{side} arm"]
        kps[el] = kps[sh] + _unit(a_up, signs[side]) * body.upper_arm
        kps[wr] = kps[el] + _unit(a_lo, signs[side]) * body.forearm
        l_up, l_lo = ang.limbs[f"{side} leg"]
        kps[kn] = kps[hip] + _unit(l_up, signs[side]) * body.thigh
        kps[an] = kps[kn] + _unit(l_lo, signs[side]) * body.shin
    return kps


def _rotate(points: np.ndarray, degrees: float, origin: np.ndarray) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (points - origin) @ rot.T + origin


# ---- the activities: each draws angles for one person ------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _standing(rng, body, view):
    return _Angles(
        torso=_u(rng, -4, 4),
        head=_u(rng, -8, 8),
        limbs={
            "left arm": (a := _u(rng, 4, 18), a + _u(rng, 0, 15)),
            "right arm": (a := _u(rng, 4, 18), a + _u(rng, 0, 15)),
            "left leg": (a := _u(rng, 0, 6), a - _u(rng, 0, 4)),
            "right leg": (a := _u(rng, 0, 6), a - _u(rng, 0, 4)),
        },
    )


def _raising_both_arms(rng, body, view):
    ang = _standing(rng, body, view)
    ang.limbs["left arm"] = (a := _u(rng, 150, 172), a + _u(rng, -8, 8))
    ang.limbs["right arm"] = (a := _u(rng, 150, 172), a + _u(rng, -8, 8))
    ang.head = _u(rng, -5, 5)
    return ang


def _waving(rng, body, view):
    ang = _standing(rng, body, view)
    side = "left" if rng.random() < 0.5 else "right"
    ang.limbs[f"{side} arm"] = (_u(rng, 75, 110), _u(rng, 150, 185))  # upper arm out, forearm up
    return ang


def _walking(rng, body, view):
    front, back = ("left", "right") if rng.random() < 0.5 else ("right", "left")
    return _Angles(
        torso=_u(rng, 2, 8),
        head=_u(rng, -5, 5),
        limbs={
            f"{front} leg": (a := _u(rng, 20, 32), a - _u(rng, 3, 12)),
            f"{back} leg": (a := -_u(rng, 15, 25), a - _u(rng, 15, 35)),
            f"{back} arm": (a := _u(rng, 15, 30), a + _u(rng, 15, 35)),  # arms swing against the legs
            f"{front} arm": (a := -_u(rng, 15, 28), a + _u(rng, 0, 15)),
        },
    )


def _running(rng, body, view):
    front, back = ("left", "right") if rng.random() < 0.5 else ("right", "left")
    return _Angles(
        torso=_u(rng, 12, 24),
        head=_u(rng, -10, 0),
        limbs={
            f"{front} leg": (a := _u(rng, 55, 80), _u(rng, -15, 10)),
            f"{back} leg": (a := -_u(rng, 25, 40), a - _u(rng, 60, 95)),
            f"{back} arm": (a := _u(rng, 30, 60), a + _u(rng, 70, 100)),
            f"{front} arm": (a := -_u(rng, 30, 55), a + _u(rng, 70, 100)),
        },
    )


def _kicking(rng, body, view):
    kick, stand = ("left", "right") if rng.random() < 0.5 else ("right", "left")
    return _Angles(
        torso=-_u(rng, 5, 15),  # leaning back to balance
        head=_u(rng, -5, 5),
        limbs={
            f"{kick} leg": (a := _u(rng, 65, 95), a + _u(rng, -12, 8)),
            f"{stand} leg": (a := -_u(rng, 0, 6), a - _u(rng, 0, 4)),
            f"{kick} arm": (a := -_u(rng, 35, 70), a + _u(rng, 0, 25)),
            f"{stand} arm": (a := _u(rng, 40, 80), a + _u(rng, 0, 25)),
        },
    )


def _bending_over(rng, body, view):
    # Torso 40-52 degrees forward: clearly bent, but within the geometry module's "leaning" range so the
    # pose still reads as standing (beyond 55 degrees pipeline.geometry calls a torso horizontal).
    return _Angles(
        torso=_u(rng, 40, 52),
        head=_u(rng, 0, 15),
        limbs={
            "left arm": (a := _u(rng, 0, 25), a + _u(rng, 0, 20)),
            "right arm": (a := _u(rng, 0, 25), a + _u(rng, 0, 20)),
            "left leg": (a := -_u(rng, 6, 14), a - _u(rng, 0, 5)),
            "right leg": (a := -_u(rng, 6, 14), a - _u(rng, 0, 5)),
        },
    )


def _sitting(rng, body, view):
    return _Angles(
        torso=_u(rng, -8, 6),
        head=_u(rng, -8, 10),
        limbs={
            "left leg": (_u(rng, 82, 96), _u(rng, -6, 12)),
            "right leg": (_u(rng, 82, 96), _u(rng, -6, 12)),
            "left arm": (a := _u(rng, 10, 35), a + _u(rng, 45, 75)),  # forearms resting on the lap
            "right arm": (a := _u(rng, 10, 35), a + _u(rng, 45, 75)),
        },
    )


def _squatting(rng, body, view):
    return _Angles(
        torso=_u(rng, 20, 38),
        head=_u(rng, -15, -5),
        limbs={
            "left leg": (_u(rng, 80, 100), -_u(rng, 20, 40)),
            "right leg": (_u(rng, 80, 100), -_u(rng, 20, 40)),
            "left arm": (a := _u(rng, 60, 90), a + _u(rng, -10, 15)),  # arms forward for balance
            "right arm": (a := _u(rng, 60, 90), a + _u(rng, -10, 15)),
        },
    )


def _lying_down(rng, body, view):
    ang = _standing(rng, body, view)
    if rng.random() < 0.4:  # one hand behind the head
        side = "left" if rng.random() < 0.5 else "right"
        ang.limbs[f"{side} arm"] = (_u(rng, 150, 170), _u(rng, 40, 70))
    return ang


_ANGLES: dict[str, Callable] = {
    "standing": _standing,
    "sitting": _sitting,
    "squatting": _squatting,
    "lying down": _lying_down,
    "raising both arms": _raising_both_arms,
    "waving": _waving,
    "walking": _walking,
    "running": _running,
    "kicking": _kicking,
    "bending over": _bending_over,
}
# Which views suit an activity: the motion of walking or kicking is only visible from the side.
_VIEWS = {
    "standing": ("front", "side"),
    "sitting": ("side",),
    "squatting": ("side",),
    "lying down": ("side",),
    "raising both arms": ("front",),
    "waving": ("front",),
    "walking": ("side",),
    "running": ("side",),
    "kicking": ("side",),
    "bending over": ("side",),
}
assert set(_ANGLES) == set(ACTIVITY_BY_NAME) == set(_VIEWS)


def sample_pose(activity: str, body: Body, rng: np.random.Generator) -> Pose:
    """Keypoints of one person doing `activity`, in the local frame (pelvis at 0, y up)."""
    if activity not in _ANGLES:
        raise ValueError(f"unknown activity {activity!r} (one of {', '.join(ACTIVITY_BY_NAME)})")
    views = _VIEWS[activity]
    view = views[int(rng.integers(len(views)))]
    facing = 1 if view == "front" else (1 if rng.random() < 0.5 else -1)
    kps = _forward_kinematics(body, _ANGLES[activity](rng, body, view), view, facing)
    pose = Pose(keypoints=kps, view=view, facing=facing)
    if activity == "lying down":
        # Lie the body down: rotate about the pelvis so the torso is (nearly) horizontal.
        turn = (1 if rng.random() < 0.5 else -1) * _u(rng, 82, 98)
        pose.keypoints = _rotate(kps, turn, kps[PELVIS])
    elif activity == "sitting":
        # A seat under the pelvis reaching to the knees, its top at pelvis height, standing on the floor.
        floor = min(kps[L_ANKLE, 1], kps[R_ANKLE, 1])
        x_back = -facing * 0.08
        x_front = facing * 0.55 * body.thigh
        x1, x2 = sorted((x_back, x_front))
        pose.props.append(("seat", np.array([x1, floor, x2, -0.03])))
    elif activity == "running":
        pose.on_floor = bool(rng.random() < 0.5)
    return pose
