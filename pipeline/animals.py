"""Facts about an animal (or any instance whose skeleton is not human) from its keypoints alone: pure
functions over one instance's (K, 3) keypoints and its pipeline.skeletons.Skeleton, no human geometry.

    facts = animal_facts(kps, SKELETONS["ap10k-17"], position="left")
    facts.facing, facts.visible         # "left", ("head", "body", "left front leg", ...)

What keypoints support without a body model of 54 species: which way the instance faces in the image (its
head end against its tail end, from the joints the skeleton names) and which of its parts are marked
visible. Nothing here claims a posture: standing, walking, lying or grazing are not settled by where the
paws are for every species, so the describer and the gate say nothing about them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.records import VISIBLE, keypoint_box, known
from pipeline.skeletons import Skeleton

# (front, back) joints whose horizontal order tells which way an instance faces, most telling pair first;
# the first pair with both joints known decides (AP-10K names all three).
FACING_PAIRS = (("nose", "root of tail"), ("neck", "root of tail"), ("nose", "neck"))
# The front -> back vector must lie within 60 degrees of horizontal (|dx| >= 0.5 |d|): an animal seen from
# the front or behind has its nose over its tail and faces neither side.
FACING_MIN_COS = 0.5
# ... and span at least this fraction of the larger side of the instance's keypoint box, so that two joints
# a few pixels apart do not decide it.
FACING_MIN_SPAN = 0.1


@dataclass(slots=True)
class AnimalFacts:
    position: str | None = None  # left / center / right among the instances of the image
    facing: str | None = None  # "left" | "right": the side of the image its head end points to
    visible: tuple[str, ...] = ()  # parts with a joint marked visible (v = 2)
    hidden: tuple[str, ...] = ()  # parts with no joint marked visible (occluded or not annotated)
    known_joints: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def parts(skeleton: Skeleton) -> dict[str, tuple[int, ...]]:
    """The skeleton's body parts; a skeleton that defines none (a custom one) has one part per joint."""
    return skeleton.parts or {name: (i,) for i, name in enumerate(skeleton.joints)}


def facing(kps: np.ndarray, skeleton: Skeleton) -> str | None:
    """'left' or 'right' when the head end is clearly on that side of the tail end in the image, else None
    (the joints are unknown or unnamed, the instance is seen head-on, or the joints are too close)."""
    index = {name: i for i, name in enumerate(skeleton.joints)}
    ok = known(kps)
    box = keypoint_box(kps)
    for front, back in FACING_PAIRS:
        if front in index and back in index and ok[index[front]] and ok[index[back]]:
            d = kps[index[front], :2].astype(np.float64) - kps[index[back], :2]
            span = float(np.hypot(*d))
            side = max(box[2] - box[0], box[3] - box[1])
            if span < FACING_MIN_SPAN * side or abs(d[0]) < FACING_MIN_COS * span:
                return None
            return "left" if d[0] < 0 else "right"
    return None


def animal_facts(kps: np.ndarray, skeleton: Skeleton, position: str | None = None) -> AnimalFacts:
    shown = (kps[:, 2] == VISIBLE) & known(kps)
    named = parts(skeleton)
    return AnimalFacts(
        position=position,
        facing=facing(kps, skeleton),
        visible=tuple(p for p, joints in named.items() if shown[list(joints)].any()),
        hidden=tuple(p for p, joints in named.items() if not shown[list(joints)].any()),
        known_joints=int(known(kps).sum()),
    )
