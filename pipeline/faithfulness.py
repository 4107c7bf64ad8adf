"""Pose faithfulness: each parsed claim checked against pipeline.geometry's facts about the annotated pose.

    checks = check_description(parse_annotated(text, ann), ann, annotation_facts(ann))
    summary = faithfulness_summary([checks, ...])     # agreement rate and per-kind counts of one source

The one checker of the project: analyze reports it per source, describe's gate (pipeline.describe.validate)
applies it to every row.

A claim is *confirmed* when the keypoints say the same, *contradicted* when they say otherwise, and
*unverifiable* when geometry has no fact for it (a joint it needs is unannotated, the posture is not
resolved, the person it is about cannot be told). Agreement = confirmed / (confirmed + contradicted).

Tolerances (so that a faithful description is not contradicted at the edge of a geometry threshold; each
is calibrated on tests/calibration, replies in a strong model's words judged by a reader of the keypoints):
- bends: the claimed word's angle range (geometry's thresholds: straight >= 155, slightly bent 125-155,
  bent 70-125, sharply bent < 70; an unqualified "bent" from free text is read as anything below 155;
  "nearly straight" from 145) is widened by ANGLE_MARGIN degrees on both sides.
- torso: upright < 20, leaning 20-55, horizontal > 55, bent forward 20-135 degrees from vertical, widened by
  ANGLE_MARGIN.
- head: read from the torso's line and from the image vertical (_check_head); a hedged "tilted slightly"
  holds from ANGLE_MARGIN degrees less.
- arms and hands (_check_raised): a raised hand is at chest height or higher on any arm; a raised arm has
  the wrist above the shoulder or the upper arm level; an arm held out with the wrist within ARM_MARGIN of
  shoulder height is neither raised nor lowered for sure. A leg said to be planted is contradicted by its
  foot held up, not by a knee at hip height.
- a claim about several candidate people (no subject among several people, or an ambiguous one) is
  confirmed or contradicted only when every candidate agrees; otherwise it is unverifiable.

Other skeletons (pipeline.instances): a human one (COCO-17, CrowdPose-14) is checked through its MPII view,
and a visibility claim or a part mention through the skeleton's own joints (a COCO "head" is its face
joints). Crowd regions are not instances. For an animal or custom skeleton, counts (overall and per noun:
"two zebras"), positions and facing are checked (pipeline.animals); a human pose claim about an animal is
unverifiable and part mentions are not checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.animals import AnimalFacts
from pipeline.claims import Claim, ParsedDescription, Subject
from pipeline.geometry import (
    BENT_MIN,
    BOWED_HEAD_MIN,
    FOOT_LIFT_MIN,
    LYING_TORSO_MIN,
    SLIGHTLY_BENT_MIN,
    STRAIGHT_MIN,
    UPRIGHT_HEAD_MAX,
    UPRIGHT_TORSO_MAX,
    LimbFacts,
    PersonFacts,
)
from pipeline.instances import instances, native_joints, noun
from pipeline.records import MISSING, VISIBLE, ImageAnnotation

CONFIRMED, CONTRADICTED, UNVERIFIABLE = "confirmed", "contradicted", "unverifiable"
VERDICTS = (CONFIRMED, CONTRADICTED, UNVERIFIABLE)
ANGLE_MARGIN = 10.0
BEND_RANGES = {  # degrees at the elbow / knee, 180 = straight
    "straight": (STRAIGHT_MIN, 180.0),
    "nearly straight": (STRAIGHT_MIN - ANGLE_MARGIN, 180.0),  # "almost straight", "nearly fully extended"
    "slightly bent": (SLIGHTLY_BENT_MIN, STRAIGHT_MIN),
    "bent": (0.0, STRAIGHT_MIN),  # free text "bent" = not straight
    "sharply bent": (0.0, BENT_MIN),
}
# The rules describer's own "bent" is geometry's 70-125 band; it is a subset of "bent" above, so rules
# output is checked by the same, wider range.
TORSO_RANGES = {"upright": (0.0, UPRIGHT_TORSO_MAX), "leaning": (UPRIGHT_TORSO_MAX, LYING_TORSO_MIN),
                "horizontal": (LYING_TORSO_MIN, 180.0),
                "bent forward": (UPRIGHT_TORSO_MAX, 135.0)}  # fmt: skip  # flexed at the hips, to the toes
# Raised arms and hands, in torso lengths of the wrist above the shoulder (geometry's hand_height), and the
# elevation of the upper arm (degrees between torso and upper arm, geometry's shoulder angle):
ARM_MARGIN = 0.15  # a wrist this close to shoulder height on an arm held out (upper arm HALF_RAISED or more
HALF_RAISED = 45.0  # from the body) is at the threshold: neither "raised" nor "lowered" is contradicted
ELEVATED_MIN = 80.0  # an upper arm held level or higher, the hand no more than LEVEL_DROP below the
LEVEL_DROP = 0.25  # shoulder: an arm raised to shoulder height, as in a T pose
HAND_RAISED_MIN = -0.4  # a raised hand: at chest height or higher, on a bent arm too
HAND_LOWERED_MAX = -0.5  # a lowered hand: below the middle of the torso
# A part word of a claim -> the limb whose facts decide it ("left hand raised": the left arm's wrist).
LIMB_OF = {"left hand": "left arm", "right hand": "right arm"}


# The body parts coverage is counted over (the paper's template describes each of them for each person).
PARTS = ("left arm", "right arm", "left leg", "right leg", "torso", "head")
# Claims about the pose itself; count, position and visibility claims say nothing about a posture.
POSE_KINDS = (
    "state", "raised", "above_head", "bend", "torso", "head", "arms_crossed", "feet_apart", "facing",
)  # fmt: skip
Facts = PersonFacts | AnimalFacts  # per instance, as pipeline.instances.annotation_facts gives them


@dataclass(slots=True)
class Check:
    claim: Claim
    verdict: str
    evidence: str  # what the keypoints say, for the gallery's tooltips
    person: int | None = None  # 0-based index of the person checked, when exactly one


@dataclass(slots=True)
class DescriptionChecks:
    checks: list[Check] = field(default_factory=list)
    missing_joint_mentions: list[str] = field(
        default_factory=list
    )  # parts mentioned whose joints are all v=0

    def counts(self) -> Counter:
        return Counter(c.verdict for c in self.checks)


def candidates(subject: Subject, facts: list[Facts]) -> list[int] | None:
    """People a claim may be about: a list of indices, or None when the subject names nobody present."""
    n = len(facts)
    if subject is None:
        return list(range(n))
    if subject[0] == "index":
        k = subject[1] - 1
        return [k] if 0 <= k < n else None
    if subject[0] == "position":
        at = [i for i, f in enumerate(facts) if f.position == subject[1]]
        if n == 1:
            return [0]  # alone: "the person on the left" is where they stand in the frame, still them
        rank = subject[2]
        return [at[rank - 1]] if len(at) >= rank else None
    return []  # unresolved


def _in_range(value: float, lo: float, hi: float) -> bool:
    return lo - ANGLE_MARGIN <= value <= hi + ANGLE_MARGIN


def _check_animal(claim: Claim, f: AnimalFacts) -> tuple[str, str]:
    if claim.kind != "facing":
        return UNVERIFIABLE, "no human pose geometry for this skeleton"
    if f.facing is None:
        return UNVERIFIABLE, "facing not clear from the keypoints"
    return (CONFIRMED if f.facing == claim.value else CONTRADICTED), f"faces {f.facing}"


def _verdict(holds: bool, fails: bool) -> str:
    return CONFIRMED if holds else CONTRADICTED if fails else UNVERIFIABLE


def _check_raised(claim: Claim, limb: LimbFacts, elevation: float | None) -> tuple[str, str]:
    """A raised or lowered arm, hand or leg. A hand is raised at chest height or higher, whatever the arm
    does; an arm is raised when the wrist is above the shoulder (geometry) or the upper arm is level or
    higher, and a wrist within ARM_MARGIN of shoulder height decides neither way; a leg said to be planted
    is contradicted by its foot held up, not by a knee at hip height (seated, crouching)."""
    if claim.part in LIMB_OF:
        h = limb.hand_height
        if h is None:
            return UNVERIFIABLE, f"{claim.part}: height unknown"
        where = f"wrist {abs(h):.2f} torso lengths {'above' if h >= 0 else 'below'} the shoulder"
        up, down = h >= HAND_RAISED_MIN, h <= HAND_LOWERED_MAX
        return _verdict(up, down) if claim.value else _verdict(down, up), f"{claim.part}: {where}"
    if limb.raised is None:
        return UNVERIFIABLE, f"{limb.name}: raised unknown"
    evidence = f"{limb.name}: {'raised' if limb.raised else 'lowered'}"
    h = limb.hand_height
    if limb.name.endswith("arm"):
        e = -1.0 if elevation is None or h is None else elevation
        near = e >= HALF_RAISED and abs(h) < ARM_MARGIN  # an arm held out, the wrist about at shoulder height
        level = e >= ELEVATED_MIN and h > -LEVEL_DROP
        if claim.value:
            return _verdict(limb.raised or level, not near), evidence
        return _verdict(not limb.raised, not near), evidence
    if claim.value:
        return _verdict(limb.raised, True), evidence
    foot_up = limb.foot_lift is not None and limb.foot_lift > FOOT_LIFT_MIN
    return _verdict(not limb.raised, foot_up), evidence


def _check_head(claim: Claim, f: PersonFacts) -> tuple[str, str]:
    """Upright, tilted or bowed, read two ways: from the torso's direction and from the image vertical (a
    head in line with a leaning body is tilted in the picture). Upright holds when either reading is under
    UPRIGHT_HEAD_MAX and fails when both are ANGLE_MARGIN past it; tilted holds when either reaches it (a
    hedged "tilted slightly" when either reaches ANGLE_MARGIN less) and fails when both are that small;
    bowed holds when the head points down along the body and fails as tilted does."""
    readings = [a for a in (f.head_tilt, f.head_vertical) if a is not None]
    if not readings:
        return UNVERIFIABLE, "head posture unknown"
    said = [f"{a:.0f} deg from {w}" for a, w in ((f.head_tilt, "the torso"), (f.head_vertical, "vertical"))
            if a is not None]  # fmt: skip
    evidence = f"head {', '.join(said)} ({f.head or 'torso unknown'})"
    small = max(readings) < UPRIGHT_HEAD_MAX - ANGLE_MARGIN
    if claim.value == "upright":
        return _verdict(
            min(readings) < UPRIGHT_HEAD_MAX, min(readings) >= UPRIGHT_HEAD_MAX + ANGLE_MARGIN
        ), evidence
    if claim.value == "tilted":
        least = UPRIGHT_HEAD_MAX - (ANGLE_MARGIN if claim.hedged else 0.0)
        return _verdict(max(readings) >= least, small), evidence
    bowed = f.head_tilt is not None and f.head_tilt > BOWED_HEAD_MIN
    return _verdict(bowed, small), evidence


def _check_one(claim: Claim, f: Facts, kps: np.ndarray) -> tuple[str, str]:
    """One claim about one instance; kps: the instance's keypoints of the joints a visibility claim is about
    (its skeleton's joints, pipeline.instances.native_joints), empty for other claims."""
    kind = claim.kind
    if isinstance(f, AnimalFacts):
        return _check_animal(claim, f)
    if kind == "facing":
        return UNVERIFIABLE, "facing is not read for people"
    if kind == "state":
        if f.state == "unknown":
            return UNVERIFIABLE, "posture not resolved by the keypoints"
        return (
            CONFIRMED if f.state == claim.value else CONTRADICTED
        ), f"{f.state} ({f.state_confidence:.2f})"
    if kind in ("raised", "above_head", "bend"):
        part = LIMB_OF.get(claim.part, claim.part)
        limb = f.limbs[part]
        if kind == "bend":
            if limb.angle is None:
                return UNVERIFIABLE, f"{part}: angle unknown"
            ok = _in_range(limb.angle, *BEND_RANGES[claim.value])
            return (CONFIRMED if ok else CONTRADICTED), f"{part}: {limb.angle:.0f} deg ({limb.bend})"
        if kind == "raised":
            return _check_raised(claim, limb, f.angles.get(f"{part.split()[0]} shoulder"))
        if limb.above_head is None:
            return UNVERIFIABLE, f"{part}: above head unknown"
        word = "above head" if limb.above_head else "below head"
        return (CONFIRMED if limb.above_head == claim.value else CONTRADICTED), f"{part}: {word}"
    if kind == "torso":
        if f.torso_tilt is None:
            return UNVERIFIABLE, "torso unknown"
        ok = _in_range(f.torso_tilt, *TORSO_RANGES[claim.value])
        return (CONFIRMED if ok else CONTRADICTED), f"torso {f.torso_tilt:.0f} deg from vertical ({f.torso})"
    if kind == "head":
        return _check_head(claim, f)
    if kind in ("arms_crossed", "feet_apart"):
        fact = f.arms_crossed if kind == "arms_crossed" else f.feet_apart
        if fact is None:
            return UNVERIFIABLE, f"{kind.replace('_', ' ')} unknown"
        return (CONFIRMED if fact == claim.value else CONTRADICTED), f"{kind.replace('_', ' ')}: {fact}"
    if kind == "visible":
        v = kps[:, 2]
        if (v < VISIBLE).all():
            return CONFIRMED, f"{claim.part}: not marked visible"
        if (v == VISIBLE).all():
            return CONTRADICTED, f"{claim.part}: annotated visible"
        return UNVERIFIABLE, f"{claim.part}: partly visible"
    raise ValueError(f"unknown claim kind {kind!r}")


def _joints(claim: Claim, ann: ImageAnnotation) -> list[int]:
    """The image skeleton's joints a visibility claim is about (its MPII joints mapped)."""
    return list(native_joints(ann.skeleton, claim.joints)) if ann.skeleton.human else []


def counted(ann: ImageAnnotation, what: str | None) -> int:
    """How many instances a count claim is about: all of them, or those of one noun ("zebra")."""
    people = instances(ann)
    if what is None or what == ann.skeleton.subject:
        return len(people)
    return sum(noun(p, ann.skeleton) == what for p in people)


def check_claim(claim: Claim, ann: ImageAnnotation, facts: list[Facts]) -> Check:
    n = len(facts)
    if claim.kind == "count":
        have = counted(ann, claim.part)
        return Check(claim, CONFIRMED if claim.value == have else CONTRADICTED, f"{have} annotated")
    who = candidates(claim.subject, facts)
    if claim.kind == "position":
        if n < 2:
            return Check(claim, UNVERIFIABLE, "one person: no left/right among people")
        present = sorted({f.position for f in facts if f.position})
        return Check(
            claim,
            CONFIRMED if who else CONTRADICTED,
            f"positions: {', '.join(present)}",
            who[0] if who else None,
        )
    if not who:
        return Check(
            claim, UNVERIFIABLE, "the person meant cannot be told" if who == [] else "no such person"
        )
    people = instances(ann)
    joints = _joints(claim, ann) if claim.kind == "visible" else []
    results = [_check_one(claim, facts[i], people[i].keypoints[joints]) for i in who]
    verdicts = {v for v, _ in results}
    verdict = verdicts.pop() if len(verdicts) == 1 else UNVERIFIABLE
    evidence = (
        results[0][1]
        if len(who) == 1
        else "; ".join(f"person {i + 1}: {e}" for i, (_, e) in zip(who, results, strict=True))
    )
    return Check(claim, verdict, evidence, who[0] if len(who) == 1 else None)


def check_description(
    parsed: ParsedDescription, ann: ImageAnnotation, facts: list[Facts]
) -> DescriptionChecks:
    out = DescriptionChecks(checks=[check_claim(c, ann, facts) for c in parsed.claims])
    if not ann.skeleton.human:
        return out  # the parsed parts are human limbs: nothing to look up in an animal's joints
    people = instances(ann)
    for m in parsed.mentions:
        if m.says_invisible:
            continue
        who = candidates(m.subject, facts)
        joints = list(native_joints(ann.skeleton, m.joints))
        if who and all((people[i].keypoints[joints, 2] == MISSING).all() for i in who):
            out.missing_joint_mentions.append(m.part)
    return out


def annotated_parts(facts: list[Facts]) -> set[str]:
    """The PARTS geometry has a fact about for some person that a description would state: what it could
    cover. A leg known only to be not lifted does not count (a planted leg goes unsaid, by the rules
    describer too). Animals have none of these human parts."""
    out = set()
    for f in facts:
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
    return out


def decided(checks: DescriptionChecks, kinds: tuple[str, ...] = POSE_KINDS) -> list[Check]:
    """The confirmed or contradicted checks of the given claim kinds."""
    return [c for c in checks.checks if c.verdict != UNVERIFIABLE and c.claim.kind in kinds]


def covered_parts(checks: DescriptionChecks) -> set[str]:
    """The PARTS with at least one decided claim ("both arms" claims cover each arm, a hand's its arm)."""
    parts = {LIMB_OF.get(c.claim.part, c.claim.part) for c in decided(checks)}
    return parts & set(PARTS)


def coverage_summary(rows: list[tuple[DescriptionChecks | None, set[str]]], agreement: float | None) -> dict:
    """How much of the annotated poses a source's descriptions speak to, and the headline score.

    rows: per description of an annotated image (every status), its checks (None when it was not usable)
    and the annotated_parts of its image. A description with no decided pose claim covers nothing, so a set
    of empty or off-topic replies scores 0 whatever its agreement: score = agreement x part coverage.
    """
    n = len(rows)
    with_claim = sum(bool(c and decided(c)) for c, _ in rows)
    annotated = sum(len(parts) for _, parts in rows)
    covered = sum(len(covered_parts(c) & parts) for c, parts in rows if c)
    part_coverage = covered / annotated if annotated else None
    return {
        "descriptions": n,
        "with_checked_claim": with_claim / n if n else None,
        "part_coverage": part_coverage,
        "score": (agreement or 0.0) * part_coverage if part_coverage is not None else None,
    }


def faithfulness_summary(results: list[DescriptionChecks]) -> dict:
    """Agreement of one source: totals, per claim kind, and the description-level shares."""
    total: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    with_contradiction = with_missing = 0
    for r in results:
        for c in r.checks:
            total[c.verdict] += 1
            by_kind.setdefault(c.claim.kind, Counter())[c.verdict] += 1
        with_contradiction += any(c.verdict == CONTRADICTED for c in r.checks)
        with_missing += bool(r.missing_joint_mentions)

    def rate(c: Counter) -> float | None:
        decided = c[CONFIRMED] + c[CONTRADICTED]
        return c[CONFIRMED] / decided if decided else None

    n = len(results)
    return {
        "descriptions": n,
        "claims": sum(total.values()),
        "claims_per_description": sum(total.values()) / n if n else None,
        **{v: total[v] for v in VERDICTS},
        "agreement": rate(total),
        "verifiable_share": (total[CONFIRMED] + total[CONTRADICTED]) / sum(total.values()) if total else None,
        "with_contradiction": with_contradiction / n if n else None,
        "mentions_missing_joint": with_missing / n if n else None,
        "by_kind": {
            k: {**{v: c[v] for v in VERDICTS}, "agreement": rate(c)} for k, c in sorted(by_kind.items())
        },
    }
