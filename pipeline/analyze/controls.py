"""A negative control for the faithfulness check: the same descriptions with their pose words flipped.

    contradict("The person on the left is standing. Their right arm is raised and straight.")
    # 'The person on the right is sitting. Their left arm is lowered and sharply bent.'

Swaps left <-> right for people ("the person on the left"; a limb keeps its side, so that flipping its
side and its predicate cannot cancel out), standing <-> sitting (lying -> standing), raised/lifted <->
lowered, straight <-> sharply bent (any other bend -> straight), torso and head postures, arms crossed,
feet apart/together, and the people count (n -> n + 1).
A checker that cannot tell these apart from the originals measures nothing; `analyze --negative-control`
adds the flipped set as an extra source so every report shows the checker's floor beside the real sources.
"""

from __future__ import annotations

import re

from pipeline.claim_patterns import NUMBERS

_SWAPS = {
    "left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost",
    "standing": "sitting", "sitting": "standing", "stands": "sits", "sits": "stands", "seated": "standing",
    "lying": "standing", "reclining": "standing",
    "raised above their head": "lowered", "raised": "lowered", "lifted": "planted on the ground",
    "lowered": "raised above their head",
    "sharply bent": "straight", "slightly bent": "straight", "bent": "straight", "straight": "sharply bent",
    "upright": "horizontal", "leaning": "upright", "horizontal": "upright", "tilted": "upright",
    "bowed": "upright",
    "crossed": "uncrossed", "apart": "together", "together": "apart",
}  # fmt: skip
_WORDS = sorted(_SWAPS, key=len, reverse=True)
_LIMB = r"(?!\s+(?:arm|leg|hand|foot|elbow|knee|wrist|ankle|shoulder|hip|forearm|thigh|shin)s?\b)"
_PATTERN = re.compile(r"\b(" + "|".join(re.escape(w) for w in _WORDS) + r")\b" + _LIMB, re.I)
_NUMBER_WORDS = {v: k for k, v in NUMBERS.items() if " " not in k and k not in ("single", "lone", "zero")}
_COUNT = re.compile(
    r"\b(no|one|two|three|four|five|six|seven|eight|nine|ten|eleven|\d+) (person|people)\b", re.I
)


def _case(src: str, dst: str) -> str:
    return dst[:1].upper() + dst[1:] if src[:1].isupper() else dst


def _count(m: re.Match) -> str:
    word = m.group(1).lower()
    n = (int(word) if word.isdigit() else NUMBERS[word]) + 1
    return _case(m.group(1), f"{_NUMBER_WORDS.get(n, str(n))} people")


def contradict(text: str | None) -> str | None:
    """The description with every pose word it knows replaced by its opposite (one pass, no cascades)."""
    if text is None:
        return None
    text = _COUNT.sub(_count, text)
    return _PATTERN.sub(lambda m: _case(m.group(1), _SWAPS[m.group(1).lower()]), text)
