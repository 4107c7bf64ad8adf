"""The describe gate and the claim checker on good text: the calibration set tests/calibration/replies.jsonl.

    .venv/bin/python benchmarks/gate_calibration.py                       # this checkout's gate and checker
    .venv/bin/python benchmarks/gate_calibration.py --code ../main        # another checkout's, same set
    .venv/bin/python benchmarks/gate_calibration.py --details             # ... and every miss, one a line

The set holds replies to the paper prompt for real images of MPII (hourglass valid.h5, the activity CSV),
COCO, CrowdPose and AP-10K (../shared/data, referred to by file and image name): faithful ones written from
the images' keypoints in a strong model's varied words, and realistic bad ones (wrong side, wrong posture,
invented people, meta talk). Every claim either the current or an earlier checker reads in a reply carries a
reader's judgement made from the keypoints: accept, reject or unverifiable (tests/calibration/README.md).

Prints the goals tests/test_gate_calibration.py asserts: faithful replies the gate rejects (at most 1 in
40), their claims the checker contradicts that the reader accepts or cannot verify (at most 1%), and bad
replies the gate lets through (none); and beside them the claims the checker confirms that the reader rejects.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --code DIR imports the gate and checker of another checkout (a before/after comparison on the same set); it
# has to be on the path before the first pipeline import, so it is read here rather than by argparse below.
_CODE = (
    sys.argv[sys.argv.index("--code") + 1] if __name__ == "__main__" and "--code" in sys.argv[:-1] else None
)
sys.path.insert(0, str(Path(_CODE).resolve() if _CODE else ROOT))

from pipeline.claims import parse_annotated  # noqa: E402
from pipeline.convert import ConvertConfig, select  # noqa: E402
from pipeline.describe.validate import judge  # noqa: E402
from pipeline.faithfulness import CONFIRMED, CONTRADICTED, check_description  # noqa: E402
from pipeline.instances import annotation_facts  # noqa: E402
from pipeline.records import ImageAnnotation  # noqa: E402
from pipeline.sources.formats import read_source  # noqa: E402

SET = ROOT / "tests" / "calibration" / "replies.jsonl"
# ../shared/data beside the checkout, or FOCUS_SHARED_DATA (as the tests read it)
SHARED_DATA = Path(os.environ.get("FOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
READER = ("accept", "reject", "unverifiable")
KINDS = ("faithful", "bad")
GOAL_REJECTED = 1 / 40  # faithful replies the gate may reject
GOAL_WRONGLY_CONTRADICTED = 0.01  # claims of faithful replies the checker may contradict against the reader


@dataclass(frozen=True, slots=True)
class Judgement:
    claim: str  # the checker's label of the claim ("right hand raised=True")
    at: str  # words of the reply (unique in it) that hold the claim's span
    reader: str  # accept | reject | unverifiable: what a reader of the keypoints says of those words
    why: str


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    kind: str  # faithful | bad
    dataset: str
    file: str  # under the shared data folder
    image: str
    style: str
    text: str
    claims: tuple[Judgement, ...]
    wrong: str | None = None  # bad replies: what is wrong
    held_out: bool = False  # written and judged after the checker's fixes were made (not tuned on)

    def judgement(self, label: str, start: int, end: int) -> Judgement | None:
        """The judgement of a claim the checker read at text[start:end], if the set has one."""
        for j in self.claims:
            at = self.text.find(j.at)
            if j.claim == label and at <= start and end <= at + len(j.at):
                return j
        return None


def load_set(path: Path = SET) -> list[Reply]:
    """The calibration replies; a malformed row is an error naming its line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        claims = tuple(Judgement(**c) for c in row.pop("claims"))
        reply = Reply(**row, claims=claims)
        bad = [j for j in claims if j.reader not in READER or reply.text.count(j.at) != 1]
        if reply.kind not in KINDS or bad:
            raise ValueError(
                f"{path}:{n}: kind {reply.kind!r} or judgements not in {READER} / not unique: {bad}"
            )
        out.append(reply)
    return out


@functools.lru_cache(maxsize=16)
def _annotations(path: Path) -> dict[str, ImageAnnotation]:
    """A source file's images as convert keeps them (read, then the keep/drop rules)."""
    images, _ = select(list(read_source(path).images.values()), ConvertConfig(sources=[path]))
    return {a.image: a for a in images}


def annotation(reply: Reply, data: Path = SHARED_DATA) -> ImageAnnotation:
    return _annotations(data / reply.file)[reply.image]


@dataclass(slots=True)
class Miss:
    reply: str
    what: str  # the claim's label or the gate's status
    said: str  # the reply's words
    detail: str  # the checker's evidence / the gate's reason, and the reader's why


@dataclass(slots=True)
class Report:
    faithful: int = 0
    bad: int = 0
    faithful_claims: int = 0
    rejected: list[Miss] = field(default_factory=list)  # faithful replies the gate did not pass
    wrongly_contradicted: list[Miss] = field(
        default_factory=list
    )  # faithful claims; reader: accept/unverifiable
    wrongly_accepted: list[Miss] = field(default_factory=list)  # any reply's claims; reader: reject
    let_through: list[Miss] = field(default_factory=list)  # bad replies the gate passed
    rejected_claims: int = 0  # claims the reader rejects (bad replies)
    rejected_claims_contradicted: int = 0
    unjudged: list[Miss] = field(default_factory=list)  # claims the checker reads that the set has no word on

    @property
    def rejected_share(self) -> float:
        return len(self.rejected) / self.faithful if self.faithful else 0.0

    @property
    def wrongly_contradicted_share(self) -> float:
        return len(self.wrongly_contradicted) / self.faithful_claims if self.faithful_claims else 0.0

    def meets_goals(self) -> bool:
        return (
            self.rejected_share <= GOAL_REJECTED
            and self.wrongly_contradicted_share <= GOAL_WRONGLY_CONTRADICTED
            and not self.let_through
        )


def score(replies: list[Reply], data: Path = SHARED_DATA) -> Report:
    """Run the gate (describe's judge, text-only as the paper prompt is) and the checker on every reply."""
    report = Report()
    for reply in replies:
        ann = annotation(reply, data)
        status, why = judge(reply.text, "stop", ann)
        passed = status == "ok"
        if reply.kind == "faithful":
            report.faithful += 1
            if not passed:
                report.rejected.append(Miss(reply.id, status, reply.text[:60], why or ""))
        else:
            report.bad += 1
            if passed:
                report.let_through.append(Miss(reply.id, status, reply.text[:60], reply.wrong or ""))
        checks = check_description(parse_annotated(reply.text, ann), ann, annotation_facts(ann))
        for check in checks.checks:
            c = check.claim
            said = reply.text[c.start : c.end]
            j = reply.judgement(c.label, c.start, c.end)
            if j is None:
                report.unjudged.append(Miss(reply.id, c.label, said, check.evidence))
                continue
            miss = Miss(reply.id, c.label, said, f"checker: {check.evidence}; reader: {j.why}")
            if reply.kind == "faithful":
                report.faithful_claims += 1
                if check.verdict == CONTRADICTED and j.reader != "reject":
                    report.wrongly_contradicted.append(miss)
            if j.reader == "reject":
                if reply.kind == "bad":
                    report.rejected_claims += 1
                    report.rejected_claims_contradicted += check.verdict == CONTRADICTED
                if check.verdict == CONFIRMED:
                    report.wrongly_accepted.append(miss)
    return report


def _lines(report: Report, details: bool) -> list[str]:
    r = report
    rows = [
        ("faithful replies rejected by the gate", f"{len(r.rejected)} of {r.faithful}",
         f"{r.rejected_share:.1%}; goal <= 1 in 40"),
        ("claims wrongly contradicted", f"{len(r.wrongly_contradicted)} of {r.faithful_claims}",
         f"{r.wrongly_contradicted_share:.1%}; goal <= 1%"),
        ("claims wrongly confirmed (reader rejects)", f"{len(r.wrongly_accepted)}", ""),
        ("bad replies still rejected", f"{r.bad - len(r.let_through)} of {r.bad}", "goal: all"),
        ("their wrong claims contradicted", f"{r.rejected_claims_contradicted} of {r.rejected_claims}", ""),
        ("claims with no judgement in the set", f"{len(r.unjudged)}", ""),
    ]  # fmt: skip
    out = [f"{what:<42} {count:>10}  {note}".rstrip() for what, count, note in rows]
    out.append(f"goals met: {'yes' if r.meets_goals() else 'no'}")
    if details:
        for title, misses in (("rejected", r.rejected), ("wrongly contradicted", r.wrongly_contradicted),
                              ("wrongly confirmed", r.wrongly_accepted), ("let through", r.let_through),
                              ("unjudged", r.unjudged)):  # fmt: skip
            out += [f"  {title}: {m.reply} | {m.what} | {m.said!r} | {m.detail}" for m in misses]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--code", type=Path, help="a checkout whose pipeline/ judges the set instead of this one"
    )
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--details", action="store_true", help="list every miss")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"shared data folder {args.data} not found: pass --data DIR or set FOCUS_SHARED_DATA")
    replies = load_set()
    by = {k: sum(r.kind == k for r in replies) for k in KINDS}
    sets = sorted({r.dataset for r in replies})
    print(f"{len(replies)} replies ({by['faithful']} faithful, {by['bad']} bad) of {', '.join(sets)}; "
          f"{sum(len(r.claims) for r in replies)} judged claims; checker: {args.code or ROOT}")  # fmt: skip
    print("\n".join(_lines(score(replies, args.data), args.details)))
    held_out = [r for r in replies if r.held_out]
    print(f"\nheld out ({len(held_out)} replies written after the fixes, not tuned on):")
    print("\n".join(_lines(score(held_out, args.data), args.details)))


if __name__ == "__main__":
    main()
