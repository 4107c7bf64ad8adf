"""The regular expressions and word tables pipeline.claims reads a description with: counts, subjects
(who a claim is about), body-part mentions and the joints each presumes known, and the things a posture
verb may be said of. The posture predicates' own words are pipeline.pose_words'.

    PEOPLE_SUBJECTS.adj.search("the left person is standing")      # "the left person"
    noun_patterns(("zebra", "animal")).count.search("two zebras")   # group 1 "two", group 2 "zebras"
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

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
from pipeline.instances import plural
from pipeline.lexicon import ANIMALS_AND_THINGS, WORD_CLASSES

NUMBERS = {
    "no": 0, "zero": 0, "one": 1, "a single": 1, "single": 1, "a lone": 1, "lone": 1, "only one": 1,
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12,
}  # fmt: skip
PERSON = r"(?:person|individual|figure|man|woman|boy|girl|child|kid|player|athlete|subject|adult|one)"
PEOPLE = r"(?:people|persons|individuals|figures|men|women|boys|girls|children|kids|players|athletes|adults)"
NUM = r"(?:\d+|" + "|".join(sorted((k for k in NUMBERS if " " not in k), key=len, reverse=True)) + ")"

COUNT_PLURAL = re.compile(rf"\b({NUM})\s+(?:[a-z-]+\s+)?{PEOPLE}\b", re.I)
COUNT_SINGLE = re.compile(rf"\b(a single|a lone|only one|one|single|lone|1)\s+{PERSON}\b", re.I)
ACTIVITY_CLAUSE = re.compile(
    r"\b(?:the\s+)?activity\s+(?:is|:|of|appears to be|being performed is)\b[^.;\n]*", re.I
)

POS = r"(left|right|center|centre|middle|leftmost|rightmost|central)"
DET = r"(the|a|an|another|other|one|second|third|fourth|fifth)"


NOT_A_LIMB = r"(?!\s+(?:arm|leg|hand|foot|elbow|knee|wrist|ankle|shoulder|hip|head)s?\b)"
CLAUSE_HEAD = r"(?:^|(?<=[.;:!?\n]))\s*"  # at the start of the text or of a sentence / list item


@dataclass(frozen=True, slots=True)
class SubjectPatterns:
    """How a description names one instance, for words `one` naming it ("person", "zebra")."""

    adj: re.Pattern  # "the left person", "the far right player", "another leftmost one"
    prep: re.Pattern  # "the person on the left", "another person standing on the right"
    index: re.Pattern  # "person 3", "player #2"
    ordinal: re.Pattern  # "the second person", "the other person": which one is not said
    fronted: re.Pattern  # "On the right, one person stands ...", "Person on the left: seated", "Left: ..."
    others: re.Pattern  # "the others", "the other two": several people, none named

    @classmethod
    def for_words(cls, one: str) -> SubjectPatterns:
        return cls(
            adj=re.compile(rf"\b(?:{DET}\s+)?(?:(?:far|other)\s+)?{POS}(?:-most)?\s+{one}\b", re.I),
            prep=re.compile(
                rf"\b{DET}\s+(?:other\s+)?{one}\b,?\s+(?:(?:who\s+is|who's|standing|sitting|seated|lying)\s+)?"
                rf"(?:on|to|at|in)\s+the\s+(?:far\s+)?{POS}\b",
                re.I,
            ),
            index=re.compile(rf"\b{one}\s*(?:#|no\.?\s*)?(\d+)\b", re.I),
            ordinal=re.compile(rf"\b(?:the\s+)?(first|second|third|fourth|fifth|other)\s+{one}\b", re.I),
            fronted=re.compile(
                rf"{CLAUSE_HEAD}(?:(?:on|to|at|in)\s+the\s+(?:far\s+)?{POS}\s*,\s*(?:{DET}\s+)?"
                rf"(?:other\s+)?{one}\b{NOT_A_LIMB}|{one}\s+(?:on|to|at|in)\s+the\s+(?:far\s+)?{POS}\b|"
                rf"{POS}\s*:)",
                re.I,
            ),
            others=re.compile(
                r"\b(?:the\s+)?others\b|\bthe\s+other\s+(?:two|three|four|five|ones|people|persons)\b", re.I
            ),
        )


PEOPLE_SUBJECTS = SubjectPatterns.for_words(PERSON)
# How many people an ordinal or determiner implies ("a second person": at least two).
IMPLIED = {"first": 1, "another": 2, "other": 2, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
# Animals (parse_claims(human=False)): which side of the image the instance faces or moves to. "to its
# left" is left out on purpose: the animal's own side, not the image's.
FACING = re.compile(
    r"\b(?:fac(?:es|ing|ed)|turned|looking|looks|heading|heads|walking|walks|moving|moves|pointing|points|"
    r"oriented)\s+(?:(?:to(?:wards?)?|toward)\s+)?(?:the\s+)?(left|right)\b"
    r"(?!\s+(?:front|back|hind|fore|arm|leg|paw|ear|eye|hip|shoulder|elbow|knee)s?\b)",
    re.I,
)


@dataclass(frozen=True, slots=True)
class NounPatterns:
    """Patterns for the words naming an image's instances beyond the people words (species, "animal")."""

    subjects: SubjectPatterns
    count: re.Pattern  # "two zebras", "a single jaguar": group 1 the number, group 2 the noun
    forms: dict[str, str]  # singular and plural forms (lower case, single spaces) -> the noun


@functools.lru_cache(maxsize=256)
def noun_patterns(nouns: tuple[str, ...]) -> NounPatterns:
    forms = {f: n for n in nouns for f in (n.lower(), plural(n).lower())}
    alt = "|".join(r"\s+".join(map(re.escape, f.split())) for f in sorted(forms, key=len, reverse=True))
    return NounPatterns(
        subjects=SubjectPatterns.for_words(f"(?:{PERSON[3:-1]}|{alt})"),
        count=re.compile(rf"\b(a single|a lone|only one|{NUM})\s+(?:[a-z-]+\s+)?({alt})\b", re.I),
        forms=forms,
    )


SIDE = r"(left|right)"
LIMB_WORD = r"(arm|leg|hand|foot|elbow|knee|wrist|ankle|shoulder|hip|forearm|thigh|shin)s?"
PART_SIDED = re.compile(rf"\b{SIDE}\s+{LIMB_WORD}\b", re.I)
PART_BOTH = re.compile(r"\b(?:both|their|his|her|the)\s+(arms|legs|hands)\b", re.I)
PART_BODY = re.compile(r"\b(torso|upper body|back|head)\b", re.I)
BACK_AS_PART = re.compile(r"(?:the|their|his|her)\s+$", re.I)  # "their back", not "leaning back"
# "above their head" is where an arm is, not a statement about the head.
HEAD_AS_PLACE = re.compile(
    r"\b(?:above|over|behind|overhead|toward|towards|to|on|near|beside|of)\s+"
    r"(?:the|their|his|her|its)\s+$",
    re.I,
)
SENTENCE_END = re.compile(r"[.;!?\n]")
JOINER = re.compile(r"^\s*(?:,|and|, and|as well as|&|or)?\s*(?:the|their|his|her)?\s*$", re.I)
LIST_WORD = re.compile(r"\b(?:and|or|as well as)\b|&", re.I)

# What a part mention is about: its limb (for limb claims) and the joints it needs.
SIDED_JOINTS = {
    "arm": ("arm", None), "hand": ("arm", "wrist"), "wrist": ("arm", "wrist"), "elbow": ("arm", "elbow"),
    "forearm": ("arm", "forearm"), "shoulder": (None, "shoulder"), "leg": ("leg", None),
    "foot": ("leg", "ankle"),
    "ankle": ("leg", "ankle"), "knee": ("leg", "knee"), "thigh": ("leg", "thigh"), "shin": ("leg", "shin"),
    "hip": (None, "hip"),
}  # fmt: skip
JOINT_INDEX = {
    ("left", "wrist"): (L_WRIST,), ("right", "wrist"): (R_WRIST,), ("left", "elbow"): (L_ELBOW,),
    ("right", "elbow"): (R_ELBOW,), ("left", "forearm"): (L_ELBOW, L_WRIST),
    ("right", "forearm"): (R_ELBOW, R_WRIST),
    ("left", "shoulder"): (L_SHOULDER,), ("right", "shoulder"): (R_SHOULDER,), ("left", "ankle"): (L_ANKLE,),
    ("right", "ankle"): (R_ANKLE,), ("left", "knee"): (L_KNEE,), ("right", "knee"): (R_KNEE,),
    ("left", "thigh"): (L_HIP, L_KNEE), ("right", "thigh"): (R_HIP, R_KNEE),
    ("left", "shin"): (L_KNEE, L_ANKLE),
    ("right", "shin"): (R_KNEE, R_ANKLE), ("left", "hip"): (L_HIP,), ("right", "hip"): (R_HIP,),
}  # fmt: skip
HAND_LABELS = ("hand", "hands", "wrist", "wrists", "forearm", "forearms")
BODY_JOINTS = {
    "torso": (THORAX, PELVIS),
    "upper body": (THORAX, PELVIS),
    "back": (THORAX, PELVIS),
    "head": (NECK, HEAD),
}


# A posture verb said of a thing, not of the instance: "papers are lying on the desk", "a ball is lying at her
# feet while she stands", "two bikes stand against the wall" (descriptions of photographs name such things).
# The clause before the verb names one of these words and no person; the instances' own nouns never count.
THINGS = WORD_CLASSES["objects"] | WORD_CLASSES["clothes"] | ANIMALS_AND_THINGS
# A thing word ending the clause but for "is", "are", ... ("the ball is just "), read backwards: the pattern
# \b(thing)\s+(?:(?:is|are|was|were|also|still|just)\s+)*$ matched on the reversed clause from its start, the
# same match without trying a 186-word alternation at every position of the clause (thing_subject).
_THINGS_REVERSED = "|".join(sorted((w[::-1] for w in THINGS), key=len, reverse=True))
_THING_SUBJECT_REVERSED = re.compile(
    rf"\s+(?:(?:si|era|saw|erew|osla|llits|tsuj)\s+)*({_THINGS_REVERSED})\b", re.I
)


def thing_subject(clause: str) -> str | None:
    """The thing word a clause ends on, but for "is", "are", ... ("papers are " -> "papers"), else None."""
    m = _THING_SUBJECT_REVERSED.match(clause[::-1])
    return m.group(1)[::-1] if m else None


CLAUSE_START = re.compile(r".*(?:[.;:!?,\n]|\b(?:while|whilst|whereas|but|and|as|with)\b)", re.I | re.S)
PERSONISH = re.compile(rf"\b(?:{PERSON}|{PEOPLE}|he|she|they|him|them|someone|somebody)\b", re.I)
