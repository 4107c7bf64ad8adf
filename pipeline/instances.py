"""What a description of one image speaks of, whatever its skeleton: the instances (people or animals) and
what each is called. pipeline.facts builds an image's PoseFacts from these words and the geometry.

    insts = instances(ann)          # crowd regions dropped: a region of several people is not one to describe
    noun(person, ann.skeleton)      # "person", "zebra": the instance's category, else the skeleton's subject
    plural("zebra"), article("ant") # "zebras", "an ant"

Human skeletons (MPII-16, COCO-17, CrowdPose-14) reason through their MPII view (Skeleton.to_mpii), so
pipeline.geometry stays MPII-indexed: a joint the skeleton lacks is v = 0 there and nothing is claimed about
it. COCO has no head top or upper neck, so its head posture and "hands above the head" stay unknown, and a
claim about them is unverifiable; its torso comes from the shoulder and hip midpoints (geometry's fallback).
No stand-in is taken for the head top: the eyes and ears lie about half a head below it, so a wrist between
them and the crown would be wrongly called above the head. Other skeletons (AP-10K, custom ones) get
pipeline.animals' facts: facing and visible parts, no posture.
"""

from __future__ import annotations

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
