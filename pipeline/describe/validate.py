"""The quality gate: one description judged against its image's keypoints -> status + why it is not ok.

    status, reason = judge(text, finish_reason, annotation)                    # ("ok", None)
    judge("I'm an AI model designed to analyze ...", "stop", annotation)    # ("invalid", "meta talk ...")
    judge(text, "stop", annotation, Gate(min_pose_claims=2), prompt=prompt_text)

A reply is ok only when it reads as a description of these people's poses. In order:
- shape: content filter, empty or a refusal -> refused; finish_reason length -> truncated; under
  `min_chars` or over `max_chars` -> invalid;
- what a weak model writes instead of a description (each -> invalid with the reason): JSON or code, an echo
  of the prompt (more than `max_echo` of the reply's word 5-grams are in the prompt), template placeholders
  ("left/right/center", "<activity>"), meta talk (being an AI, the request or the model's task, the prompt or
  template, the data it was given: not the words "task" or "data" said of the activity),
  coordinates or keypoint numbers, measurements the keypoints cannot give (lengths, weights, ages), a list
  whose items mostly make no pose claim (more than `max_list_share` of them: the template restated);
- people besides the annotated ones (pipeline.bystanders: "a crowd watches", "another man stands behind
  her", "two spectators"): invalid under `background_people="reject"` (the default); under "scene" they are
  allowed and their clauses are left out of the claims below;
- the claims, parsed and checked by pipeline.claims / pipeline.faithfulness (the checker analyze reports):
  a people count that disagrees, a person or a limb the image does not have ("another person", "a second
  person" for one included), more than `max_contradicted` of the decided claims contradicting the keypoints
  (the reason lists them), and fewer than `min_pose_claims` decided pose claims (capped at what the keypoints
  can decide, so a person with two annotated joints is not asked for three claims).

Calibrated on good text as well as on garbage: benchmarks/gate_calibration.py scores it on tests/calibration.

Other skeletons (pipeline.instances): COCO-17 and CrowdPose-14 people are judged exactly like MPII ones,
their claims checked through the MPII view (a COCO head posture is unverifiable, so never required); crowd
regions are not people. Animals and custom skeletons have no human pose to check, so the pose claims are
not required; instead a description must name what the instances are (one of their categories, "jaguar";
"animal" alone is not enough when the source names them), and is invalid when it gets the count wrong
(overall or per noun: "two zebras" for one), describes an instance the image does not have, or contradicts
the keypoints on which way an instance faces (more than `max_contradicted` of the decided claims). The
shape checks above apply unchanged, except the list check (it counts pose claims, which animals barely
have; a restated template is caught by the echo check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.bystanders import find_bystanders, mask_bystanders
from pipeline.claims import parse_annotated, parse_claims
from pipeline.errors import PipelineError
from pipeline.faithfulness import (
    CONTRADICTED,
    POSE_KINDS,
    Facts,
    annotated_parts,
    check_description,
    counted,
    decided,
)
from pipeline.instances import annotation_facts, article, instances, plural
from pipeline.records import ImageAnnotation


@dataclass(frozen=True, slots=True)
class Gate:
    """The gate's thresholds (the describe CLI sets min_pose_claims and max_contradicted)."""

    min_chars: int = 20
    max_chars: int = 6000
    min_pose_claims: int = 3  # decided pose claims a description needs (capped at what is decidable)
    max_contradicted: float = 0.35  # share of decided claims that may contradict the keypoints
    max_echo: float = 0.5  # share of the reply's word 5-grams that may come from the prompt
    max_list_share: float = 0.5  # share of list items that may make no pose claim
    # People the annotations do not have: "reject" the description, or allow them as "scene" (their clauses
    # are not checked as claims). See pipeline.bystanders.
    background_people: str = "reject"

    def __post_init__(self) -> None:
        if self.background_people not in BACKGROUND_POLICIES:
            choices = ", ".join(BACKGROUND_POLICIES)
            raise PipelineError(f"--background-people {self.background_people!r}: choose one of {choices}")


BACKGROUND_POLICIES = ("reject", "scene")


_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i'?m unable|i am unable|i won'?t|"
    r"as an ai\b|i'?m not able|i am not able)",
    re.IGNORECASE,
)
_CODE = re.compile(r"```|\{\s*\"|\"\s*:\s*[\[{\d\"-]|\[\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\]")
_PLACEHOLDER = re.compile(
    r"<[a-z][^<>\n]{0,40}>|\b[a-z]+/[a-z]+/[a-z]+\b|\[(?:activity|category|number)[^\]]*\]", re.I
)
# Talk about the request instead of the people: being a model, the prompt or template, the data it was given.
# "Task", "data" and "input" alone are ordinary words a description uses for the activity ("the task involves
# lifting heavy items", "data entry", "the copier's input tray"), so they count only in those senses.
_META = re.compile(
    r"\b(?:as an ai|i'?m an ai|i am an ai|an ai (?:language )?model|language model|"
    r"i (?:was|am|have been) (?:designed|trained|programmed)|designed to (?:analy[sz]e|assist|help)|"
    r"my (?:task|purpose|role|analysis)|your (?:task|request|question)|"
    r"(?:the|this) task (?:is|was) to (?:describe|analy[sz]e|provide|write|generate)|"
    r"(?:the|this) task of (?:describing|analy[sz]ing)|the (?:given|assigned|requested) task|"
    r"(?:the|this|your) (?:template|prompt)\b|as (?:instructed|requested)|"
    r"(?:the|your|these|the given|the provided|the above) instructions|"
    r"(?:the|this) (?:given|provided|input|supplied) (?:json|data|input|information|annotations?)|json|"
    r"(?:the|this) (?:data|information|input|annotations?) (?:you )?(?:provided|given|supplied)|"
    r"(?:information|data) (?:that )?you (?:provided|gave|supplied)|"
    r"here is (?:a|the|my) (?:description|analysis)|i (?:will|'ll) (?:now )?(?:describe|analy[sz]e|provide))",
    re.I,
)
_COORDINATES = re.compile(
    r"\(\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\)|\b[xy]\s*[=:]\s*-?\d|"
    r"\b(?:keypoints?|key points?|joint|kpt|point)\s*(?:#|no\.?\s*|number\s*)?\d+\b|\bkeypoints?\b|"
    r"\bcoordinates?\b|\bpixels?\b|\b\d{3,}\b(?!\s*(?:degrees?|°))",
    re.I,
)
_MEASUREMENT = re.compile(
    r"\b\d+(?:\.\d+)?\s*-?\s*(?:inch(?:es)?|in\.|cm|centimet(?:er|re)s?|mm|millimet(?:er|re)s?|"
    r"met(?:er|re)s?|m|feet|foot|ft|yards?|pounds?|lbs?|kg|kilo(?:gram)?s?|years?[- ]old)(?!\w)|"
    r"\b\d+'\s*\d+\"",
    re.I,
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)]|[a-z][.)])\s+(.*)$", re.I | re.M)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text))


def _quote(m: re.Match) -> str:
    """The match with a few words around it, cut at word boundaries."""
    before = m.string[max(0, m.start() - 24) : m.start()]
    after = m.string[m.end() : m.end() + 24]
    before = before.split(" ", 1)[-1] if m.start() > 24 else before
    after = after.rsplit(" ", 1)[0] if m.end() + 24 < len(m.string) else after
    return repr((before + m.group(0) + after).strip())


def _grams(text: str, n: int = 5) -> list[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def echo_share(text: str, prompt: str) -> float:
    """Share of the reply's word 5-grams that also occur in the prompt."""
    grams = _grams(text)
    if not grams:
        return 0.0
    seen = set(_grams(prompt))
    return sum(g in seen for g in grams) / len(grams)


def _mask(text: str, ann: ImageAnnotation) -> str:
    """The activity label may hold digits or slashes ("running, 100m"): blank it before the word checks."""
    for phrase in sorted({p for p in (ann.activity, ann.category) if p}, key=len, reverse=True):
        text = re.sub(re.escape(phrase), lambda m: " " * len(m.group(0)), text, flags=re.I)
    return text


def _shape(text: str, ann: ImageAnnotation, gate: Gate, prompt: str | None) -> str | None:
    """Why the text is not a pose description at all, or None."""
    if prompt and (share := echo_share(text, prompt)) > gate.max_echo:
        return f"echoes the prompt ({share:.0%} of its word 5-grams are in the prompt > {gate.max_echo:.0%})"
    if m := _CODE.search(text):
        return f"JSON or code in the reply: {_quote(m)}"
    masked = _mask(text, ann)
    if m := _PLACEHOLDER.search(masked):
        return f"template placeholder: {_quote(m)}"
    if m := _META.search(masked):
        return f"meta talk about the task or itself: {_quote(m)}"
    if m := _COORDINATES.search(masked):
        return f"coordinates or keypoint numbers: {_quote(m)}"
    if m := _MEASUREMENT.search(masked):
        return f"a measurement the keypoints cannot give: {_quote(m)}"
    items = _LIST_ITEM.findall(masked) if ann.skeleton.human else []
    if len(items) >= 2:
        empty = sum(not any(c.kind in POSE_KINDS for c in parse_claims(item).claims) for item in items)
        if empty / len(items) > gate.max_list_share:
            return f"a list restating the template ({empty} of {len(items)} items make no pose claim)"
    return None


def _claims(
    text: str, ann: ImageAnnotation, gate: Gate, facts: list[Facts] | None, saw_image: bool
) -> str | None:
    """Why the claims do not fit the keypoints, or None."""
    if facts is None:
        facts = annotation_facts(ann)
    n, one = len(facts), ann.skeleton.subject
    # People besides the annotated ones (pipeline.bystanders): checked in replies of models that saw an image
    # of people. A text-only model knows only the annotated people; its rows are judged as they always were.
    look = saw_image and ann.skeleton.human
    others = find_bystanders(text, n, activity=ann.activity, category=ann.category) if look else []
    scene = gate.background_people == "scene"
    parsed = parse_annotated(mask_bystanders(text, others) if scene else text, ann)
    checks = check_description(parsed, ann, facts)
    for c in checks.checks:
        if c.claim.kind == "count" and c.verdict == CONTRADICTED:
            have = counted(ann, c.claim.part)
            return f"says {c.claim.value} {plural(c.claim.part or one)}, the annotations have {have}"
        if c.claim.kind == "position" and c.verdict == CONTRADICTED:
            return f"describes {article(one)} on the {c.claim.value} the image does not have ({c.evidence})"
        if c.evidence == "no such person":
            have = f"{n} {one if n == 1 else plural(one)}"
            return f"describes {article(one)} the annotations do not have ({have}): {c.claim.label}"
    named = {c.claim.subject for c in checks.checks if c.claim.subject and c.claim.subject[0] != "unresolved"}
    described = max(len(named), parsed.people_implied)  # "a second person ..." for one: two
    if described > n:
        return f"describes {described} different {plural(one)}, the annotations have {n}"
    if others and not scene:
        said = "; ".join(repr(text[b.clause_start : b.clause_end].strip()) for b in others[:3])
        return f"describes people the annotations do not have ({n} annotated): {said}"
    if checks.missing_joint_mentions:
        parts = ", ".join(dict.fromkeys(checks.missing_joint_mentions))
        return f"describes the {parts}, whose keypoints are all unknown"
    settled = decided(checks, POSE_KINDS + ("count", "position", "visible"))
    wrong = [c for c in settled if c.verdict == CONTRADICTED]
    if settled and len(wrong) / len(settled) > gate.max_contradicted:
        said = "; ".join(f"{c.claim.label} ({c.evidence})" for c in wrong[:4]) + (
            "; ..." if wrong[4:] else ""
        )
        return (
            f"{len(wrong)} of {len(settled)} checked claims contradict the keypoints "
            f"(> {gate.max_contradicted:.0%}): {said}"
        )
    if not ann.skeleton.human:
        return _names_the_instances(text, ann)
    decidable = len(annotated_parts(facts)) + any(f.state != "unknown" for f in facts)
    need = min(gate.min_pose_claims, decidable)
    have = len(decided(checks))
    if have < need:
        return f"too few checkable pose claims ({have} < {need})"
    return None


def _names_the_instances(text: str, ann: ImageAnnotation) -> str | None:
    """An animal description must name what it describes: one of the instances' categories ("jaguar"), in
    either number; "animal" alone is not enough when the source names the species."""
    labels = [p.label for p in instances(ann) if p.label]
    forms = {f for n in labels for f in (n, plural(n))}
    words = (r"\b" + r"\s+".join(map(re.escape, f.split())) + r"\b" for f in forms)
    if forms and not any(re.search(w, text, re.I) for w in words):
        return f"never names what it describes ({' or '.join(dict.fromkeys(labels))})"
    return None


def judge(
    text: str | None,
    finish_reason: str | None,
    ann: ImageAnnotation,
    gate: Gate = Gate(),
    *,
    prompt: str | None = None,
    facts: list[Facts] | None = None,
    saw_image: bool = False,
) -> tuple[str, str | None]:
    """One of ok | truncated | refused | invalid, and why when not ok (error rows are decided upstream).
    `prompt`: the request's messages as one text, for the echo check (None for the rules describer);
    `facts`: the image's pipeline.instances.annotation_facts when already computed (else computed here);
    `saw_image`: the model was sent the image (describe --with-image), so it may describe bystanders."""
    if finish_reason == "content_filter":
        return "refused", "finish_reason content_filter"
    if text is None or not text.strip():
        return "refused", f"empty content (finish_reason {finish_reason})"
    text = text.strip()
    if is_refusal(text):
        return "refused", f"refusal: {text[:80]!r}"
    if finish_reason == "length":
        return "truncated", "finish_reason length: the reply hit max_tokens"
    if len(text) < gate.min_chars:
        return "invalid", f"too short ({len(text)} chars < {gate.min_chars})"
    if len(text) > gate.max_chars:
        return "invalid", f"too long ({len(text)} chars > {gate.max_chars})"
    reason = _shape(text, ann, gate, prompt) or _claims(text, ann, gate, facts, saw_image)
    return ("invalid", reason) if reason else ("ok", None)
