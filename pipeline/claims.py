"""What a pose description claims, parsed with transparent regular-expression rules (no language model).

    parsed = parse_claims("Two people. The person on the left is standing. Their left arm is raised.")
    [(c.kind, c.subject, c.part, c.value) for c in parsed.claims]
    # [('count', None, None, 2), ('position', ('position', 'left', 1), None, 'left'),
    #  ('state', ('position', 'left', 1), None, 'standing'),
    #  ('raised', ('position', 'left', 1), 'left arm', True)]

The rules, in the order they are applied (every pattern is a module-level constant below, or, for an
image's own nouns, built from them by _nouns):

1. Masking. The image's activity label and category (MPII activities such as "standing, talking in
   person" or "eating, sitting" would otherwise read as postures) and any "the activity is ..." clause
   are blanked out, keeping character offsets.
2. Count. The first "<number> people/persons/individuals/..." (or "a single/one/lone person", "no
   people") is the number of people the description claims. Given the nouns of an image's instances
   (parse_annotated: "zebra", "animal"), the first "<number> <noun>" of each noun ("two zebras", "a single
   jaguar") is a count claim about that noun (Claim.part).
3. Subjects. "the left person", "the person on the left", "the leftmost player", "another person on the
   right", "person 3", and at the head of a sentence "On the right, one person ...", "Person on the left:",
   "Left: ...". A claim belongs to the last subject mentioned before it; before any subject (or "the
   person") it belongs to the only person, or to every person when there are several. "the ..." keeps the
   rank of that position (first person there), "another"/"a second" moves to the next one at the same
   position (how the rules describer and most people enumerate). An ordinal with no position ("the second
   person") or "the others" makes the subject unresolved until the next subject. Each positional subject is
   also a "position" claim: that position exists among the people; "another" and ordinals also say how many
   people there are at least (people_implied: "a second person" for one is an invented person). The image's
   nouns name subjects too ("the zebra on the left", "zebra 2").
4. Posture. standing / sitting (seated) / lying (reclining), unless negated ("not", "n't" just before).
5. Parts. "left arm", "right knee", "both legs", "their hands", "torso", "head": each mention opens a
   segment that runs to the next part or subject mention or the end of the sentence. Parts listed with "and"
   share the predicates that follow ("their left arm and right leg are raised"); a bare comma between two
   parts separates clauses. The words of each predicate are pipeline.pose_words': raised / lowered (a raise
   whose subject is a hand, wrist or forearm, "the hand raised to the chest", is the hand's: part "left
   hand"), above the head, straight / nearly straight / slightly bent / bent / sharply bent (elbow, knee,
   hand, foot map to their limb), torso upright / leaning / bent forward / horizontal, head upright / tilted
   / bowed (hedged: "tilted slightly"), and "not visible / occluded / out of frame" (a visibility claim that
   replaces every other claim of that segment). A claim about both limbs gives way to one about a single
   limb in the same sentence ("both arms are extended, the left elbow slightly bent").
6. Whole-body phrases: "arms crossed/folded", "feet apart / wide stance" vs "feet together".
7. Joint mentions: every part mention is recorded with its joints (the faithfulness check flags a mention
   of a part whose joints are all unannotated, unless the segment says it is not visible).
8. Facing (animal and custom skeletons only, human=False): "facing / turned / looking / walking / moving
   (towards) (the) left|right" says which side of the image the instance faces, unless negated; not "to
   its left" (its own side) nor "moving the left front leg".

Joints are MPII's (pipeline.geometry); pipeline.instances maps them onto the image's skeleton.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline import pose_words
from pipeline.geometry import (
    HEAD,
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    LIMB_JOINTS,
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
from pipeline.instances import claim_nouns, plural
from pipeline.lexicon import ANIMALS_AND_THINGS, WORD_CLASSES
from pipeline.records import ImageAnnotation

# A subject: None (unspecified), ("position", "left" | "center" | "right", rank >= 1), ("index", n >= 1)
# or ("unresolved",).
Subject = tuple | None

NUMBERS = {
    "no": 0, "zero": 0, "one": 1, "a single": 1, "single": 1, "a lone": 1, "lone": 1, "only one": 1,
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12,
}  # fmt: skip
_PERSON = r"(?:person|individual|figure|man|woman|boy|girl|child|kid|player|athlete|subject|adult|one)"
_PEOPLE = r"(?:people|persons|individuals|figures|men|women|boys|girls|children|kids|players|athletes|adults)"
_NUM = r"(?:\d+|" + "|".join(sorted((k for k in NUMBERS if " " not in k), key=len, reverse=True)) + ")"

COUNT_PLURAL = re.compile(rf"\b({_NUM})\s+(?:[a-z-]+\s+)?{_PEOPLE}\b", re.I)
COUNT_SINGLE = re.compile(rf"\b(a single|a lone|only one|one|single|lone|1)\s+{_PERSON}\b", re.I)
ACTIVITY_CLAUSE = re.compile(
    r"\b(?:the\s+)?activity\s+(?:is|:|of|appears to be|being performed is)\b[^.;\n]*", re.I
)

_POS = r"(left|right|center|centre|middle|leftmost|rightmost|central)"
_DET = r"(the|a|an|another|other|one|second|third|fourth|fifth)"


_NOT_A_LIMB = r"(?!\s+(?:arm|leg|hand|foot|elbow|knee|wrist|ankle|shoulder|hip|head)s?\b)"
_CLAUSE_HEAD = r"(?:^|(?<=[.;:!?\n]))\s*"  # at the start of the text or of a sentence / list item


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
            adj=re.compile(rf"\b(?:{_DET}\s+)?(?:(?:far|other)\s+)?{_POS}(?:-most)?\s+{one}\b", re.I),
            prep=re.compile(
                rf"\b{_DET}\s+(?:other\s+)?{one}\b,?\s+(?:(?:who\s+is|who's|standing|sitting|seated|lying)\s+)?"
                rf"(?:on|to|at|in)\s+the\s+(?:far\s+)?{_POS}\b",
                re.I,
            ),
            index=re.compile(rf"\b{one}\s*(?:#|no\.?\s*)?(\d+)\b", re.I),
            ordinal=re.compile(rf"\b(?:the\s+)?(first|second|third|fourth|fifth|other)\s+{one}\b", re.I),
            fronted=re.compile(
                rf"{_CLAUSE_HEAD}(?:(?:on|to|at|in)\s+the\s+(?:far\s+)?{_POS}\s*,\s*(?:{_DET}\s+)?"
                rf"(?:other\s+)?{one}\b{_NOT_A_LIMB}|{one}\s+(?:on|to|at|in)\s+the\s+(?:far\s+)?{_POS}\b|"
                rf"{_POS}\s*:)",
                re.I,
            ),
            others=re.compile(
                r"\b(?:the\s+)?others\b|\bthe\s+other\s+(?:two|three|four|five|ones|people|persons)\b", re.I
            ),
        )


PEOPLE_SUBJECTS = SubjectPatterns.for_words(_PERSON)
# How many people an ordinal or determiner implies ("a second person": at least two).
_IMPLIED = {"first": 1, "another": 2, "other": 2, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
# Animals (parse_claims(human=False)): which side of the image the instance faces or moves to. "to its
# left" is left out on purpose: the animal's own side, not the image's.
FACING = re.compile(
    r"\b(?:fac(?:es|ing|ed)|turned|looking|looks|heading|heads|walking|walks|moving|moves|pointing|points|"
    r"oriented)\s+(?:(?:to(?:wards?)?|toward)\s+)?(?:the\s+)?(left|right)\b"
    r"(?!\s+(?:front|back|hind|fore|arm|leg|paw|ear|eye|hip|shoulder|elbow|knee)s?\b)",
    re.I,
)


@dataclass(frozen=True, slots=True)
class _Nouns:
    """Patterns for the words naming an image's instances beyond the people words (species, "animal")."""

    subjects: SubjectPatterns
    count: re.Pattern  # "two zebras", "a single jaguar": group 1 the number, group 2 the noun
    forms: dict[str, str]  # singular and plural forms (lower case, single spaces) -> the noun


@functools.lru_cache(maxsize=256)
def _nouns(nouns: tuple[str, ...]) -> _Nouns:
    forms = {f: n for n in nouns for f in (n.lower(), plural(n).lower())}
    alt = "|".join(r"\s+".join(map(re.escape, f.split())) for f in sorted(forms, key=len, reverse=True))
    return _Nouns(
        subjects=SubjectPatterns.for_words(f"(?:{_PERSON[3:-1]}|{alt})"),
        count=re.compile(rf"\b(a single|a lone|only one|{_NUM})\s+(?:[a-z-]+\s+)?({alt})\b", re.I),
        forms=forms,
    )


_SIDE = r"(left|right)"
_LIMB_WORD = r"(arm|leg|hand|foot|elbow|knee|wrist|ankle|shoulder|hip|forearm|thigh|shin)s?"
PART_SIDED = re.compile(rf"\b{_SIDE}\s+{_LIMB_WORD}\b", re.I)
PART_BOTH = re.compile(r"\b(?:both|their|his|her|the)\s+(arms|legs|hands)\b", re.I)
PART_BODY = re.compile(r"\b(torso|upper body|back|head)\b", re.I)
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
_SIDED_JOINTS = {
    "arm": ("arm", None), "hand": ("arm", "wrist"), "wrist": ("arm", "wrist"), "elbow": ("arm", "elbow"),
    "forearm": ("arm", "forearm"), "shoulder": (None, "shoulder"), "leg": ("leg", None),
    "foot": ("leg", "ankle"),
    "ankle": ("leg", "ankle"), "knee": ("leg", "knee"), "thigh": ("leg", "thigh"), "shin": ("leg", "shin"),
    "hip": (None, "hip"),
}  # fmt: skip
_JOINT_INDEX = {
    ("left", "wrist"): (L_WRIST,), ("right", "wrist"): (R_WRIST,), ("left", "elbow"): (L_ELBOW,),
    ("right", "elbow"): (R_ELBOW,), ("left", "forearm"): (L_ELBOW, L_WRIST),
    ("right", "forearm"): (R_ELBOW, R_WRIST),
    ("left", "shoulder"): (L_SHOULDER,), ("right", "shoulder"): (R_SHOULDER,), ("left", "ankle"): (L_ANKLE,),
    ("right", "ankle"): (R_ANKLE,), ("left", "knee"): (L_KNEE,), ("right", "knee"): (R_KNEE,),
    ("left", "thigh"): (L_HIP, L_KNEE), ("right", "thigh"): (R_HIP, R_KNEE),
    ("left", "shin"): (L_KNEE, L_ANKLE),
    ("right", "shin"): (R_KNEE, R_ANKLE), ("left", "hip"): (L_HIP,), ("right", "hip"): (R_HIP,),
}  # fmt: skip
_HAND_LABELS = ("hand", "hands", "wrist", "wrists", "forearm", "forearms")
_BODY_JOINTS = {
    "torso": (THORAX, PELVIS),
    "upper body": (THORAX, PELVIS),
    "back": (THORAX, PELVIS),
    "head": (NECK, HEAD),
}


@dataclass(slots=True)
class Claim:
    # count | position | state | raised | above_head | bend | torso | head | arms_crossed | feet_apart |
    # visible | facing
    kind: str
    value: object  # int (count), str (state, bend, torso, head, position, facing), bool (the rest)
    subject: Subject = None
    # "left arm", ..., "torso", "head"; "left hand" / "right hand" for a raised or lowered hand (its wrist's
    # height, on a bent arm too); the label for "visible"; for "count", the noun counted ("zebra") when it
    # is not the people words
    part: str | None = None
    start: int = 0  # character span of the words that make the claim
    end: int = 0
    joints: tuple[int, ...] = ()  # for "visible": the joints the claim is about
    hedged: bool = False  # a head posture said with "slightly", "a little", ...: a small amount

    @property
    def label(self) -> str:
        part = f"{self.part} " if self.part else ""
        return f"{part}{self.kind}={self.value}"


@dataclass(slots=True)
class Mention:
    """A body part the description talks about, with the joints that talking about it presumes known."""

    part: str
    joints: tuple[int, ...]
    subject: Subject
    start: int
    end: int
    says_invisible: bool = False


@dataclass(slots=True)
class ParsedDescription:
    claims: list[Claim] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    people_implied: int = 0  # the fewest people the subject words imply ("a second person": 2)


def _mask(text: str, phrases: list[str]) -> str:
    """Blank out (same length) every occurrence of the phrases and of 'the activity is ...' clauses."""
    out = text
    for phrase in sorted({p.strip() for p in phrases if p and p.strip()}, key=len, reverse=True):
        out = re.sub(re.escape(phrase), lambda m: " " * len(m.group(0)), out, flags=re.I)
    return ACTIVITY_CLAUSE.sub(lambda m: " " * len(m.group(0)), out)


def _negated(text: str, start: int) -> bool:
    return bool(pose_words.NEGATION.search(text[max(0, start - 24) : start]))


def _norm_pos(word: str) -> str:
    w = word.lower()
    return {"leftmost": "left", "rightmost": "right", "centre": "center", "middle": "center",
            "central": "center"}.get(w, w)  # fmt: skip


def _subjects(text: str, patterns: SubjectPatterns = PEOPLE_SUBJECTS) -> list[tuple[int, int, str, object]]:
    """(start, end, kind, value) of every subject mention, earliest first, overlaps resolved by priority."""
    found: list[tuple[int, int, str, object]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b, _, _ in found)

    def add(m: re.Match, kind: str, value: object) -> None:
        start = m.start() + len(m.group(0)) - len(m.group(0).lstrip())  # the fronted pattern's spaces
        if free(start, m.end()):
            found.append((start, m.end(), kind, value))

    for m in patterns.prep.finditer(text):
        add(m, "position", (m.group(1).lower(), _norm_pos(m.group(2))))
    for m in patterns.fronted.finditer(text):
        add(m, "position", ((m.group(2) or "the").lower(), _norm_pos(m.group(1) or m.group(3) or m.group(4))))
    for m in patterns.adj.finditer(text):
        add(m, "position", ((m.group(1) or "the").lower(), _norm_pos(m.group(2))))
    for m in patterns.index.finditer(text):
        add(m, "index", int(m.group(1)))
    for m in patterns.ordinal.finditer(text):
        add(m, "unresolved", m.group(1).lower())
    for m in patterns.others.finditer(text):
        add(m, "unresolved", "others")
    return sorted(found)


def _implied_people(raw: list[tuple[int, int, str, object]]) -> int:
    """The fewest people the subject words imply: "a second person", "another person on the right" 2."""
    words = [v[0] if kind == "position" else v for _, _, kind, v in raw if kind != "index"]
    return max((_IMPLIED.get(w, 0) for w in words), default=0)


def _resolve_subjects(raw: list[tuple[int, int, str, object]]) -> list[tuple[int, int, Subject]]:
    ranks: dict[str, int] = {}
    out = []
    for start, end, kind, value in raw:
        if kind == "position":
            det, pos = value
            if det in ("another", "other", "second", "third", "fourth", "fifth"):
                ranks[pos] = ranks.get(pos, 0) + 1
            else:
                ranks.setdefault(pos, 1)
            out.append((start, end, ("position", pos, ranks[pos])))
        elif kind == "index":
            out.append((start, end, ("index", value)))
        else:
            out.append((start, end, ("unresolved",)))
    return out


def _subject_at(subjects: list[tuple[int, int, Subject]], pos: int) -> Subject:
    current = None
    for start, _, subj in subjects:
        if start > pos:
            break
        current = subj
    return current


def _parts(text: str) -> list[tuple[int, int, list[str], str]]:
    """(start, end, limb-or-body-part names, mention label) of every body-part mention."""
    out = []
    for m in PART_SIDED.finditer(text):
        side, word = m.group(1).lower(), m.group(2).lower()
        limb, _ = _SIDED_JOINTS[word]
        out.append((m.start(), m.end(), [f"{side} {limb}"] if limb else [], f"{side} {word}"))
    for m in PART_BOTH.finditer(text):
        word = m.group(1).lower()
        limb = "arm" if word == "hands" else word[:-1]
        out.append((m.start(), m.end(), [f"left {limb}", f"right {limb}"], f"both {word}"))
    for m in PART_BODY.finditer(text):
        word = m.group(1).lower()
        if word == "head" and HEAD_AS_PLACE.search(text[max(0, m.start() - 30) : m.start()]):
            continue
        if word == "back" and not re.search(
            r"(?:the|their|his|her)\s+$", text[max(0, m.start() - 8) : m.start()], re.I
        ):
            continue  # "tilted back", "leaning back": not the body part
        out.append((m.start(), m.end(), ["head" if word == "head" else "torso"], word))
    out.sort()
    # Drop mentions inside another (e.g. "arms" within "arms crossed" is kept; nothing nests today).
    return out


def _mention_joints(label: str) -> tuple[int, ...]:
    words = label.split()
    if words[0] in ("left", "right"):
        limb, joint = _SIDED_JOINTS[words[1]]
        if joint is None:
            return LIMB_JOINTS[f"{words[0]} {limb}"]
        return _JOINT_INDEX[(words[0], joint)]
    if words[0] == "both":
        if words[1] == "hands":
            return L_WRIST, R_WRIST
        limb = words[1][:-1]
        return LIMB_JOINTS[f"left {limb}"] + LIMB_JOINTS[f"right {limb}"]
    return _BODY_JOINTS[label]


def _first(pattern: re.Pattern, text: str) -> re.Match | None:
    for m in pattern.finditer(text):
        if not _negated(text, m.start()):
            return m
    return None


def _segment_claims(
    seg: str, offset: int, parts: list[str], subject: Subject, label: str
) -> tuple[list[Claim], bool]:
    """Claims of one part segment, and whether it says the part is not visible."""
    claims: list[Claim] = []

    def span(m: re.Match) -> tuple[int, int]:
        return offset + m.start(), offset + m.end()

    inv = pose_words.INVISIBLE.search(seg)
    if inv:
        s, e = span(inv)
        claims.append(Claim("visible", False, subject, label, s, e, joints=_mention_joints(label)))
        return claims, True
    for part in parts:
        if part in ("torso", "head"):
            pattern, levels, default = (
                (pose_words.TORSO, pose_words.TORSO_LEVEL, "leaning")
                if part == "torso"
                else (pose_words.HEAD_WORDS, pose_words.HEAD_LEVEL, None)
            )
            m = _first(pattern, seg)
            if m:
                value = levels.get(" ".join(m.group(1).lower().split()), default)
                hedged = part == "head" and bool(
                    pose_words.HEDGE.search(seg, max(0, m.start() - 20), m.end() + 20)
                )
                if value:
                    claims.append(Claim(part, value, subject, part, *span(m), hedged=hedged))
            continue
        is_arm = part.endswith("arm")
        up, down = (
            (pose_words.RAISED_ARM, pose_words.LOWERED_ARM)
            if is_arm
            else (pose_words.RAISED_LEG, pose_words.LOWERED_LEG)
        )
        m_up, m_down = _first(up, seg), _first(down, seg)
        m_lift = m_up if m_up and (not m_down or m_up.start() <= m_down.start()) else m_down
        if m_lift:
            # "the right hand raised to the chest", "the arm bent, the hand lifted to the face": the hand
            hand = is_arm and (
                label.split()[-1] in _HAND_LABELS or pose_words.HAND_WORD.search(seg, 0, m_lift.start())
            )
            said = part.replace("arm", "hand") if hand else part
            claims.append(Claim("raised", m_lift is m_up, subject, said, *span(m_lift)))
        if is_arm and (m := _first(pose_words.ABOVE_HEAD, seg)):
            claims.append(Claim("above_head", True, subject, part, *span(m)))
        m = _first(pose_words.BEND, seg)
        if m:
            claims.append(Claim("bend", pose_words.bend_level(m.group(1)), subject, part, *span(m)))
    return claims, False


def _number(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else NUMBERS[word]


def _count_claims(t: str, extra: _Nouns | None) -> list[Claim]:
    """The first people count, and the first count of each instance noun ("two zebras")."""
    out = []
    counts = [(m.start(), m.end(), m.group(1)) for m in COUNT_PLURAL.finditer(t)]
    counts += [(m.start(), m.end(), m.group(1)) for m in COUNT_SINGLE.finditer(t)]
    if counts:
        s, e, word = min(counts)
        out.append(Claim("count", _number(word), None, None, s, e))
    seen: set[str] = set()
    for m in extra.count.finditer(t) if extra else ():
        noun = extra.forms[" ".join(m.group(2).lower().split())]
        if noun not in seen:  # the first count of each noun, as for people
            seen.add(noun)
            out.append(Claim("count", _number(m.group(1)), None, noun, m.start(), m.end()))
    return out


def _whole_body_claims(t: str, subjects: list) -> tuple[list[Claim], list[tuple[int, int]]]:
    """Arms crossed / feet apart or together, and the spans they take."""
    out, taken = [], []
    for pattern, kind, value in (
        (pose_words.ARMS_CROSSED, "arms_crossed", True),
        (pose_words.FEET_APART, "feet_apart", True),
        (pose_words.FEET_TOGETHER, "feet_apart", False),
    ):
        for m in pattern.finditer(t):
            if not _negated(t, m.start()):
                out.append(Claim(kind, value, _subject_at(subjects, m.start()), None, m.start(), m.end()))
                taken.append((m.start(), m.end()))
    return out, taken


def _state_word(word: str) -> str:
    word = word.lower()
    return "standing" if word.startswith("stand") else "lying" if word[0] in "lr" else "sitting"


# A posture verb said of a thing, not of the instance: "papers are lying on the desk", "a ball is lying at her
# feet while she stands", "two bikes stand against the wall" (descriptions of photographs name such things).
# The clause before the verb names one of these words and no person; the instances' own nouns never count.
_THINGS = WORD_CLASSES["objects"] | WORD_CLASSES["clothes"] | ANIMALS_AND_THINGS
_THING_SUBJECT = re.compile(
    rf"\b({'|'.join(sorted(_THINGS, key=len, reverse=True))})\s+(?:(?:is|are|was|were|also|still|just)\s+)*$",
    re.I,
)
_CLAUSE_START = re.compile(r".*(?:[.;:!?,\n]|\b(?:while|whilst|whereas|but|and|as|with)\b)", re.I | re.S)
_PERSONISH = re.compile(rf"\b(?:{_PERSON}|{_PEOPLE}|he|she|they|him|them|someone|somebody)\b", re.I)


def _said_of_a_thing(t: str, start: int, instance_words: frozenset[str]) -> bool:
    head = t[max(0, start - 80) : start]
    cut = _CLAUSE_START.match(head)
    clause = head[cut.end() :] if cut else head
    m = _THING_SUBJECT.search(clause)
    return bool(m) and m.group(1).lower() not in instance_words and not _PERSONISH.search(clause)


def _state_claims(t: str, subjects: list, is_taken, instance_words: frozenset[str]) -> list[Claim]:
    out = []
    for m in pose_words.STATE.finditer(t):
        if _negated(t, m.start()) or is_taken(m.start(), m.end()):
            continue
        if _said_of_a_thing(t, m.start(), instance_words):
            continue
        if any(a <= m.start() < b for a, b, _ in subjects):
            continue  # "the person sitting on the left": part of a subject phrase, still a claim below
        out.append(
            Claim(
                "state", _state_word(m.group(1)), _subject_at(subjects, m.start()), None, m.start(), m.end()
            )
        )
    for s, e, subj in subjects:  # postures written inside a subject phrase ("the person sitting on the left")
        m = pose_words.STATE.search(t, s, e)
        if m:
            out.append(Claim("state", _state_word(m.group(1)), subj, None, m.start(), m.end()))
    return out


def _part_claims(t: str, subjects: list, is_taken) -> tuple[list[Claim], list[Mention]]:
    """Claims about limbs and body parts, each part's predicates read up to the next part or subject. Parts
    joined into a list share the predicates that follow ("left arm and right leg are raised"); a bare comma
    between two parts separates clauses instead ("kneeling on the right knee, left leg extended"). A claim
    about both limbs ("both arms are extended") gives way to one about a single limb in the same sentence
    ("... with the left elbow slightly bent"): the writer made an exception."""
    found, mentions = [], []
    parts = [p for p in _parts(t) if not is_taken(p[0], p[1])]
    starts = [p[0] for p in parts]
    boundaries = sorted([s for s, _, _ in subjects] + starts)
    sentence_ends = [m.start() for m in SENTENCE_END.finditer(t)]
    pending: list[tuple[int, int, list[str], str]] = []
    listed = False  # the pending parts are joined by "and" / "or" (a list), not only by commas
    for start, end, limbs, label in parts:
        nxt = next((b for b in boundaries if b >= end), len(t))
        stop = SENTENCE_END.search(t, end, nxt)
        seg = t[end : stop.start() if stop else nxt]
        subject = _subject_at(subjects, start)
        if JOINER.match(seg) and not stop and nxt < len(t) and nxt in starts:
            pending.append((start, end, limbs, label))
            listed = listed or bool(LIST_WORD.search(seg))
            continue
        sentence = bisect.bisect_left(sentence_ends, start)
        for g_start, g_end, g_limbs, g_label in [*pending, (start, end, limbs, label)]:
            shared = listed or g_start == start
            claims, invisible = _segment_claims(seg if shared else "", end, g_limbs, subject, g_label)
            found += [(c, sentence, len(g_limbs) > 1) for c in claims]
            mentions.append(Mention(g_label, _mention_joints(g_label), subject, g_start, g_end, invisible))
        pending, listed = [], False
    for g_start, g_end, _, g_label in pending:
        mentions.append(
            Mention(g_label, _mention_joints(g_label), _subject_at(subjects, g_start), g_start, g_end)
        )
    single = {(c.subject, c.part, c.kind, sentence) for c, sentence, both in found if not both}
    kept = [
        c for c, sentence, both in found if not both or (c.subject, c.part, c.kind, sentence) not in single
    ]
    return kept, mentions


def parse_claims(
    text: str,
    *,
    activity: str | None = None,
    category: str | None = None,
    nouns: Sequence[str] = (),
    human: bool = True,
) -> ParsedDescription:
    """Every claim and body-part mention of one description (see the module docstring for the rules).
    nouns: words naming the instances beyond the people words ("zebra", "animal"); human=False (an animal
    or custom skeleton) also reads which way each instance faces. parse_annotated passes both."""
    out = ParsedDescription()
    if not text:
        return out
    t = _mask(text, [activity or "", category or ""])
    extra = _nouns(tuple(nouns)) if nouns else None
    out.claims += _count_claims(t, extra)
    raw = _subjects(t, extra.subjects) if extra else _subjects(t)
    out.people_implied = _implied_people(raw)
    subjects = _resolve_subjects(raw)
    out.claims += [
        Claim("position", subj[1], subj, None, s, e)
        for s, e, subj in subjects
        if subj and subj[0] == "position"
    ]
    if not human:
        out.claims += [
            Claim("facing", m.group(1).lower(), _subject_at(subjects, m.start()), None, m.start(), m.end())
            for m in FACING.finditer(t)
            if not _negated(t, m.start())
        ]
    # Whole-body phrases first: their words ("arms", "crossed") must not read as limb claims.
    whole, taken = _whole_body_claims(t, subjects)
    out.claims += whole

    def is_taken(s: int, e: int) -> bool:
        return any(s < b and e > a for a, b in taken)

    out.claims += _state_claims(t, subjects, is_taken, frozenset(extra.forms) if extra else frozenset())
    part_claims, out.mentions = _part_claims(t, subjects, is_taken)
    out.claims += part_claims
    out.claims.sort(key=lambda c: (c.start, c.kind))
    return out


def parse_annotated(text: str, ann: ImageAnnotation) -> ParsedDescription:
    """parse_claims with what the image's annotation says: its activity and category to mask, the nouns of
    its instances, and whether its skeleton is human."""
    return parse_claims(
        text,
        activity=ann.activity,
        category=ann.category,
        nouns=claim_nouns(ann),
        human=ann.skeleton.human,
    )
