"""analyze beyond MPII: claims about COCO-17 people checked against their keypoints (through the MPII view),
and the report and gallery on the real COCO and AP-10K files (read by convert's COCO-format reader)."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from test_analyze_stage import publish_annotations
from test_describe_skeletons import SKIER_LLM

from pipeline.analyze.controls import contradict
from pipeline.claims import parse_annotated, parse_claims
from pipeline.describe import DescribeConfig, describe
from pipeline.faithfulness import CONFIRMED, CONTRADICTED, UNVERIFIABLE, check_description
from pipeline.instances import annotation_facts
from pipeline.sources.coco_keypoints import read as read_coco


def coco_rows(path):
    """Every image of a real COCO-format file, each instance kept (crowds and keypoint-less ones too)."""
    return list(read_coco(path).images.values())


@pytest.fixture(scope="module")
def skier(shared_data):
    return coco_rows(shared_data / "coco_format/coco/test_coco.json")[0]


def verdicts(text: str, ann) -> dict[str, str]:
    checks = check_description(parse_annotated(text, ann), ann, annotation_facts(ann))
    return {c.claim.label: c.verdict for c in checks.checks}


def test_coco_claims_are_checked_against_coco_keypoints(skier):
    assert skier.image == "000000000785.jpg" and skier.skeleton.name == "coco-17"
    faithful = verdicts(SKIER_LLM, skier)
    assert set(faithful.values()) == {CONFIRMED} and len(faithful) == 8, faithful
    flipped = verdicts(contradict(SKIER_LLM), skier)
    assert list(flipped.values()).count(CONTRADICTED) == 6 and flipped["count=2"] == CONTRADICTED, flipped
    # COCO has no head top: head posture and "above the head" are unverifiable, never guessed; the hand
    # being raised at all is still checked (the wrist against the shoulder) and is wrong here.
    head = verdicts("One person. Their head is bowed. Their left hand is raised above their head.", skier)
    assert head == {
        "count=1": CONFIRMED,
        "head head=bowed": UNVERIFIABLE,
        "left hand raised=True": CONTRADICTED,
        "left arm above_head=True": UNVERIFIABLE,
    }
    # A COCO head is its face joints: all marked visible on the skier, so "not visible" is contradicted.
    assert verdicts("One person; their head is not visible.", skier)["head visible=False"] == CONTRADICTED


def test_claims_name_animals_by_their_species():
    text = (
        "This image shows two zebras and one giraffe. The zebra on the left is facing left. Zebra 3 is "
        "walking to the right. Another zebra on the left is not facing right; the giraffe is moving the left "
        "front leg and looking to its left."
    )
    parsed = parse_claims(text, nouns=("zebra", "giraffe", "animal"), human=False)
    left, second = ("position", "left", 1), ("position", "left", 2)
    assert [(c.kind, c.value, c.subject, c.part) for c in parsed.claims] == [
        ("count", 2, None, "zebra"),
        ("count", 1, None, "giraffe"),
        ("position", "left", left, None),
        ("facing", "left", left, None),
        ("facing", "right", ("index", 3), None),
        ("position", "left", second, None),
    ]
    # Facing is read for animals only, and the species words only when given: people parse as before.
    assert [c.kind for c in parse_claims(text).claims] == []
    assert [c.kind for c in parse_claims("Two people. The person on the left is facing left.").claims] == [
        "count",
        "position",
    ]


def test_analyze_reports_coco_and_animals(cli, store, shared_data):
    root = shared_data / "coco_format"
    for name in ("coco", "ap10k"):
        publish_annotations(store, name, coco_rows(root / name / f"test_{name}.json"))
        describe(DescribeConfig(annotations=name, backend="rules", name=f"{name}-rules"), store)
        res = cli("analyze", "--descriptions", f"{name}-rules", "--negative-control", "--images", root / name,
                  "--name", name)  # fmt: skip
        assert res.exit_code == 0, res.output

    coco = json.loads((store.path("reports", "coco") / "report.json").read_text())
    rules, flipped = coco["per_source"]["rules"], coco["per_source"]["rules (flipped)"]
    assert rules["faithfulness"]["descriptions"] == 4 and rules["faithfulness"]["agreement"] == 1.0
    assert "head" not in rules["faithfulness"]["by_kind"]  # COCO: nothing said about the head posture
    assert rules["coverage"]["part_coverage"] > 0.9 and flipped["faithfulness"]["agreement"] < 0.3
    assert coco["gallery"]["cards"] == 4

    animals = json.loads((store.path("reports", "ap10k") / "report.json").read_text())
    rules, flipped = animals["per_source"]["rules"]["faithfulness"], animals["per_source"]["rules (flipped)"]
    # What is checked on an animal: the count per species and the side it faces; no human part to cover.
    assert rules["agreement"] == 1.0 and set(rules["by_kind"]) == {"count", "facing"}
    assert rules["by_kind"]["facing"]["confirmed"] == 2 and rules["by_kind"]["count"]["confirmed"] == 2
    assert flipped["faithfulness"]["by_kind"]["facing"]["contradicted"] == 2
    assert animals["per_source"]["rules"]["coverage"]["part_coverage"] is None
    html = (store.path("reports", "ap10k") / "report.html").read_text()
    cards = json.loads(re.search(r'<script id="cards" type="application/json">(.*?)</script>', html).group(1))
    assert sorted(c["noun"][0] for c in cards) == ["antelope", "jaguar"]  # "1 jaguar", not "1 person"
    assert all(c["people"] == 1 and c["img"].startswith("data:image/jpeg;base64,") for c in cards)
    checks = pq.read_table(store.path("reports", "ap10k") / "checks.parquet").to_pandas()
    assert set(checks.loc[checks.kind == "facing", "text"]) == {"facing left", "facing right"}
