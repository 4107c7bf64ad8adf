"""What a description of one image speaks of, whatever its skeleton: the instances (people or animals), what
each is called, where it is, and the facts its keypoints support. The one home for these rules: prompts, the
rules describer, the claim checker, the gate and analyze all go through here.

    insts = instances(ann)          # crowd regions dropped: a region of several people is not one to describe
    facts = annotation_facts(ann)   # per instance: PersonFacts (human skeletons) or AnimalFacts (the others)
    noun(person, ann.skeleton)      # "person", "zebra": the instance's category, else the skeleton's subject
    plural("zebra"), groups(ann)    # "zebras", [("zebra", 2), ("giraffe", 1)]

Human skeletons (MPII-16, COCO-17, CrowdPose-14) reason through their MPII view (Skeleton.to_mpii), so
pipeline.geometry stays MPII-indexed: a joint the skeleton lacks is v = 0 there and nothing is claimed about
it. COCO has no head top or upper neck, so its head posture and "hands above the head" stay unknown, and a
claim about them is unverifiable; its torso comes from the shoulder and hip midpoints (geometry's fallback).
No stand-in is taken for the head top: the eyes and ears lie about half a head below it, so a wrist between
them and the crown would be wrongly called above the head. Other skeletons (AP-10K, custom ones) get
pipeline.animals' facts: facing and visible parts, no posture.
"""

from __future__ import annotations

import numpy as np

from pipeline.animals import AnimalFacts, animal_facts
from pipeline.geometry import PersonFacts, image_facts, person_center_x, positions
from pipeline.records import ImageAnnotation, Person
from pipeline.skeletons import MPII, Skeleton

# Plurals that the -s / -es / -ies rules get wrong, for the subjects and AP-10K species we name.
_IRREGULAR = {
    "person": "people", "mouse": "mice", "wolf": "wolves", "sheep": "sheep", "deer": "deer", "moose": "moose",
    "bison": "bison", "buffalo": "buffalo", "elk": "elk", "fish": "fish", "child": "children",
}  # fmt: skip


def plural(word: str) -> str:
    """English plural of a noun; for a compound ("argali sheep") the last word's."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        out = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        out = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        out = last[:-1] + "ies"
    else:
        out = last + "s"
    return f"{head} {out}" if head else out


def article(word: str) -> str:
    """'a person', 'an animal'."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def instances(ann: ImageAnnotation) -> list[Person]:
    """The people or animals of an image: every instance but the crowd regions (COCO iscrowd)."""
    return [p for p in ann.people if not p.crowd]


def noun(person: Person, skeleton: Skeleton) -> str:
    return person.label or skeleton.subject


def groups(ann: ImageAnnotation) -> list[tuple[str, int]]:
    """(noun, number of instances) per noun, in the order the nouns first appear."""
    out: dict[str, int] = {}
    for p in instances(ann):
        out[noun(p, ann.skeleton)] = out.get(noun(p, ann.skeleton), 0) + 1
    return list(out.items())


def claim_nouns(ann: ImageAnnotation) -> tuple[str, ...]:
    """The words beyond "person" (which pipeline.claims always knows) that name this image's instances: its
    categories and the skeleton's subject ("zebra", "animal"); none for people."""
    words = [n for n, _ in groups(ann)] + [ann.skeleton.subject]
    return tuple(dict.fromkeys(w for w in words if w != MPII.subject))


def body_keypoints(ann: ImageAnnotation) -> list[np.ndarray] | None:
    """Each instance's (16, 3) MPII view for pipeline.geometry, or None when the skeleton is not human."""
    if not ann.skeleton.human:
        return None
    return [ann.skeleton.to_mpii(p.keypoints) for p in instances(ann)]


def instance_positions(ann: ImageAnnotation) -> list[str | None]:
    """left / center / right of each instance among the others (pipeline.geometry.positions), from the
    joints its facts come from (a person's MPII view, an animal's own joints), else its center. Not from
    the source box: the prompts give keypoints and centers, so a description model places instances so."""
    people = instances(ann)
    kps = body_keypoints(ann) or [p.keypoints for p in people]
    return positions([person_center_x(k, p.center) for k, p in zip(kps, people, strict=True)])


def annotation_facts(ann: ImageAnnotation) -> list[PersonFacts] | list[AnimalFacts]:
    """The facts of every instance, with its position among the others as instance_positions gives it."""
    people = instances(ann)
    body = body_keypoints(ann)
    if body is not None:
        return image_facts(body, [p.center for p in people])
    where = instance_positions(ann)
    return [animal_facts(p.keypoints, ann.skeleton, pos) for p, pos in zip(people, where, strict=True)]


def native_joints(skeleton: Skeleton, mpii_joints: tuple[int, ...]) -> tuple[int, ...]:
    """The skeleton's own joints for MPII joints that a description's mention of a part presumes known.
    When the skeleton has none of them (COCO's head: upper neck and head top; its torso: thorax and
    pelvis), the joints of the skeleton's body part that holds them stand in (COCO's face joints, its
    shoulders and hips), so that talking about a COCO head is not talking about unknown joints."""
    own = tuple(skeleton.mpii[j] for j in mpii_joints if skeleton.mpii[j] >= 0)
    if own:
        return own
    for name, joints in MPII.parts.items():
        if set(mpii_joints) <= set(joints) and name in skeleton.parts:
            return skeleton.parts[name]
    return ()
