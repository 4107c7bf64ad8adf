"""The pose facts of an image, computed once from its keypoints: what the prompt, the rules describer, the
gate and analyze know about its instances (people or animals).

    facts = pose_facts(ann)                   # PoseFacts
    facts.people[0].state, facts.positions    # "standing", ("left", "right")
    facts.count("zebra"), facts.annotated_parts
    every = pose_facts_all(rows)              # one per image; the geometry runs once over all their people

This is the only code that derives facts from keypoints: a reader takes them from here and never goes back
to the keypoints. People (human skeletons) get pipeline.geometry's PersonFacts, computed on their MPII view;
animals and custom skeletons pipeline.animals' AnimalFacts. Crowd regions are not instances
(pipeline.instances).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.animals import AnimalFacts, animal_facts
from pipeline.geometry import LIMB_JOINTS, PersonFacts, center_x, people_facts, positions
from pipeline.instances import instances, noun
from pipeline.records import ImageAnnotation, Person, known
from pipeline.skeletons import MPII, Skeleton

Facts = PersonFacts | AnimalFacts  # one instance's
# The body parts coverage is counted over (the paper's template describes each of them for each person).
PARTS = tuple(LIMB_JOINTS)  # left arm, right arm, left leg, right leg, torso, head


@dataclass(frozen=True, slots=True, eq=False)
class PoseFacts:
    annotation: ImageAnnotation
    instances: tuple[Person, ...]  # crowd regions dropped
    known: np.ndarray  # (P, K) bool: each instance's known joints, in the skeleton's own order
    flags: tuple[
        tuple[float, ...], ...
    ]  # (P, K) each joint's v (pipeline.records: missing, occluded, visible)
    body: np.ndarray | None  # (P, 16, 3) MPII view of human skeletons, None for the others
    nouns: tuple[str, ...]  # per instance: its category, else the skeleton's subject ("zebra", "person")
    groups: tuple[tuple[str, int], ...]  # (noun, number of instances), nouns in order of first appearance
    claim_nouns: tuple[str, ...]  # words beyond "person" naming the instances (pipeline.claims)
    positions: tuple[str | None, ...]  # left / center / right among the instances (geometry.positions)
    position_ranks: tuple[int, ...]  # 1 for the first instance at its position, 2 for the next, ...
    people: tuple[Facts, ...]  # per instance
    annotated_parts: frozenset[str]  # the PARTS a description could cover (annotated_parts)
    decidable: int  # pose facts a description can be checked on: annotated parts + a resolved body state

    @property
    def skeleton(self) -> Skeleton:
        return self.annotation.skeleton

    @property
    def human(self) -> bool:
        return self.annotation.skeleton.human

    @property
    def activity(self) -> str | None:
        return self.annotation.activity

    @property
    def category(self) -> str | None:
        return self.annotation.category

    def count(self, what: str | None) -> int:
        """How many instances a count claim is about: all of them, or those of one noun ("zebra")."""
        if what is None or what == self.skeleton.subject:
            return len(self.instances)
        return sum(n == what for n in self.nouns)


def annotated_parts(people: Sequence[Facts]) -> frozenset[str]:
    """The PARTS geometry has a fact about for some person that a description would state: what it could
    cover. A leg known only to be not lifted does not count (a planted leg goes unsaid, by the rules
    describer too). Animals have none of these human parts."""
    out: set[str] = set()
    for f in people:
        if isinstance(f, AnimalFacts):
            continue
        out |= {
            n
            for n, limb in f.limbs.items()
            if limb.angle is not None
            or limb.raised is True
            or (n.endswith("arm") and limb.raised is not None)
        }
        out |= {"torso"} if f.torso_tilt is not None else set()
        out |= {"head"} if f.head is not None else set()
    return frozenset(out)


def _ranks(where: list[str | None]) -> tuple[int, ...]:
    seen: dict[str | None, int] = {}
    out = []
    for w in where:
        seen[w] = seen.get(w, 0) + 1
        out.append(seen[w])
    return tuple(out)


def _stacked(people: list[Person], skeleton: Skeleton) -> np.ndarray:
    if not people:
        return np.zeros((0, skeleton.num_joints, 3), dtype=np.float32)
    return np.stack([p.keypoints for p in people])


@dataclass(slots=True)
class _Image:
    """One image on its way to PoseFacts: what is known before the geometry runs."""

    ann: ImageAnnotation
    people: list[Person]
    kps: np.ndarray  # (P, K, 3)
    body: np.ndarray | None  # (P, 16, 3)
    where: list[str | None]


def _prepare(ann: ImageAnnotation) -> _Image:
    people = instances(ann)
    kps = _stacked(people, ann.skeleton)
    body = ann.skeleton.to_mpii(kps)
    # Positions from the joints the facts come from (a person's MPII view, an animal's own joints), else the
    # center. Not from the source box: the prompts give keypoints and centers, so a model places them so.
    seen = kps if body is None else body
    where = positions([center_x(k, p.center) for k, p in zip(seen, people, strict=True)])
    return _Image(ann, people, kps, body, where)


def _finish(image: _Image, people: Sequence[Facts]) -> PoseFacts:
    ann, sk = image.ann, image.ann.skeleton
    nouns = tuple(noun(p, sk) for p in image.people)
    groups = tuple((n, nouns.count(n)) for n in dict.fromkeys(nouns))
    parts = annotated_parts(people)
    return PoseFacts(
        annotation=ann,
        instances=tuple(image.people),
        known=known(image.kps),
        flags=tuple(map(tuple, image.kps[..., 2].tolist())),
        body=image.body,
        nouns=nouns,
        groups=groups,
        claim_nouns=tuple(dict.fromkeys(w for w in (*dict.fromkeys(nouns), sk.subject) if w != MPII.subject)),
        positions=tuple(image.where),
        position_ranks=_ranks(image.where),
        people=tuple(people),
        annotated_parts=parts,
        decidable=len(parts) + any(f.state != "unknown" for f in people) if sk.human else 0,
    )


def pose_facts_all(rows: Sequence[ImageAnnotation]) -> list[PoseFacts]:
    """PoseFacts of every image; the people of all human images go through the geometry as one array."""
    images = [_prepare(ann) for ann in rows]
    human = [im for im in images if im.body is not None and len(im.body)]
    everyone = people_facts(
        np.concatenate([im.body for im in human]) if human else np.zeros((0, 16, 3), dtype=np.float32),
        [w for im in human for w in im.where],
    )
    out, start = [], 0
    for im in images:
        if im.body is not None:
            people: Sequence[Facts] = everyone[start : start + len(im.body)]
            start += len(im.body)
        else:
            people = [animal_facts(k, im.ann.skeleton, w) for k, w in zip(im.kps, im.where, strict=True)]
        out.append(_finish(im, people))
    return out


def pose_facts(ann: ImageAnnotation) -> PoseFacts:
    """PoseFacts of one image (pose_facts_all for many: the geometry is vectorised over their people)."""
    return pose_facts_all([ann])[0]
