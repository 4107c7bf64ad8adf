"""People a description mentions besides the annotated ones ("a crowd watches", "another man stands behind
her", "two spectators"), found with the documented patterns below.

    found = find_bystanders("She sits while a crowd watches.", num_people=1)   # [Bystander('crowd', ...)]
    masked = mask_bystanders(text, found)        # same length; the crowd's clause blanked out

A model that sees the image sees everyone in it, and MPII annotates only some people (the activity CSV only
the first): descriptions of photographs name spectators, passers-by and partners the keypoints know nothing
about. Two things go wrong with them: they are people the annotations do not have, and the claim parser
(pipeline.claims) would give their postures ("spectators stand") to the annotated person. describe's gate
(pipeline.describe.validate, `--background-people`) either rejects them (`reject`, the default) or allows them
as scene (`scene`): each mention's clause is then blanked before claims are parsed, so it neither confirms
nor contradicts anything. analyze blanks them too.

What counts as a mention (case-insensitive):
1. background nouns: crowd, audience, spectators, onlookers, bystanders, passers-by, pedestrians, fans;
   not when the image's activity label names them (MPII "sitting at a sporting event, spectator");
2. people placed in the background: an indefinite person noun or a bare plural followed within three words
   by "in the background / distance / stands / bleachers" ("a woman in the background", "figures in the
   distance"; not "the second person stands in the background"), "background figures", "someone else";
3. only when the annotations have one person: "another / a second / one more <person noun>", "other
   <people noun>", "others", "the rest of the team / group", and "their / his / her <companion noun>"
   (partner, teammate, opponent, coach, friend, ...). With several annotated people these may be the
   annotated ones ("the other person sits"), so they are left to the people-count and named-person checks.
A mention's clause runs from the mention (and up to two participles or adjectives before it: "seated
spectators") to the next clause boundary: , . ; : ! ? a line break, or while / whilst / whereas / as / but /
"and" followed by a pronoun or "the".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BACKGROUND = r"crowds?|audiences?|spectators?|onlookers?|bystanders?|passers-?by|passersby|pedestrians?|fans"
_PERSON = (
    r"person|people|persons|individuals?|figures?|m[ae]n|wom[ae]n|boys?|girls?|child(?:ren)?|kids?|"
    r"players?|athletes?|adults?|guys?|ladies|lady|gentlem[ae]n|teammates?|workers?|customers?|dancers?|"
    r"students?|riders?|runners?|swimmers?"
)
_COMPANION = (
    r"partners?|teammates?|opponents?|coach(?:es)?|instructors?|trainers?|friends?|companions?|"
    r"colleagues?|co-workers?|mother|father|parents?|son|daughter|wife|husband|brother|sister|"
    r"girlfriend|boyfriend|child(?:ren)?|kids?|baby|family"
)
BACKGROUND = re.compile(rf"\b(?:{_BACKGROUND})\b", re.I)
PLACED = re.compile(
    rf"(?:\b(?:a|an|one|some|several|many|few|two|three|four|five|other)\s+(?:\w+\s+)?(?:{_PERSON})|"
    rf"(?<!the )\b(?:people|persons|figures|men|women|children|kids|players|athletes|adults))\b"
    rf"(?:\s+\w+){{0,3}}?\s+in\s+the\s+(?:background|distance|stands|bleachers)\b|"
    rf"\bbackground\s+(?:{_PERSON})\b|\b(?:someone|somebody|anyone)\s+else\b",
    re.I,
)
EXTRA_ONE = re.compile(
    rf"\b(?:another|a\s+second|a\s+third|one\s+more|a\s+further)\s+(?:\w+\s+)?(?:{_PERSON})\b|"
    rf"\bother\s+(?:\w+\s+)?(?:people|persons|individuals|figures|men|women|children|kids|players|athletes|"
    rf"adults|teammates|workers|customers|dancers|students)\b|\bothers\b|"
    rf"\bthe\s+rest\s+of\s+(?:the\s+)?(?:team|group|crowd|players|class|family)\b|"
    rf"\b(?:their|his|her)\s+(?:{_COMPANION})\b",
    re.I,
)
_BEFORE = re.compile(r"(?:\b(?:\w+(?:ing|ed)|seated|standing)\s+){1,2}$", re.I)
_BOUNDARY = re.compile(
    r"[,.;:!?\n]|\b(?:while|whilst|whereas|as|but)\b|\band\s+(?:the|their|his|her|he|she|they|it)\b", re.I
)


@dataclass(frozen=True, slots=True)
class Bystander:
    text: str  # the words of the mention
    start: int  # span of the mention
    end: int
    clause_start: int  # span blanked under the scene policy
    clause_end: int
    rule: str  # background | placed | extra


def _named_by_activity(word: str, labels: str) -> bool:
    stem = word.lower().rstrip("s")
    return bool(stem) and stem in labels


def find_bystanders(
    text: str, num_people: int, *, activity: str | None = None, category: str | None = None
) -> list[Bystander]:
    """Every mention of people besides the annotated ones (module docstring), earliest first."""
    labels = " ".join(x for x in (activity, category) if x).lower()
    found: list[tuple[int, int, str]] = []
    for m in BACKGROUND.finditer(text):
        if not _named_by_activity(m.group(0), labels):
            found.append((m.start(), m.end(), "background"))
    found += [(m.start(), m.end(), "placed") for m in PLACED.finditer(text)]
    if num_people == 1:
        found += [(m.start(), m.end(), "extra") for m in EXTRA_ONE.finditer(text)]
    out: list[Bystander] = []
    for start, end, rule in sorted(found):
        if out and start < out[-1].end:
            continue  # overlapping patterns: the earlier mention stands for both
        before = _BEFORE.search(text, max(0, start - 40), start)
        stop = _BOUNDARY.search(text, end)
        out.append(
            Bystander(
                text=text[start:end],
                start=start,
                end=end,
                clause_start=before.start() if before else start,
                clause_end=stop.start() if stop else len(text),
                rule=rule,
            )
        )
    return out


def mask_bystanders(text: str, found: list[Bystander]) -> str:
    """The text with each mention's clause replaced by spaces (same length: claim spans stay valid)."""
    chars = list(text)
    for b in found:
        chars[b.clause_start : b.clause_end] = " " * (b.clause_end - b.clause_start)
    return "".join(chars)
