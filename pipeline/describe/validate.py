"""Checks on one description, cheap enough to run on every row: status + the reason when it is not ok.

status, reason = judge(text, finish_reason, ctx)     # ("ok", None) | ("invalid", "says two people, ...")
"""

from __future__ import annotations

import re
from typing import Any

MIN_CHARS = 20
MAX_CHARS = 6000
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i'?m unable|i am unable|i won'?t|"
    r"as an ai\b|i'?m not able|i am not able)",
    re.IGNORECASE,
)
_NUMBERS = {
    w: i
    for i, w in enumerate(
        [
            "no",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
_NUMBERS |= {"a single": 1, "a lone": 1, "single": 1, "a": 1, "an": 1}
_COUNT = re.compile(
    r"\b(\d+|no|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a single|a lone|single|an?)\s+"
    r"(?:[a-z-]+\s+)?(people|persons|person|individuals|individual)\b",
    re.IGNORECASE,
)
# A mention of an unknown limb is fine when the sentence says it cannot be seen.
_NOT_SEEN = re.compile(
    r"not (?:be )?(?:visible|shown|seen)|invisible|hidden|occluded|obscured|out of (?:the )?"
    r"(?:frame|view|picture|image)|cut off|cannot be seen|can't be seen|unknown|not clear",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text))


def stated_count(first_sentence: str) -> int | None:
    """The number of people the opening sentence claims, if it claims one."""
    for m in _COUNT.finditer(first_sentence):
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBERS[word]
        plural = m.group(2).lower() in ("people", "persons", "individuals")
        if plural == (n != 1) or word.isdigit():
            return n
    return None


def unseen_limb_mentions(text: str, ctx: dict[str, Any]) -> list[str]:
    """Limbs named in the text whose joints are unknown for every person of the image."""
    people = [p for p in ctx["people"] if p["known_joints"] > 0]
    if not people:
        return []
    out = []
    for limb in ("left arm", "right arm", "left leg", "right leg"):
        if any(p["limb_joints"][limb] > 0 for p in people):
            continue
        for sentence in _SENTENCE.split(text):
            if re.search(rf"\b{limb}\b", sentence, re.IGNORECASE) and not _NOT_SEEN.search(sentence):
                out.append(limb)
                break
    return out


def judge(text: str | None, finish_reason: str | None, ctx: dict[str, Any]) -> tuple[str, str | None]:
    """One of ok | truncated | refused | invalid, and why when not ok (error rows are decided upstream)."""
    if finish_reason == "content_filter":
        return "refused", "finish_reason content_filter"
    if text is None or not text.strip():
        return "refused", f"empty content (finish_reason {finish_reason})"
    text = text.strip()
    if is_refusal(text):
        return "refused", f"refusal: {text[:80]!r}"
    if finish_reason == "length":
        return "truncated", "finish_reason length: the reply hit max_tokens"
    if len(text) < MIN_CHARS:
        return "invalid", f"too short ({len(text)} chars < {MIN_CHARS})"
    if len(text) > MAX_CHARS:
        return "invalid", f"too long ({len(text)} chars > {MAX_CHARS})"
    said = stated_count(_SENTENCE.split(text, maxsplit=1)[0])
    if said is not None and said != ctx["num_people"]:
        return "invalid", f"says {said} people, the annotations have {ctx['num_people']}"
    unseen = unseen_limb_mentions(text, ctx)
    if unseen:
        return "invalid", f"describes the {', '.join(unseen)}, whose keypoints are all unknown"
    return "ok", None
