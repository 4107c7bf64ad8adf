"""Pose geometry: pure functions over one person's (16, 3) keypoint array (see pipeline.records).

Everything here is image geometry: y grows downward, "left"/"right" of a limb is the person's own
(anatomical) side as MPII labels it, and positions among people are image positions. A fact that needs
a joint whose position is unknown (v = 0) is None: an invisible joint never produces a claim.

    facts = person_facts(person.keypoints)          # PersonFacts
    facts.state, facts.limbs["left arm"].bend       # ("standing", 0.9), "straight"
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.records import known

# Joint indices (MPII order).
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, PELVIS, THORAX, NECK, HEAD = range(10)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST = range(10, 16)

# limb -> (root, middle, end) joints
LIMBS: dict[str, tuple[int, int, int]] = {
    "left arm": (L_SHOULDER, L_ELBOW, L_WRIST),
    "right arm": (R_SHOULDER, R_ELBOW, R_WRIST),
    "left leg": (L_HIP, L_KNEE, L_ANKLE),
    "right leg": (R_HIP, R_KNEE, R_ANKLE),
}
# The joints a limb's description may talk about (analyze checks mentions of invisible ones).
LIMB_JOINTS = {name: joints for name, joints in LIMBS.items()} | {
    "torso": (THORAX, PELVIS),
    "head": (NECK, HEAD),
}

# Thresholds in degrees. A joint angle of 180 is a straight limb.
STRAIGHT_MIN = 155.0
SLIGHTLY_BENT_MIN = 125.0
BENT_MIN = 70.0  # below this the limb is "sharply bent"
LYING_TORSO_MIN = 55.0  # torso this far from vertical = lying
UPRIGHT_TORSO_MAX = 20.0
FOOT_LIFT_MIN = 0.5  # torso lengths one ankle must be above the other for a lifted leg
UPRIGHT_HEAD_MAX = 20.0  # head this far from the torso's direction = tilted
BOWED_HEAD_MIN = 100.0  # ... and this far = bowed (pointing down along the body)


def _pt(kps: np.ndarray, j: int) -> np.ndarray | None:
    """Joint j's (x, y), or None when it is unknown (records.known, for one joint: called for every fact)."""
    x, y, v = kps[j].tolist()
    if not (v > 0 and math.isfinite(x) and math.isfinite(y)):
        return None
    return np.array((x, y), dtype=np.float64)


def joint_angle(kps: np.ndarray, a: int, b: int, c: int) -> float | None:
    """Angle ABC at joint b in degrees (180 = straight), or None if any joint is unknown or coincident."""
    pa, pb, pc = _pt(kps, a), _pt(kps, b), _pt(kps, c)
    if pa is None or pb is None or pc is None:
        return None
    u, v = pa - pb, pc - pb
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-6 or nv < 1e-6:
        return None
    cos = float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))
    return math.degrees(math.acos(cos))


def angle_from_vertical(vec: np.ndarray, up: bool = True) -> float:
    """Angle in degrees between vec and straight up (or straight down) in image coordinates."""
    ref = np.array([0.0, -1.0 if up else 1.0])
    n = np.linalg.norm(vec)
    if n < 1e-6:
        return float("nan")
    return math.degrees(math.acos(float(np.clip(np.dot(vec, ref) / n, -1.0, 1.0))))


_DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def direction(vec: np.ndarray) -> str:
    """One of 8 image directions for a vector in image coordinates (y down)."""
    ang = math.degrees(math.atan2(vec[1], vec[0])) % 360.0  # 0 = right, 90 = down
    return _DIRECTIONS[int(((ang + 22.5) % 360.0) // 45.0)]


def limb_direction(kps: np.ndarray, a: int, b: int) -> str | None:
    pa, pb = _pt(kps, a), _pt(kps, b)
    if pa is None or pb is None or np.linalg.norm(pb - pa) < 1e-6:
        return None
    return direction(pb - pa)


def _mid(kps: np.ndarray, center: int, left: int, right: int) -> np.ndarray | None:
    """A central joint, or the midpoint of its left/right pair when the central one is unknown."""
    p = _pt(kps, center)
    if p is not None:
        return p
    pl, pr = _pt(kps, left), _pt(kps, right)
    if pl is None or pr is None:
        return None
    return (pl + pr) / 2.0


def torso_vector(kps: np.ndarray) -> np.ndarray | None:
    """Pelvis -> thorax (falling back to hip and shoulder midpoints)."""
    top = _mid(kps, THORAX, L_SHOULDER, R_SHOULDER)
    bottom = _mid(kps, PELVIS, L_HIP, R_HIP)
    if top is None or bottom is None or np.linalg.norm(top - bottom) < 1e-6:
        return None
    return top - bottom


def joint_angles(kps: np.ndarray) -> dict[str, float | None]:
    """Elbow and knee flexion (180 = straight), shoulder elevation (0 = arm along the torso, 180 = straight
    up beside the head) and hip angle (180 = body and thigh in line, about 90 when seated)."""
    return {
        "left elbow": joint_angle(kps, L_SHOULDER, L_ELBOW, L_WRIST),
        "right elbow": joint_angle(kps, R_SHOULDER, R_ELBOW, R_WRIST),
        "left knee": joint_angle(kps, L_HIP, L_KNEE, L_ANKLE),
        "right knee": joint_angle(kps, R_HIP, R_KNEE, R_ANKLE),
        "left shoulder": joint_angle(kps, L_HIP, L_SHOULDER, L_ELBOW),
        "right shoulder": joint_angle(kps, R_HIP, R_SHOULDER, R_ELBOW),
        "left hip": joint_angle(kps, L_SHOULDER, L_HIP, L_KNEE),
        "right hip": joint_angle(kps, R_SHOULDER, R_HIP, R_KNEE),
    }


def bend_word(angle: float | None) -> str | None:
    if angle is None:
        return None
    if angle >= STRAIGHT_MIN:
        return "straight"
    if angle >= SLIGHTLY_BENT_MIN:
        return "slightly bent"
    if angle >= BENT_MIN:
        return "bent"
    return "sharply bent"


def wrist_above_head(kps: np.ndarray, side: str) -> bool | None:
    wrist = _pt(kps, L_WRIST if side == "left" else R_WRIST)
    head = _pt(kps, HEAD)
    if wrist is None or head is None:
        return None
    return bool(wrist[1] < head[1])


def arm_raised(kps: np.ndarray, side: str) -> bool | None:
    """Hand (or elbow when the hand is unknown) higher than the shoulder."""
    shoulder = _pt(kps, L_SHOULDER if side == "left" else R_SHOULDER)
    tip = _pt(kps, L_WRIST if side == "left" else R_WRIST)
    if tip is None:
        tip = _pt(kps, L_ELBOW if side == "left" else R_ELBOW)
    if shoulder is None or tip is None:
        return None
    return bool(tip[1] < shoulder[1])


def _torso_length(kps: np.ndarray) -> float | None:
    vec = torso_vector(kps)
    return None if vec is None else float(np.linalg.norm(vec))


def hand_height(kps: np.ndarray, side: str, torso: float | None) -> float | None:
    """How far the wrist is above the shoulder, in torso lengths (negative: below it; about -1 for a hanging
    arm, -0.5 for a forearm held level at the waist, 0 at shoulder height). torso: _torso_length(kps)."""
    shoulder = _pt(kps, L_SHOULDER if side == "left" else R_SHOULDER)
    wrist = _pt(kps, L_WRIST if side == "left" else R_WRIST)
    if shoulder is None or wrist is None or not torso:
        return None
    return float(shoulder[1] - wrist[1]) / torso


def foot_lift(kps: np.ndarray, side: str, torso: float | None) -> float | None:
    """How far the ankle is above the other ankle, in torso lengths (leg_raised's foot test)."""
    ankle = _pt(kps, L_ANKLE if side == "left" else R_ANKLE)
    other = _pt(kps, R_ANKLE if side == "left" else L_ANKLE)
    if ankle is None or other is None or not torso:
        return None
    return float(other[1] - ankle[1]) / torso


def leg_raised(kps: np.ndarray, side: str) -> bool | None:
    """Knee lifted to hip height or above, or the foot clearly higher than the other foot."""
    hip, knee, ankle = (_pt(kps, j) for j in (LIMBS[f"{side} leg"]))
    other_ankle = _pt(kps, R_ANKLE if side == "left" else L_ANKLE)
    torso = _torso_length(kps)
    if hip is None or knee is None:
        return None
    if knee[1] <= hip[1]:
        return True
    if ankle is not None and other_ankle is not None and torso is not None:
        return bool(other_ankle[1] - ankle[1] > FOOT_LIFT_MIN * torso)
    return False


def arms_crossed(kps: np.ndarray) -> bool | None:
    """Wrists swapped sides relative to the shoulders, in front of the torso (below shoulder level)."""
    ls, rs, lw, rw = (_pt(kps, j) for j in (L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST))
    if ls is None or rs is None or lw is None or rw is None:
        return None
    shoulder_side = np.sign(ls[0] - rs[0])
    if shoulder_side == 0:
        return None  # seen exactly side-on: crossing cannot be told apart
    below = lw[1] > min(ls[1], rs[1]) and rw[1] > min(ls[1], rs[1])
    return bool(np.sign(lw[0] - rw[0]) == -shoulder_side and below)


def feet_apart(kps: np.ndarray) -> bool | None:
    """Ankles further apart than 1.5x the hip width (and than a third of the torso length)."""
    la, ra, lh, rh = (_pt(kps, j) for j in (L_ANKLE, R_ANKLE, L_HIP, R_HIP))
    torso = _torso_length(kps)
    if la is None or ra is None or lh is None or rh is None or torso is None:
        return None
    return bool(np.linalg.norm(la - ra) > max(1.5 * np.linalg.norm(lh - rh), torso / 3.0))


def torso_posture(kps: np.ndarray) -> tuple[str, float] | None:
    """('upright' | 'leaning' | 'horizontal', degrees from vertical)."""
    vec = torso_vector(kps)
    if vec is None:
        return None
    tilt = angle_from_vertical(vec, up=True)
    if tilt < UPRIGHT_TORSO_MAX:
        return "upright", tilt
    if tilt < LYING_TORSO_MIN:
        return "leaning", tilt
    return "horizontal", tilt


def head_angles(kps: np.ndarray) -> tuple[float | None, float | None]:
    """The head's direction (neck -> head top) in degrees: from the torso's direction (0 = in line with the
    body; None when the torso is unknown) and from the image vertical (0 = straight up). A reader may mean
    either by "upright" or "tilted" (a head in line with a leaning body is tilted in the picture)."""
    neck, head = _pt(kps, NECK), _pt(kps, HEAD)
    if neck is None or head is None or np.linalg.norm(head - neck) < 1e-6:
        return None, None
    h = (head - neck) / np.linalg.norm(head - neck)
    vertical = angle_from_vertical(h, up=True)
    torso = torso_vector(kps)
    if torso is None:
        return None, vertical
    t = torso / np.linalg.norm(torso)
    return math.degrees(math.acos(float(np.clip(np.dot(h, t), -1.0, 1.0)))), vertical


def head_word(tilt: float | None) -> str | None:
    """'upright', 'tilted' or 'bowed' for the head's angle from the torso's direction (head_angles)."""
    if tilt is None:
        return None
    if tilt < UPRIGHT_HEAD_MAX:
        return "upright"
    if tilt > BOWED_HEAD_MIN:
        return "bowed"
    return "tilted"


def head_posture(kps: np.ndarray) -> str | None:
    """Head direction relative to the torso: 'upright', 'tilted' or 'bowed'."""
    return head_word(head_angles(kps)[0])


def body_state(kps: np.ndarray) -> tuple[str, float]:
    """Coarse state ('standing' | 'sitting' | 'lying' | 'unknown') and a confidence in [0, 1].

    Torso more than 55 degrees from vertical -> lying. Otherwise the thighs decide: their vertical drop
    relative to the torso length is about 0.8 when standing and near 0 when seated (the thigh runs
    towards or away from the camera, or sideways); straight knees support standing.
    """
    posture = torso_posture(kps)
    torso = _torso_length(kps)
    if posture is None or torso is None:
        return "unknown", 0.0
    kind, tilt = posture
    if kind == "horizontal":
        return "lying", float(min(1.0, 0.5 + (tilt - LYING_TORSO_MIN) / 70.0))
    drops, knees = [], []
    axis = -torso_vector(kps) / torso  # project the thighs on the torso axis: robust to a leaning torso
    for side in ("left", "right"):
        hip, knee, _ = (_pt(kps, j) for j in LIMBS[f"{side} leg"])
        if hip is not None and knee is not None:
            drops.append(float(np.dot(knee - hip, axis)) / torso)
        angle = joint_angle(kps, *LIMBS[f"{side} leg"])
        if angle is not None:
            knees.append(angle)
    if not drops:
        return "unknown", 0.0
    drop = float(np.mean(drops))
    coverage = len(drops) / 2.0
    if drop >= 0.55:
        straight = bool(knees) and min(knees) >= SLIGHTLY_BENT_MIN
        conf = min(1.0, 0.55 + (drop - 0.55)) * (1.0 if straight or not knees else 0.8)
        return "standing", round(conf * (0.75 + 0.25 * coverage), 3)
    if drop <= 0.35:
        conf = min(1.0, 0.55 + (0.35 - drop))
        return "sitting", round(conf * (0.75 + 0.25 * coverage), 3)
    return "unknown", 0.0


def positions(centers_x: list[float | None]) -> list[str | None]:
    """'left' / 'center' / 'right' of each person by horizontal rank among the others; None when alone or
    when a person's position is unknown."""
    ranked = [(x, i) for i, x in enumerate(centers_x) if x is not None]
    out: list[str | None] = [None] * len(centers_x)
    if len(ranked) < 2:
        return out
    ranked.sort()
    for r, (_, i) in enumerate(ranked):
        frac = r / (len(ranked) - 1)
        out[i] = "left" if frac < 1 / 3 else "right" if frac > 2 / 3 else "center"
    return out


def person_center_x(kps: np.ndarray, center: tuple[float, float] | None = None) -> float | None:
    mask = known(kps)
    if mask.any():
        return float(np.mean(kps[mask, 0]))
    return None if center is None else float(center[0])


@dataclass(slots=True)
class LimbFacts:
    name: str  # "left arm", ...
    angle: float | None = None  # elbow / knee angle, 180 = straight
    bend: str | None = None  # straight / slightly bent / bent / sharply bent
    raised: bool | None = None
    above_head: bool | None = None  # arms only
    hand_height: float | None = None  # arms: wrist above the shoulder, torso lengths (hand_height)
    foot_lift: float | None = None  # legs: ankle above the other ankle, torso lengths (foot_lift)
    upper_direction: str | None = None  # shoulder->elbow or hip->knee, image direction
    lower_direction: str | None = None  # elbow->wrist or knee->ankle
    known_joints: int = 0


@dataclass(slots=True)
class PersonFacts:
    state: str = "unknown"
    state_confidence: float = 0.0
    position: str | None = None  # left / center / right among the people of the image
    torso: str | None = None  # upright / leaning / horizontal
    torso_tilt: float | None = None
    head: str | None = None  # upright / tilted / bowed
    head_tilt: float | None = None  # degrees from the torso's direction (head_angles)
    head_vertical: float | None = None  # degrees from the image vertical (head_angles)
    arms_crossed: bool | None = None
    feet_apart: bool | None = None
    angles: dict[str, float | None] = field(default_factory=dict)
    limbs: dict[str, LimbFacts] = field(default_factory=dict)
    known_joints: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def limb_facts(kps: np.ndarray, name: str, torso: float | None = None) -> LimbFacts:
    """torso: _torso_length(kps) when the caller has it (person_facts), else computed here."""
    root, mid, end = LIMBS[name]
    side = name.split()[0]
    angle = joint_angle(kps, root, mid, end)
    is_arm = name.endswith("arm")
    torso = _torso_length(kps) if torso is None else torso
    return LimbFacts(
        name=name,
        angle=None if angle is None else round(angle, 1),
        bend=bend_word(angle),
        raised=arm_raised(kps, side) if is_arm else leg_raised(kps, side),
        above_head=wrist_above_head(kps, side) if is_arm else None,
        hand_height=_round(hand_height(kps, side, torso)) if is_arm else None,
        foot_lift=None if is_arm else _round(foot_lift(kps, side, torso)),
        upper_direction=limb_direction(kps, root, mid),
        lower_direction=limb_direction(kps, mid, end),
        known_joints=int(known(kps[[root, mid, end]]).sum()),
    )


def person_facts(kps: np.ndarray, position: str | None = None) -> PersonFacts:
    state, conf = body_state(kps)
    posture = torso_posture(kps)
    head_tilt, head_vertical = head_angles(kps)
    torso = _torso_length(kps)
    return PersonFacts(
        state=state,
        state_confidence=conf,
        position=position,
        torso=None if posture is None else posture[0],
        torso_tilt=None if posture is None else round(posture[1], 1),
        head=head_word(head_tilt),
        head_tilt=_round(head_tilt, 1),
        head_vertical=_round(head_vertical, 1),
        arms_crossed=arms_crossed(kps),
        feet_apart=feet_apart(kps),
        angles={k: (None if v is None else round(v, 1)) for k, v in joint_angles(kps).items()},
        limbs={name: limb_facts(kps, name, torso) for name in LIMBS},
        known_joints=int(known(kps).sum()),
    )


def image_facts(
    people_kps: list[np.ndarray], centers: list[tuple[float, float] | None] | None = None
) -> list[PersonFacts]:
    """Facts for every person of an image, with their left/center/right position among the others."""
    centers = centers or [None] * len(people_kps)
    pos = positions([person_center_x(k, c) for k, c in zip(people_kps, centers, strict=True)])
    return [person_facts(k, p) for k, p in zip(people_kps, pos, strict=True)]
