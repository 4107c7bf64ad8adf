"""The gate and the claim checker on good text (benchmarks/gate_calibration.py, tests/calibration): faithful
replies written from real images' keypoints in a strong model's words pass the gate and their claims are not
contradicted where a reader of the keypoints accepts them, while realistic bad replies stay rejected."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from fake_openai import _FLIP, _FLIP_RE

from pipeline.claims import parse_annotated
from pipeline.convert import ConvertConfig, select
from pipeline.describe.prompting import image_context, load_template
from pipeline.describe.rules import rules_description
from pipeline.describe.validate import Gate, judge
from pipeline.faithfulness import CONFIRMED, CONTRADICTED, check_description
from pipeline.instances import annotation_facts
from pipeline.sources.formats import read_source

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_calibration.py"
_spec = importlib.util.spec_from_file_location("gate_calibration", _PATH)
gc = importlib.util.module_from_spec(_spec)
sys.modules["gate_calibration"] = gc
_spec.loader.exec_module(gc)


def test_the_set_holds_what_it_says():
    replies = gc.load_set()
    faithful = [r for r in replies if r.kind == "faithful"]
    bad = [r for r in replies if r.kind == "bad"]
    assert len(faithful) >= 40 and len(bad) >= 15
    assert {r.dataset for r in faithful} == {"mpii", "coco", "crowdpose", "ap10k"}
    assert {"paper", "prose", "terse", "hedged"} <= {r.style for r in faithful}
    assert len({r.id for r in replies}) == len(replies)
    # Faithful by construction: no claim of theirs a reader rejects; each bad reply says what is wrong.
    assert [(r.id, j.at) for r in faithful for j in r.claims if j.reader == "reject"] == []
    assert all(r.wrong for r in bad) and not any(r.wrong for r in faithful)


def test_a_malformed_row_names_its_line(tmp_path):
    row = json.loads(gc.SET.read_text(encoding="utf-8").splitlines()[0])
    row["claims"][0]["reader"] = "maybe"
    path = tmp_path / "replies.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"replies\.jsonl:1: .*maybe"):
        gc.load_set(path)


def test_the_gate_and_checker_meet_the_goals(shared_data):
    report = gc.score(gc.load_set(), shared_data)
    assert report.unjudged == [], "claims with no judgement: add them to tests/calibration (see its README)"
    assert report.rejected_share <= gc.GOAL_REJECTED, report.rejected
    assert report.wrongly_contradicted_share <= gc.GOAL_WRONGLY_CONTRADICTED, report.wrongly_contradicted
    assert report.let_through == [], report.let_through
    # The bad replies' wrong claims are caught, not waved through as unverifiable or confirmed.
    assert report.rejected_claims_contradicted >= 0.85 * report.rejected_claims
    assert len(report.wrongly_accepted) <= 0.05 * report.rejected_claims, report.wrongly_accepted


def _checks(text, ann):
    return {
        c.claim.label: c.verdict
        for c in check_description(parse_annotated(text, ann), ann, annotation_facts(ann)).checks
    }


def test_the_reported_cases(shared_data):
    """The three misses the issue reported, on the images they were found on (the activity CSV rows)."""
    csv = shared_data / "mpii/csv_activity/mpii_dataset.csv"
    images, _ = select(list(read_source(csv).images.values()), ConvertConfig(sources=[csv]))
    by_name = {a.image: a for a in images}
    truck, guide = by_name["004645041.jpg"], by_name["051423444.jpg"]
    # "task" for the activity is not talk about the prompt; talk about the prompt still is.
    activity = "The task involves lifting and securing heavy items. The person is standing upright."
    assert judge(activity, "stop", truck, Gate(min_pose_claims=1)) == ("ok", None)
    for meta in ("The task is to describe the pose: the person is standing upright.",
                 "Following the template, the person is standing upright.",
                 "The input data shows the person standing upright."):  # fmt: skip
        status, why = judge(meta, "stop", truck, Gate(min_pose_claims=1))
        assert status == "invalid" and why.startswith("meta talk"), (meta, why)
    # A head 27 deg from vertical in line with a 17 deg lean: "tilted slightly" holds.
    leaning = by_name["060754485.jpg"]
    assert _checks("The head is tilted slightly to the left.", leaning)["head head=tilted"] == CONFIRMED
    # A hand at shoulder height on a bent arm is a raised hand, not a contradicted raised arm.
    said = _checks(
        "The right arm is bent at the elbow, with the hand raised to about shoulder height.", guide
    )
    assert said == {"right arm bend=bent": CONFIRMED, "right hand raised=True": CONFIRMED}
    # The same words on a hanging arm are still wrong.
    assert _checks("The left hand is raised to about shoulder height.", truck)["left hand raised=True"] == (
        CONTRADICTED
    )


def test_flipped_rules_descriptions_stay_rejected(shared_data):
    """The weak-model garbage of the gate's tests: the rules describer's words flipped (tests/fake_openai.py),
    on real multi-person and single images of valid.h5."""
    path = shared_data / "mpii/hourglass_annot/valid.h5"
    images, _ = select(list(read_source(path).images.values()), ConvertConfig(sources=[path]))
    rules = load_template("rules")
    rows = images[:400]
    flipped = [
        _FLIP_RE.sub(lambda m: _FLIP[m.group(1)], rules_description(rules, image_context(a))) for a in rows
    ]
    invalid = sum(judge(t, "stop", a)[0] == "invalid" for t, a in zip(flipped, rows, strict=True))
    assert invalid / len(rows) >= 0.99, invalid
