"""Pose geometry: pure array functions over the people of one image, (P, 16, 3) keypoints in MPII order (see
pipeline.records), vectorised over people and joints.

Everything here is image geometry: y grows downward, "left"/"right" of a limb is the person's own
(anatomical) side as MPII labels it, and positions among people are image positions. A fact that needs
a joint whose position is unknown (v = 0) is None: an invisible joint never produces a claim.

    facts = people_facts(body)                       # [PersonFacts] per person of a (P, 16, 3) array
    facts[0].state, facts[0].limbs["left arm"].bend  # ("standing", 0.9), "straight"
    person_facts(kps)                                # one person's (16, 3) keypoints

The arrays carry NaN where a joint is unknown, so a fact built from one is NaN (or False) and becomes None
when the records are filled. Angles go through math.acos / math.atan2 value by value: numpy's vectorised
arccos and arctan2 may differ in the last bit, and angles are rounded and compared with thresholds.
pipeline.facts computes these once per image for the prompt, the gate and analyze.
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
# Joint angles (a, b, c): the angle at b. Elbow and knee flexion (180 = straight), shoulder elevation (0 = arm
# along the torso, 180 = straight up beside the head) and hip angle (180 = body and thigh in line, about 90
# when seated). The first four are the limbs' own angles, in LIMBS order.
ANGLES: dict[str, tuple[int, int, int]] = {
    "left elbow": LIMBS["left arm"],
    "right elbow": LIMBS["right arm"],
    "left knee": LIMBS["left leg"],
    "right knee": LIMBS["right leg"],
    "left shoulder": (L_HIP, L_SHOULDER, L_ELBOW),
    "right shoulder": (R_HIP, R_SHOULDER, R_ELBOW),
    "left hip": (L_SHOULDER, L_HIP, L_KNEE),
    "right hip": (R_SHOULDER, R_HIP, R_KNEE),
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
_EPS = 1e-6  # shorter vectors (coincident joints) have no direction

_LIMB_INDEX = np.array(list(LIMBS.values()))  # (4, 3)
_ARMS = slice(0, 2)  # rows of _LIMB_INDEX
_LEGS = slice(2, 4)
_OTHER_ANKLE = np.array([R_ANKLE, L_ANKLE])  # for the left leg, then the right
_HEAD_OF = np.array([HEAD, HEAD])


def points(body: np.ndarray) -> np.ndarray:
    """(P, 16, 2) float64 joint positions of (P, 16, 3) keypoints, NaN where unknown (records.known)."""
    return np.where(known(body)[..., None], body[..., :2], np.nan).astype(np.float64)


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]


def _per_value(fn, *arrays: np.ndarray) -> np.ndarray:
    """fn applied value by value (math's functions, exact to the bit); NaN stays NaN."""
    shape = arrays[0].shape
    flat = [a.ravel().tolist() for a in arrays]
    return np.array(
        [math.nan if math.isnan(xs[0]) else fn(*xs) for xs in zip(*flat, strict=True)], dtype=np.float64
    ).reshape(shape)


def _acos_degrees(cos: np.ndarray) -> np.ndarray:
    return _per_value(lambda c: math.degrees(math.acos(c)), cos)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Degrees between vectors u and v (..., 2); NaN where either is unknown or shorter than _EPS."""
    nu, nv = _norm(u), _norm(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(_dot(u, v) / (nu * nv), -1.0, 1.0)
    return _acos_degrees(np.where((nu >= _EPS) & (nv >= _EPS), cos, np.nan))


def joint_angles(xy: np.ndarray) -> np.ndarray:
    """(P, 8) angles in degrees in ANGLES order, NaN when a joint is unknown or two coincide."""
    a, b, c = (np.array(j) for j in zip(*ANGLES.values(), strict=True))
    return _angle(xy[:, a] - xy[:, b], xy[:, c] - xy[:, b])


def _central(xy: np.ndarray, center: int, left: int, right: int) -> np.ndarray:
    """A central joint, or the midpoint of its left/right pair when the central one is unknown."""
    mid = (xy[:, left] + xy[:, right]) / 2.0
    return np.where(np.isnan(xy[:, center]).any(axis=-1, keepdims=True), mid, xy[:, center])


def torso_vectors(xy: np.ndarray) -> np.ndarray:
    """(P, 2) pelvis -> thorax (falling back to hip and shoulder midpoints), NaN when unknown or too short."""
    vec = _central(xy, THORAX, L_SHOULDER, R_SHOULDER) - _central(xy, PELVIS, L_HIP, R_HIP)
    return np.where((_norm(vec) >= _EPS)[:, None], vec, np.nan)


def from_vertical(vec: np.ndarray) -> np.ndarray:
    """Degrees between each (..., 2) vector and straight up in image coordinates; NaN when unknown."""
    n = _norm(vec)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(-vec[..., 1] / n, -1.0, 1.0)  # the dot product with (0, -1)
    return _acos_degrees(np.where(n >= _EPS, cos, np.nan))


_DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def _direction_index(y: float, x: float) -> int:
    ang = math.degrees(math.atan2(y, x)) % 360.0  # 0 = right, 90 = down
    return int(((ang + 22.5) % 360.0) // 45.0)


def direction(vec: np.ndarray) -> str:
    """One of 8 image directions for a vector in image coordinates (y down)."""
    return _DIRECTIONS[_direction_index(vec[1], vec[0])]


def directions(vec: np.ndarray) -> np.ndarray:
    """direction() of each (..., 2) vector as an index into _DIRECTIONS, -1 when unknown or too short."""
    index = _per_value(_direction_index, vec[..., 1], vec[..., 0])
    return np.where(_norm(vec) >= _EPS, index, -1).astype(int)


def head_angles(xy: np.ndarray, torso: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's direction (neck -> head top) in degrees: from the torso's direction (0 = in line with the
    body; NaN when the torso is unknown) and from the image vertical (0 = straight up). A reader may mean
    either by "upright" or "tilted" (a head in line with a leaning body is tilted in the picture)."""
    d = xy[:, HEAD] - xy[:, NECK]
    n = _norm(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where((n >= _EPS)[:, None], d / n[:, None], np.nan)
        t = torso / _norm(torso)[:, None]
        cos = np.clip(_dot(h, t), -1.0, 1.0)
    return _acos_degrees(cos), from_vertical(h)


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


def head_word(tilt: float | None) -> str | None:
    """'upright', 'tilted' or 'bowed' for the head's angle from the torso's direction (head_angles)."""
    if tilt is None:
        return None
    if tilt < UPRIGHT_HEAD_MAX:
        return "upright"
    if tilt > BOWED_HEAD_MIN:
        return "bowed"
    return "tilted"


def torso_word(tilt: float | None) -> str | None:
    """'upright' | 'leaning' | 'horizontal' for the torso's degrees from vertical."""
    if tilt is None:
        return None
    return "upright" if tilt < UPRIGHT_TORSO_MAX else "leaning" if tilt < LYING_TORSO_MIN else "horizontal"


def body_state(tilt: float | None, drops: list[float], knees: list[float]) -> tuple[str, float]:
    """Coarse state ('standing' | 'sitting' | 'lying' | 'unknown') and a confidence in [0, 1], from the
    torso's degrees from vertical, each known thigh's drop and each known knee angle (body_drops).

    Torso more than 55 degrees from vertical -> lying. Otherwise the thighs decide: their vertical drop
    relative to the torso length is about 0.8 when standing and near 0 when seated (the thigh runs
    towards or away from the camera, or sideways); straight knees support standing.
    """
    if tilt is None:
        return "unknown", 0.0
    if torso_word(tilt) == "horizontal":
        return "lying", float(min(1.0, 0.5 + (tilt - LYING_TORSO_MIN) / 70.0))
    if not drops:
        return "unknown", 0.0
    drop = drops[0] if len(drops) == 1 else (drops[0] + drops[1]) / 2.0  # their mean
    coverage = len(drops) / 2.0
    if drop >= 0.55:
        straight = bool(knees) and min(knees) >= SLIGHTLY_BENT_MIN
        conf = min(1.0, 0.55 + (drop - 0.55)) * (1.0 if straight or not knees else 0.8)
        return "standing", round(conf * (0.75 + 0.25 * coverage), 3)
    if drop <= 0.35:
        conf = min(1.0, 0.55 + (0.35 - drop))
        return "sitting", round(conf * (0.75 + 0.25 * coverage), 3)
    return "unknown", 0.0


def thigh_drops(xy: np.ndarray, torso: np.ndarray) -> np.ndarray:
    """(P, 2) each thigh (left, right) projected on the torso axis, in torso lengths: robust to a leaning
    torso (body_state). NaN when the hip, the knee or the torso is unknown."""
    length = _norm(torso)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = -torso / length
        hips, knees = np.array([L_HIP, R_HIP]), np.array([L_KNEE, R_KNEE])
        return _dot(xy[:, knees] - xy[:, hips], axis[:, None]) / length


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


def center_x(kps: np.ndarray, center: tuple[float, float] | None = None) -> float | None:
    """The mean x of one instance's known joints (numpy's float32 mean), else its center's x."""
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
    hand_height: float | None = None  # arms: wrist above the shoulder, torso lengths (limb_arrays)
    foot_lift: float | None = None  # legs: ankle above the other ankle, torso lengths (limb_arrays)
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


@dataclass(frozen=True, slots=True)
class LimbArrays:
    """Per person and limb (P, 4) in LIMBS order; NaN / False where a fact's joints are unknown."""

    raised: np.ndarray  # 1.0 / 0.0 / NaN: arms the hand (else the elbow) above the shoulder; legs the
    # knee at hip height or above, or the foot FOOT_LIFT_MIN torso lengths above the other foot
    above_head: np.ndarray  # arms: 1.0 / 0.0 / NaN, the wrist above the head top
    lift: np.ndarray  # arms: the wrist above the shoulder; legs: the ankle above the other; torso lengths
    upper: np.ndarray  # direction indices (int, -1 unknown) root -> middle
    lower: np.ndarray  # middle -> end
    known_joints: np.ndarray  # int


def _truth(holds: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where, holds.astype(np.float64), np.nan)


def limb_arrays(xy: np.ndarray, torso_length: np.ndarray, ok: np.ndarray) -> LimbArrays:
    """The limbs' facts of every person; torso_length (P,) NaN when unknown, ok the (P, 16) known mask."""
    root, mid, end = (xy[:, _LIMB_INDEX[:, k]] for k in range(3))  # (P, 4, 2)
    y, t = xy[..., 1], torso_length[:, None]
    has = ~np.isnan(xy[..., 0])
    # Arms: the wrist, or the elbow when the wrist is unknown, against the shoulder.
    tip = np.where(np.isnan(end[:, _ARMS]), mid[:, _ARMS], end[:, _ARMS])
    arm_up = _truth(tip[..., 1] < root[:, _ARMS, 1], ~np.isnan(tip[..., 1]) & ~np.isnan(root[:, _ARMS, 1]))
    above = _truth(end[:, _ARMS, 1] < y[:, _HEAD_OF], ~np.isnan(end[:, _ARMS, 1]) & has[:, _HEAD_OF])
    rise = y[:, _OTHER_ANKLE] - end[:, _LEGS, 1]  # the ankle above the other one, pixels
    with np.errstate(invalid="ignore", divide="ignore"):
        hand = (root[:, _ARMS, 1] - end[:, _ARMS, 1]) / t
        foot = rise / t
    # Legs: the knee at hip height or above; else the foot test when both ankles and the torso are known.
    knee_up = mid[:, _LEGS, 1] <= root[:, _LEGS, 1]
    foot_up = rise > FOOT_LIFT_MIN * t  # NaN (unknown) compares False
    leg_up = _truth(knee_up | foot_up, ~np.isnan(mid[:, _LEGS, 1]) & ~np.isnan(root[:, _LEGS, 1]))
    nan2 = np.full_like(hand, np.nan)
    return LimbArrays(
        raised=np.concatenate([arm_up, leg_up], axis=1),
        above_head=np.concatenate([above, nan2], axis=1),
        lift=np.concatenate([hand, foot], axis=1),
        upper=directions(mid - root),
        lower=directions(end - mid),
        known_joints=ok[:, _LIMB_INDEX].sum(axis=-1),
    )


def arms_crossed(xy: np.ndarray) -> np.ndarray:
    """(P,) 1.0 / 0.0 / NaN: wrists swapped sides relative to the shoulders, in front of the torso (below
    shoulder level); unknown when a joint is, or when the person is seen exactly side-on."""
    ls, rs, lw, rw = (xy[:, j] for j in (L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST))
    side = np.sign(ls[:, 0] - rs[:, 0])
    top = np.minimum(ls[:, 1], rs[:, 1])
    below = (lw[:, 1] > top) & (rw[:, 1] > top)
    crossed = (np.sign(lw[:, 0] - rw[:, 0]) == -side) & below
    return _truth(crossed, ~np.isnan(np.stack([ls, rs, lw, rw], axis=1)).any(axis=(1, 2)) & (side != 0))


def feet_apart(xy: np.ndarray, torso_length: np.ndarray) -> np.ndarray:
    """(P,) 1.0 / 0.0 / NaN: ankles further apart than 1.5x the hip width (and than a third of the torso)."""
    ankles = _norm(xy[:, L_ANKLE] - xy[:, R_ANKLE])
    hips = _norm(xy[:, L_HIP] - xy[:, R_HIP])
    apart = ankles > np.maximum(1.5 * hips, torso_length / 3.0)
    return _truth(apart, ~np.isnan(ankles) & ~np.isnan(hips) & ~np.isnan(torso_length))


def _opt(value: float, digits: int | None = None) -> float | None:
    if math.isnan(value):
        return None
    return value if digits is None else round(value, digits)


def _flag(value: float) -> bool | None:
    return None if math.isnan(value) else value == 1.0


def people_facts(body: np.ndarray, where: list[str | None] | None = None) -> list[PersonFacts]:
    """Facts for every person of (P, 16, 3) keypoints; `where`: each one's left/center/right position among
    the people of the image (pipeline.facts), None when not given."""
    ok, xy = known(body), points(body)
    angles = joint_angles(xy)
    torso = torso_vectors(xy)
    length = _norm(torso)
    tilt = from_vertical(torso)
    head_tilt, head_vertical = head_angles(xy, torso)
    limbs = limb_arrays(xy, length, ok)
    drops = thigh_drops(xy, torso)
    crossed, apart = arms_crossed(xy).tolist(), feet_apart(xy, length).tolist()
    rows = zip(
        angles.tolist(), tilt.tolist(), head_tilt.tolist(), head_vertical.tolist(), drops.tolist(),
        limbs.raised.tolist(), limbs.above_head.tolist(), limbs.lift.tolist(), limbs.upper.tolist(),
        limbs.lower.tolist(), limbs.known_joints.tolist(), crossed, apart, ok.sum(axis=1).tolist(),
        where or [None] * len(body), strict=True,
    )  # fmt: skip
    out = []
    for ang, t, ht, hv, drop, up, above, lift, upper, lower, kj, cross, wide, known_joints, pos in rows:
        t_ = _opt(t)
        knees = [a for a in ang[2:4] if not math.isnan(a)]
        state, conf = body_state(t_, [d for d in drop if not math.isnan(d)], knees)
        out.append(
            PersonFacts(
                state=state,
                state_confidence=conf,
                position=pos,
                torso=torso_word(t_),
                torso_tilt=_opt(t, 1),
                head=head_word(_opt(ht)),
                head_tilt=_opt(ht, 1),
                head_vertical=_opt(hv, 1),
                arms_crossed=_flag(cross),
                feet_apart=_flag(wide),
                angles={name: _opt(a, 1) for name, a in zip(ANGLES, ang, strict=True)},
                limbs={
                    name: LimbFacts(
                        name=name,
                        angle=_opt(ang[i], 1),
                        bend=bend_word(_opt(ang[i])),
                        raised=_flag(up[i]),
                        above_head=_flag(above[i]),
                        hand_height=_opt(lift[i], 3) if i < 2 else None,
                        foot_lift=None if i < 2 else _opt(lift[i], 3),
                        upper_direction=_DIRECTIONS[upper[i]] if upper[i] >= 0 else None,
                        lower_direction=_DIRECTIONS[lower[i]] if lower[i] >= 0 else None,
                        known_joints=kj[i],
                    )
                    for i, name in enumerate(LIMBS)
                },
                known_joints=known_joints,
            )
        )
    return out


def person_facts(kps: np.ndarray, position: str | None = None) -> PersonFacts:
    """people_facts of one person's (16, 3) keypoints."""
    return people_facts(kps[None], [position])[0]
