"""describe beyond MPII: prompts, the rules describer and the gate on the real COCO, CrowdPose and AP-10K
files (read by convert's COCO-format reader), and the MPII renderings pinned byte for byte."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from test_describe_rules import csv_annotations, h5_annotations, put_annotations

from pipeline.analyze.controls import contradict
from pipeline.claims import parse_annotated
from pipeline.describe import DescribeConfig, describe
from pipeline.describe.prompting import image_context, load_template
from pipeline.describe.rules import rules_description
from pipeline.describe.validate import judge
from pipeline.faithfulness import CONFIRMED, CONTRADICTED, check_description
from pipeline.instances import annotation_facts
from pipeline.records import ImageAnnotation, Person, empty_keypoints
from pipeline.skeletons import skeleton_for
from pipeline.sources.coco_keypoints import read as read_coco


def coco_rows(path):
    """Every image of a real COCO-format file, each instance kept (crowds and keypoint-less ones too)."""
    return list(read_coco(path).images.values())


# SHA-256 over the renderings of 40 single-person CSV images + 20 multi-person validation images, computed
# on main (11e42ac) before prompts learned other skeletons: MPII prompts and rules text must not move a byte.
MPII_RENDERINGS = {
    "paper": "7b198d97e7cf074911ed7be7809a916a21b82c0eeae00374f2e78c08cd148d2d",
    "grounded": "6c4907e69d5811b756f709aabc346c879f7995fd604b34b364220c0c7c4d1545",
    "rules": "fb224f4591664b0b7027f4259d91b522f750745b50bdc9f3ff241caa215cf1a9",
}


def mpii_rendering_hashes(shared_data: Path) -> dict[str, str]:
    rows = csv_annotations(shared_data, 40) + h5_annotations(shared_data, 20)
    out = {}
    for family in ("paper", "grounded"):
        tpl, h = load_template(family), hashlib.sha256()
        for ann in rows:
            for message in tpl.messages(image_context(ann, with_facts=tpl.uses_facts)):
                h.update(json.dumps(message, sort_keys=True).encode() + b"\n")
        out[family] = h.hexdigest()
    tpl, h = load_template("rules"), hashlib.sha256()
    for ann in rows:
        h.update(rules_description(tpl, image_context(ann)).encode() + b"\n")
    out["rules"] = h.hexdigest()
    return out


def test_mpii_renderings_are_unchanged(shared_data):
    assert mpii_rendering_hashes(shared_data) == MPII_RENDERINGS


# ---- the real COCO-format files ----------------------------------------------------------------------

COCO_IMAGES = ("000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg")
COCO_JOINTS = (
    "0 nose, 1 left eye, 2 right eye, 3 left ear, 4 right ear, 5 left shoulder, 6 right shoulder, "
    "7 left elbow, 8 right elbow, 9 left wrist, 10 right wrist, 11 left hip, 12 right hip, 13 left knee, "
    "14 right knee, 15 left ankle, 16 right ankle."
)
AP10K_JOINTS = (
    "0 left eye, 1 right eye, 2 nose, 3 neck, 4 root of tail, 5 left shoulder, 6 left elbow, "
    "7 left front paw, 8 right shoulder, 9 right elbow, 10 right front paw, 11 left hip, 12 left knee, "
    "13 left back paw, 14 right hip, 15 right knee, 16 right back paw."
)
# What the rules describer writes for the skier of 000000000785.jpg; checked against the photo: one person
# skiing, upright, the left arm (image right) hanging straight with the pole, the right arm bent at the
# elbow, both knees a little bent, skis apart.
SKIER = (
    "This image shows one person. The person is standing. Their torso is upright. Their left arm is "
    "lowered and straight. Their right arm is lowered and slightly bent. Their left leg is slightly bent. "
    "Their right leg is slightly bent. Their feet are apart."
)
# ... and for the two AP-10K images (what tests/test_animals.py checks against the photos).
JAGUAR = (
    "This image shows one jaguar. The jaguar is facing left. Its head, body, left front leg, right front "
    "leg, left back leg and right back leg are visible."
)
ANTELOPE = JAGUAR.replace("jaguar", "antelope")


@pytest.fixture(scope="module")
def coco(shared_data) -> dict[str, ImageAnnotation]:
    return {a.image: a for a in coco_rows(shared_data / "coco_format/coco/test_coco.json")}


@pytest.fixture(scope="module")
def crowdpose(shared_data) -> dict[str, ImageAnnotation]:
    return {a.image: a for a in coco_rows(shared_data / "coco_format/crowdpose/test_crowdpose.json")}


@pytest.fixture(scope="module")
def ap10k(shared_data) -> dict[str, ImageAnnotation]:
    return {a.image: a for a in coco_rows(shared_data / "coco_format/ap10k/test_ap10k.json")}


def rules_text(ann: ImageAnnotation) -> str:
    return rules_description(load_template("rules"), image_context(ann))


def test_rules_describer_on_real_coco_crowdpose_and_ap10k(coco, crowdpose, ap10k):
    assert tuple(coco) == COCO_IMAGES and [a.skeleton.name for a in coco.values()] == ["coco-17"] * 4
    assert rules_text(coco["000000000785.jpg"]) == SKIER
    assert rules_text(ap10k["000000037516.jpg"]) == JAGUAR
    assert rules_text(ap10k["000000000004.jpg"]) == ANTELOPE
    for ann in [*coco.values(), *crowdpose.values()]:
        text = rules_text(ann)
        # Every annotated instance counts (two have no keypoints), only those with keypoints are described.
        n = len(ann.people)
        counted = ["one person", "two people", "three people", "four people", "five people"][n - 1]
        assert text.startswith(f"This image shows {counted}.")
        described = sum(p.num_known > 0 for p in ann.people)
        assert (
            text.count(" is standing.")
            + text.count(" is sitting.")
            + text.count(" is lying.")
            + text.count(" is unclear.")
            == described
        ), text
        # COCO marks no head top or upper neck: nothing is said about the head; CrowdPose marks both.
        assert ("Their head is" in text) == (ann.skeleton.name == "crowdpose-14"), text
        # What it says checks out against the keypoints (through the MPII view), and nothing contradicts.
        checks = check_description(parse_annotated(text, ann), ann, annotation_facts(ann))
        assert checks.counts()[CONTRADICTED] == 0 and checks.counts()[CONFIRMED] >= 2 * described
        assert checks.missing_joint_mentions == []


def test_crowd_regions_are_not_people(coco):
    ann = coco["000000040083.jpg"]
    crowd = Person(keypoints=empty_keypoints(17), label="person", source_box=(0, 0, 90, 60), crowd=True)
    with_crowd = replace(ann, people=[crowd, *ann.people])
    assert rules_text(with_crowd) == rules_text(ann)
    for family in ("paper", "grounded"):
        tpl = load_template(family)
        assert tpl.messages(image_context(with_crowd)) == tpl.messages(image_context(ann))
    assert judge(rules_text(ann), "stop", with_crowd) == ("ok", None)


def test_prompts_speak_of_the_subject_and_the_skeletons_joints(coco, ap10k):
    person = load_template("paper").messages(image_context(coco["000000000785.jpg"], with_facts=False))
    assert "Each person has 17 keypoints, always in this order: " + COCO_JOINTS in person[0]["content"]
    assert '"label" (what the source calls it)' in person[0]["content"]
    sent = json.loads(person[1]["content"])
    assert sent["count"] == 1 and sent["activity"] is None
    assert sent["people"][0]["label"] == "person" and len(sent["people"][0]["kpts"]) == 17

    animal = load_template("paper").messages(image_context(ap10k["000000037516.jpg"], with_facts=False))
    system = animal[0]["content"]
    assert system.startswith(
        "You are an expert animal pose analyst. You receive the 2-D keypoints of the animals"
    )
    assert "Each animal has 17 keypoints, always in this order: " + AP10K_JOINTS in system
    assert "its head, body, left front leg, right front leg, left back leg, right back leg" in system
    assert "person" not in system and "human" not in system
    sent = json.loads(animal[1]["content"])
    assert list(sent) == ["activity", "count", "istrain", "animals"]
    assert sent["animals"][0]["label"] == "jaguar" and sent["animals"][0]["kpts"][1] == [-1, -1]  # right eye

    grounded = load_template("grounded").messages(image_context(ap10k["000000037516.jpg"]))
    assert "Each animal has 17 keypoints" in grounded[0]["content"]
    assert grounded[1]["content"].endswith(
        "Facts:\nJaguar 1:\n- faces: left\n- visible parts: head, body, left front leg, right front leg, "
        "left back leg, right back leg"
    )
    grounded = load_template("grounded").messages(image_context(coco["000000040083.jpg"]))
    assert "Each person has 17 keypoints" in grounded[0]["content"]
    assert "Person 3:\n- no keypoint is visible" in grounded[1]["content"]
    assert "- body state: sitting" in grounded[1]["content"] and "- head:" not in grounded[1]["content"]


def test_a_custom_skeleton_gets_the_paper_prompt_from_its_categories_entry(shared_data):
    """A keypoint file whose joints match no built-in (here the real COCO file with its joints renamed, as a
    dataset of its own would name them) still gets the paper-style prompt in its own words."""
    data = json.loads((shared_data / "coco_format/coco/test_coco.json").read_text())
    names = [f"marker {i}" for i in range(17)]
    sk = skeleton_for(names, data["categories"][0]["skeleton"])
    ann = replace(coco_rows(shared_data / "coco_format/coco/test_coco.json")[0], skeleton=sk)
    assert sk.name.startswith("custom-") and not sk.human
    system, user = load_template("paper").messages(image_context(ann, with_facts=False))
    assert system["content"].startswith(
        "You are an expert pose analyst. You receive the 2-D keypoints of the instances"
    )
    assert (
        "Each instance has 17 keypoints, always in this order: 0 marker 0, 1 marker 1," in system["content"]
    )
    assert "then describes its marker 0, marker 1," in system["content"]
    assert json.loads(user["content"])["instances"][0]["label"] == "person"
    # The rules describer gives what such keypoints support: the count and which joints are visible; the gate
    # takes it (the category names the instance, no pose claim is asked for).
    assert rules_text(ann).startswith("This image shows one person. The marker 0, marker 1, marker 2,")
    assert judge(rules_text(ann), "stop", ann) == ("ok", None)


# ---- the gate ----------------------------------------------------------------------------------------

# The skier of 000000000785.jpg as a good LLM would describe it (not in the rules describer's words).
SKIER_LLM = (
    "One person is skiing down a snowy slope. The person is standing with their feet apart and both knees "
    "slightly bent. Their left arm hangs straight down holding a pole, while their right arm is lowered and "
    "slightly bent at the elbow. Their torso is upright."
)


def test_gate_judges_coco_people_like_mpii_people(coco):
    ann = coco["000000000785.jpg"]
    assert judge(SKIER_LLM, "stop", ann) == ("ok", None)
    # The negative control flips the count too (n -> n + 1): that alone is caught; with the count put
    # back, the flipped postures are.
    flipped = contradict(SKIER_LLM)
    assert judge(flipped, "stop", ann) == ("invalid", "says 2 people, the annotations have 1")
    status, why = judge(flipped.replace("Two people is", "One person is"), "stop", ann)
    assert status == "invalid" and why.startswith("5 of 8 checked claims contradict the keypoints"), why
    # Head posture is unverifiable on COCO (no head top or upper neck), so it neither counts as a checked
    # claim nor contradicts: a reply of nothing else has too few checkable pose claims.
    assert judge("One person is skiing. Their head is bowed.", "stop", ann) == (
        "invalid",
        "too few checkable pose claims (0 < 3)",
    )
    # ... and talking about the COCO head is not talking about unknown joints (its face joints are known).
    assert judge(SKIER_LLM + " Their head is turned to the side.", "stop", ann) == ("ok", None)
    # Counts include the two people without keypoints; crowd regions would not count.
    three = coco["000000040083.jpg"]
    assert judge(rules_text(three), "stop", three) == ("ok", None)
    assert judge(rules_text(three).replace("three people", "two people"), "stop", three) == (
        "invalid",
        "says 2 people, the annotations have 3",
    )


def test_gate_on_animals_checks_count_species_instances_and_facing(ap10k):
    jaguar = ap10k["000000037516.jpg"]
    llm = (
        "A single jaguar prowls along a concrete wall, heading to the left with its head held low and its "
        "long spotted tail curling up behind it. All four legs are visible, the front ones mid-stride."
    )
    # No pose claim is checkable on an animal: a faithful description needs none.
    assert judge(llm, "stop", jaguar) == ("ok", None)
    assert judge(JAGUAR, "stop", jaguar) == ("ok", None)
    cases = [
        ("Two jaguars are walking to the left along a wall.", "says 2 jaguars, the annotations have 1"),
        (
            "This image shows three animals by a wall. The jaguar is facing left.",
            "says 3 animals, the annotations have 1",
        ),
        (
            "A big cat is walking along a concrete wall towards the left, its tail curled.",
            "never names what it describes (jaguar)",
        ),
        (
            JAGUAR + " Jaguar 2 is lying in the corner.",
            "describes an animal the annotations do not have (1 animal): ",
        ),
        (
            "One jaguar is facing right, walking along the wall.",
            "1 of 2 checked claims contradict the keypoints",
        ),
        ("I'm an AI model designed to describe animals. The jaguar is facing left.", "meta talk"),
    ]
    for text, reason in cases:
        status, why = judge(text, "stop", jaguar)
        assert status == "invalid" and why.startswith(reason), (text, why)
    # Not a posture: the human words say nothing checkable about an animal, and cost nothing either.
    assert judge("One jaguar. Its left leg is raised and its torso is upright.", "stop", jaguar) == (
        "ok",
        None,
    )


def test_gate_keeps_the_rules_describer_ok_on_every_real_file(coco, crowdpose, ap10k):
    for ann in [*coco.values(), *crowdpose.values(), *ap10k.values()]:
        assert judge(rules_text(ann), "stop", ann) == ("ok", None), ann.image


# ---- describe end to end -----------------------------------------------------------------------------


@pytest.fixture
def coco_store(store, coco, crowdpose, ap10k):
    put_annotations(store, "coco", list(coco.values()))
    put_annotations(store, "crowdpose", list(crowdpose.values()))
    put_annotations(store, "ap10k", list(ap10k.values()))
    return store


def test_describe_rules_on_coco_and_ap10k(cli, coco_store):
    for name in ("coco", "ap10k"):
        res = cli("describe", "--annotations", name, "--backend", "rules", "--name", f"{name}-rules")
        assert res.exit_code == 0, res.output
    coco_df = pd.read_parquet(coco_store.path("descriptions", "coco-rules") / "descriptions.parquet")
    assert list(coco_df.image) == list(COCO_IMAGES) and set(coco_df.status) == {"ok"}
    assert coco_df.description.iloc[0] == SKIER
    animals = pd.read_parquet(coco_store.path("descriptions", "ap10k-rules") / "descriptions.parquet")
    assert sorted(animals.description) == sorted([JAGUAR, ANTELOPE]) and set(animals.status) == {"ok"}


@pytest.mark.parametrize("template", ["paper", "grounded"])
def test_describe_openai_on_coco_crowdpose_and_ap10k(coco_store, template):
    with FakeOpenAI() as server:
        for name in ("coco", "crowdpose", "ap10k"):
            cfg = DescribeConfig(annotations=name, backend="openai", base_url=server.url, model="fake",
                                 template=template, name=f"{name}-{template}", timeout=5.0)  # fmt: skip
            summary = describe(cfg, coco_store)
            assert summary["ok"] == summary["rows"], summary
        requests = server.requests
    sent = [json.JSONDecoder().raw_decode(r["user"][r["user"].index("{") :])[0] for r in requests]
    assert len(requests) == 8
    for r, obj in zip(requests, sent, strict=True):
        if "people" in obj:  # people: the skeleton's own joints, each person labelled as the file labels them
            joints = "17 keypoints, always in this order: " + COCO_JOINTS
            if len(obj["people"][0].get("kpts", obj["people"][0].get("keypoints"))) == 14:  # CrowdPose
                joints = "14 keypoints, always in this order: 0 left shoulder, 1 right shoulder,"
            assert "Each person has " + joints in r["system"]
            assert {p["label"] for p in obj["people"]} == {"person"}
        else:  # AP-10K: the species in the user message, the animal skeleton's joints in the system prompt
            assert "Each animal has 17 keypoints, always in this order: " + AP10K_JOINTS in r["system"]
            assert (
                len(obj["animals"]) == 1
                and len(obj["animals"][0].get("kpts", obj["animals"][0].get("keypoints"))) == 17
            )
            if template == "grounded":
                assert "- faces: left" in r["user"]
    assert sum("people" in obj for obj in sent) == 6
    assert {a["label"] for obj in sent for a in obj.get("animals", [])} == {"jaguar", "antelope"}
    # The fake server answered as the rules describer would for the skeleton the system prompt lists.
    df = pd.read_parquet(coco_store.path("descriptions", f"ap10k-{template}") / "descriptions.parquet")
    assert sorted(df.description) == sorted([JAGUAR, ANTELOPE])
