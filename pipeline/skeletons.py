"""Keypoint skeletons as data: joint names, left/right pairs, limbs, body parts and how a human skeleton
maps onto the 16 MPII joints that pose geometry, the rules describer and analyze's claims reason about.

    sk = skeleton_for(names, edges)     # a built-in when the joint names match one, else a custom skeleton
    sk = SKELETONS["coco-17"]
    body = sk.to_mpii(kps)              # (16, 3) MPII-order view of a (K, 3) array; None for animals

Built-ins: MPII-16 (the paper's), COCO-17 (COCO, OCHuman, AI Challenger re-exports), CrowdPose-14 and
AP-10K-17 (animals). A skeleton met nowhere else (a COCO-format file's own `categories` entry) still
works for heatmaps, drawing and the paper-style prompt: its joints and edges come from the file.

Keypoint arrays keep each skeleton's own order (K, 3) in the pipeline.records convention; only pose
geometry reads the MPII view, where a joint the skeleton lacks (COCO has no head top) is v = 0, so
nothing is ever claimed about it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# The MPII joint names in MPII order, as pose geometry indexes them (pipeline.geometry's R_ANKLE ... L_WRIST).
MPII_ROLES: tuple[str, ...] = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
    "pelvis", "thorax", "upper neck", "head top",
    "right wrist", "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Skeleton:
    name: str  # "mpii-16", "coco-17", ... or "custom-<hash>" for one read from a file
    joints: tuple[str, ...]  # joint names with spaces ("left shoulder"), in the source's order
    edges: tuple[tuple[int, int], ...] = ()  # 0-based joint pairs drawn as limbs
    parts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # body part -> its joints
    # For each MPII joint (MPII_ROLES order), the index of the same joint here, or -1 when this skeleton has
    # none; empty for skeletons that are not human (animals, custom ones): no human pose geometry then.
    mpii: tuple[int, ...] = ()
    subject: str = "person"  # what one instance is called when its category gives no name

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def human(self) -> bool:
        return bool(self.mpii)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left, right) joint index pairs, found by name."""
        index = {n: i for i, n in enumerate(self.joints)}
        return tuple(
            (i, index[n.replace("left", "right", 1)])
            for i, n in enumerate(self.joints)
            if n.startswith("left") and n.replace("left", "right", 1) in index
        )

    def to_mpii(self, kps: np.ndarray) -> np.ndarray | None:
        """(..., 16, 3) MPII-order view of (..., K, 3) keypoints; None when the skeleton is not human."""
        if not self.mpii:
            return None
        kps = np.asarray(kps, dtype=np.float32)
        out = np.full(kps.shape[:-2] + (len(MPII_ROLES), 3), np.nan, dtype=np.float32)
        out[..., 2] = 0  # not annotated (pipeline.records.MISSING)
        src = np.array(self.mpii)
        has = src >= 0
        out[..., has, :] = kps[..., src[has], :]
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "joints": list(self.joints),
            "edges": [list(e) for e in self.edges],
            "parts": {k: list(v) for k, v in self.parts.items()},
            "mpii": list(self.mpii),
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Skeleton:
        return cls(
            name=str(d["name"]),
            joints=tuple(str(j) for j in d["joints"]),
            edges=tuple((int(a), int(b)) for a, b in d.get("edges", ())),
            parts={str(k): tuple(int(i) for i in v) for k, v in d.get("parts", {}).items()},
            mpii=tuple(int(i) for i in d.get("mpii", ())),
            subject=str(d.get("subject", "person")),
        )


def _named(joints: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    index = {n: i for i, n in enumerate(joints)}
    return tuple((index[a], index[b]) for a, b in pairs)


def _groups(joints: Sequence[str], groups: dict[str, Sequence[str]]) -> dict[str, tuple[int, ...]]:
    index = {n: i for i, n in enumerate(joints)}
    return {part: tuple(index[n] for n in names) for part, names in groups.items()}


def _mpii_map(joints: Sequence[str], same: dict[str, str] | None = None) -> tuple[int, ...]:
    """Per MPII joint, the index of the joint with the same name (or the name `same` gives), else -1."""
    index = {n: i for i, n in enumerate(joints)}
    same = same or {}
    return tuple(index.get(same.get(role, role), -1) for role in MPII_ROLES)


_LIMBS = [
    ("left shoulder", "left elbow"), ("left elbow", "left wrist"),
    ("right shoulder", "right elbow"), ("right elbow", "right wrist"),
    ("left hip", "left knee"), ("left knee", "left ankle"),
    ("right hip", "right knee"), ("right knee", "right ankle"),
]  # fmt: skip
# The body parts of the part-wise ROI heatmap; "head" and "torso" differ per skeleton.
_LIMB_PARTS = {
    "left upper arm": ("left shoulder", "left elbow"), "left forearm": ("left elbow", "left wrist"),
    "right upper arm": ("right shoulder", "right elbow"), "right forearm": ("right elbow", "right wrist"),
    "left thigh": ("left hip", "left knee"), "left shin": ("left knee", "left ankle"),
    "right thigh": ("right hip", "right knee"), "right shin": ("right knee", "right ankle"),
}  # fmt: skip
_TORSO = ("left shoulder", "right shoulder", "left hip", "right hip")


def _mpii16() -> Skeleton:
    j = MPII_ROLES
    return Skeleton(
        name="mpii-16",
        joints=j,
        # In the order and direction analyze's gallery always drew them, so its MPII pictures stay the same.
        edges=_named(
            j,
            [
                ("right ankle", "right knee"),
                ("right knee", "right hip"),
                ("right hip", "pelvis"),
                ("pelvis", "left hip"),
                ("left hip", "left knee"),
                ("left knee", "left ankle"),
                ("pelvis", "thorax"),
                ("thorax", "upper neck"),
                ("upper neck", "head top"),
                ("right wrist", "right elbow"),
                ("right elbow", "right shoulder"),
                ("right shoulder", "thorax"),
                ("thorax", "left shoulder"),
                ("left shoulder", "left elbow"),
                ("left elbow", "left wrist"),
            ],
        ),  # fmt: skip
        parts=_groups(
            j,
            {"head": ("upper neck", "head top"), "torso": ("thorax", "pelvis", *_TORSO)} | _LIMB_PARTS,
        ),
        mpii=tuple(range(len(j))),
    )


def _coco17() -> Skeleton:
    j = (
        "nose", "left eye", "right eye", "left ear", "right ear", "left shoulder", "right shoulder",
        "left elbow", "right elbow", "left wrist", "right wrist", "left hip", "right hip",
        "left knee", "right knee", "left ankle", "right ankle",
    )  # fmt: skip
    return Skeleton(
        name="coco-17",
        joints=j,
        edges=_named(
            j,
            [
                *_LIMBS,
                ("left shoulder", "right shoulder"),
                ("left hip", "right hip"),
                ("left shoulder", "left hip"),
                ("right shoulder", "right hip"),
                ("nose", "left eye"),
                ("nose", "right eye"),
                ("left eye", "left ear"),
                ("right eye", "right ear"),
            ],
        ),
        parts=_groups(
            j,
            {"head": ("nose", "left eye", "right eye", "left ear", "right ear"), "torso": _TORSO}
            | _LIMB_PARTS,
        ),
        # COCO marks no pelvis, thorax, neck or head top: geometry takes the hip and shoulder midpoints for
        # the torso, and head posture and "above the head" stay unverifiable.
        mpii=_mpii_map(j),
    )


def _crowdpose14() -> Skeleton:
    j = (
        "left shoulder", "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist",
        "left hip", "right hip", "left knee", "right knee", "left ankle", "right ankle", "head", "neck",
    )  # fmt: skip
    return Skeleton(
        name="crowdpose-14",
        joints=j,
        edges=_named(
            j,
            [
                *_LIMBS,
                ("head", "neck"),
                ("neck", "left shoulder"),
                ("neck", "right shoulder"),
                ("left shoulder", "left hip"),
                ("right shoulder", "right hip"),
                ("left hip", "right hip"),
            ],
        ),
        parts=_groups(j, {"head": ("head", "neck"), "torso": _TORSO} | _LIMB_PARTS),
        # CrowdPose's "head" is the top of the head and "neck" the upper neck, as in MPII (Li et al. 2019).
        mpii=_mpii_map(j, {"head top": "head", "upper neck": "neck"}),
    )


def _ap10k17() -> Skeleton:
    j = (
        "left eye", "right eye", "nose", "neck", "root of tail", "left shoulder", "left elbow",
        "left front paw", "right shoulder", "right elbow", "right front paw", "left hip", "left knee",
        "left back paw", "right hip", "right knee", "right back paw",
    )  # fmt: skip
    return Skeleton(
        name="ap10k-17",
        joints=j,
        edges=_named(
            j,
            [
                ("left eye", "right eye"),
                ("left eye", "nose"),
                ("right eye", "nose"),
                ("nose", "neck"),
                ("neck", "root of tail"),
                ("neck", "left shoulder"),
                ("left shoulder", "left elbow"),
                ("left elbow", "left front paw"),
                ("neck", "right shoulder"),
                ("right shoulder", "right elbow"),
                ("right elbow", "right front paw"),
                ("root of tail", "left hip"),
                ("left hip", "left knee"),
                ("left knee", "left back paw"),
                ("root of tail", "right hip"),
                ("right hip", "right knee"),
                ("right knee", "right back paw"),
            ],
        ),
        parts=_groups(
            j,
            {
                "head": ("left eye", "right eye", "nose", "neck"),
                "body": ("neck", "root of tail", "left shoulder", "right shoulder", "left hip", "right hip"),
                "left front leg": ("left shoulder", "left elbow", "left front paw"),
                "right front leg": ("right shoulder", "right elbow", "right front paw"),
                "left back leg": ("left hip", "left knee", "left back paw"),
                "right back leg": ("right hip", "right knee", "right back paw"),
            },
        ),
        subject="animal",
    )


SKELETONS: dict[str, Skeleton] = {s.name: s for s in (_mpii16(), _coco17(), _crowdpose14(), _ap10k17())}
MPII = SKELETONS["mpii-16"]


def joint_label(name: str) -> str:
    """'left_front_paw' -> 'left front paw' (COCO files use underscores, we use spaces)."""
    return " ".join(str(name).replace("_", " ").split()).lower()


def skeleton_for(
    names: Sequence[str], edges: Sequence[Sequence[int]] = (), *, one_based: bool = True
) -> Skeleton:
    """The built-in skeleton with exactly these joint names (in this order), or a custom one made from them
    (edges as the file gives them: COCO's `skeleton` is 1-based)."""
    joints = tuple(joint_label(n) for n in names)
    for sk in SKELETONS.values():
        if sk.joints == joints:
            return sk
    shift = 1 if one_based else 0
    pairs = tuple((int(a) - shift, int(b) - shift) for a, b in edges)
    bad = [p for p in pairs if not (0 <= p[0] < len(joints) and 0 <= p[1] < len(joints))]
    if bad:
        raise ValueError(f"skeleton edge {bad[0]} names a joint outside 1..{len(joints)}")
    digest = hashlib.sha256(json.dumps([joints, pairs]).encode()).hexdigest()[:8]
    return Skeleton(name=f"custom-{digest}", joints=joints, edges=pairs, subject="instance")
