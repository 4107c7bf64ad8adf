"""The words a pose description uses for each posture predicate, as regular expressions, and the level each
word names. pipeline.claims reads descriptions with them; pipeline.faithfulness checks the levels.

    BEND_LEVEL[BEND.search("the left knee is a little bent").group(1).lower()]     # 'slightly bent'
    TORSO_LEVEL.get("hunched over", "leaning")                                     # 'bent forward'

Their coverage is measured on real descriptions: tests/calibration (benchmarks/gate_calibration.py) holds
replies written in a strong model's varied words, each claim judged by a reader of the keypoints.
"""

from __future__ import annotations

import re

NEGATION = re.compile(r"(?:\bnot|n't|\bnever|\bneither|\bnor)\s+(?:\w+\s+)?$", re.I)
STATE = re.compile(
    r"\b(stand(?:s|ing)?|sit(?:s|ting)?|seated|lying(?:\s+down)?|lies|laying|reclin(?:es|ing))\b", re.I
)

RAISED_ARM = re.compile(
    r"\b(raised|raising|lifted|lifting|elevated|upwards?|overhead|in the air|above (?:the|their|"
    r"his|her|its) (?:heads?|shoulders?)|(?:held|pointing|reaching|stretched|extended) up)\b",
    re.I,
)
LOWERED_ARM = re.compile(
    r"\b(lowered|hanging|hangs|down(?:wards?)?|(?:by|at) (?:the|their|his|her|its) sides?)\b", re.I
)
RAISED_LEG = re.compile(r"\b(raised|raising|lifted|lifting|off the ground|in the air|kicking)\b", re.I)
LOWERED_LEG = re.compile(r"\b(lowered|planted|on the ground|on the floor|grounded)\b", re.I)
ABOVE_HEAD = re.compile(
    r"\b(above (?:the|their|his|her|its) heads?|overhead|over (?:the|their|his|her) head)\b", re.I
)
# In an arm's words, a raising word whose subject is the hand ("the arm is bent, the hand raised to the
# chest"): a raised hand is not a raised arm (pipeline.faithfulness checks the wrist's height for it).
HAND_WORD = re.compile(r"\b(?:hands?|wrists?|fists?|forearms?|palms?|fingers?)\b", re.I)

_SLIGHT = r"(?:slightly|a little|a bit|somewhat|softly|mildly|gently|partially|partly)"
BEND = re.compile(
    r"\b(sharply bent|bent sharply|tightly bent|fully bent|deeply bent|"
    rf"{_SLIGHT} (?:bent|flexed|crooked)|(?:bent|flexed) {_SLIGHT}|"
    r"(?:nearly|almost|mostly|practically) (?:fully |completely )?(?:straight|extended|straightened)|"
    r"bent|flexed|bending|folded|crooked|straight|straightened|extended|outstretched|stretched out|locked)\b",
    re.I,
)
BEND_LEVEL = {
    "sharply bent": "sharply bent", "bent sharply": "sharply bent", "tightly bent": "sharply bent",
    "fully bent": "sharply bent", "deeply bent": "sharply bent", "bent": "bent", "flexed": "bent",
    "bending": "bent", "folded": "sharply bent", "crooked": "bent", "straight": "straight",
    "straightened": "straight", "extended": "straight", "outstretched": "straight",
    "stretched out": "straight", "locked": "straight",
}  # fmt: skip


def bend_level(words: str) -> str:
    """The level a BEND match names: 'a little bent' -> 'slightly bent', 'almost fully extended' ->
    'nearly straight', the rest from BEND_LEVEL."""
    words = " ".join(words.lower().split())
    if re.match(r"(?:nearly|almost|mostly|practically) ", words):
        return "nearly straight"
    if re.search(_SLIGHT, words):
        return "slightly bent"
    return BEND_LEVEL[words]


TORSO = re.compile(
    r"\b(upright|vertical|erect|leaning|leans|inclined|hunched over|hunched|tilted|bent forward|"
    r"bending forward|bent over|bending over|doubled over|folded forward|horizontal|flat)\b",
    re.I,
)
TORSO_LEVEL = {
    "upright": "upright",
    "vertical": "upright",
    "erect": "upright",
    "horizontal": "horizontal",
    "flat": "horizontal",
    # Flexed at the hips: any forward angle past upright, horizontal or beyond (a person touching the toes).
    "bent forward": "bent forward",
    "bending forward": "bent forward",
    "bent over": "bent forward",
    "bending over": "bent forward",
    "hunched over": "bent forward",
    "doubled over": "bent forward",
    "folded forward": "bent forward",
}  # everything else: leaning
HEAD_WORDS = re.compile(
    r"\b(upright|level|held high|tilted back|tipped back|thrown back|tilted|tilts|tilting|tipped|tips|cocked|"
    r"bowed|looking down|drooping|hanging down|lowered)\b",
    re.I,
)
HEAD_LEVEL = {
    "upright": "upright",
    "level": "upright",
    "held high": "upright",
    "tilted": "tilted",
    "tilts": "tilted",
    "tilting": "tilted",
    "tipped": "tilted",
    "tips": "tilted",
    "cocked": "tilted",
    "bowed": "bowed",
    "looking down": "bowed",
    "drooping": "bowed",
    "hanging down": "bowed",
    "lowered": "bowed",
}  # back-tipping: geometry can't tell
# A hedge next to a predicate ("tilted slightly", "a little tilted"): the claim names a small amount.
HEDGE = re.compile(
    r"\b(?:slightly|a little|a bit|somewhat|a touch|a tad|barely|faintly|mildly|gently|marginally)\b", re.I
)
INVISIBLE = re.compile(
    r"\b(not visible|invisible|hidden|occluded|obscured|out of (?:the )?(?:frame|view|image|picture)|"
    r"cannot be seen|can't be seen|not shown|cut off|not annotated|unknown)\b",
    re.I,
)
ARMS_CROSSED = re.compile(r"\b(arms (?:are |were )?(?:crossed|folded)|(?:crossed|folded) arms)\b", re.I)
FEET_APART = re.compile(
    r"\b(feet (?:are )?(?:[\w-]+[- ]width |wide |spread )?apart|legs (?:are )?(?:spread|apart)|"
    r"wide stance|feet spread)\b",
    re.I,
)
FEET_TOGETHER = re.compile(r"\b(feet (?:are )?together|legs (?:are )?together)\b", re.I)
