"""People the annotations do not have, in descriptions of photographs: describe's gate rejects them by
default, allows them as scene under --background-people scene (their clauses then claim nothing), and
realistic faithful vision replies (clothes, objects, scene) stay ok. Real MPII annotations; the replies
describe the real images in shared/data/mpii/mmpose_tests."""

from __future__ import annotations

import pytest
from test_describe_rules import csv_annotations

from pipeline.bystanders import find_bystanders, mask_bystanders
from pipeline.claims import parse_claims
from pipeline.describe.validate import Gate, judge
from pipeline.errors import PipelineError
from pipeline.facts import pose_facts

# What a GPT-4o-class model writes for these images with the grounded-image prompt: the pose as the facts say,
# plus clothes, objects and scene. Each CSV row annotates one person (the first of the image).
VISION = {
    "005808361.jpg": (
        "This image shows one person curling. The person sits in a wheelchair on the ice of an indoor "
        "curling rink, wearing a white and red team jacket with a maple leaf, black gloves and dark "
        "trousers, with a curling stick held beside the chair. Their torso is upright and their head is "
        "upright. Their right arm is raised and sharply bent, with the gloved hand near the shoulder, "
        "while the left arm is lowered and bent, resting on the stick. Both legs are slightly bent at the"
        " knees."
    ),
    "052475643.jpg": (
        "One person is sitting on a chair on a dark stage, talking and gesturing with both hands. They "
        "wear a black T-shirt with a small red logo, khaki trousers and dark shoes, and sheets of paper "
        "lie on the floor in front of them. The person is seated with an upright torso and an upright "
        "head. Both arms are raised and sharply bent at the elbows, the hands held up near the face as if"
        " signing. The left leg is bent and the right leg is slightly bent, with both feet on the floor."
    ),
    "060754485.jpg": (
        "This image shows one person standing in front of a white semi truck with its hood open, in a "
        "sunny parking lot. They wear sunglasses, a white polo shirt with a red logo and beige trousers. "
        "The person stands upright with both legs straight and the feet planted on the ground. The left "
        "arm hangs straight down by their side, and the right arm is lowered and straight, the hand "
        "resting near the truck's bumper. The torso is upright and the head is upright."
    ),
    "051423444.jpg": (
        "One person stands in a large parking lot beside a white box truck, pointing a remote toward it. "
        "The person wears a white short-sleeved shirt, light grey trousers and dark shoes; orange traffic"
        " cones and trees are in the distance. They are standing upright with the torso and head upright."
        " The left arm is lowered and slightly bent, and the right arm is lowered and bent, holding a "
        "small device in front of the body."
    ),
    "004645041.jpg": (
        "One person is standing next to a white truck whose hood is tilted open, showing the engine. They"
        " wear a white polo shirt, khaki trousers and a wristwatch. The person stands upright, torso and "
        "head upright. The left arm is lowered and straight at their side, while the right arm is raised "
        "and slightly bent, the hand resting on the engine."
    ),
}
# People the annotations (one person each) do not have, as vision models add them.
ADDED = {
    "crowd": ("005808361.jpg", " A crowd watches in the background.", "crowd watches in the background"),
    "another": (
        "060754485.jpg",
        " Another man sits on the truck's step behind them, watching.",
        "Another man sits on the truck's step behind them",
    ),
    "spectators": (
        "060754485.jpg",
        " Behind a barrier, two seated spectators are leaning forward.",
        "seated spectators are leaning forward",
    ),
    "partner": (
        "052475643.jpg",
        " Their partner is standing beside them.",
        "Their partner is standing beside them",
    ),
}


@pytest.fixture(scope="module")
def rows(shared_data):
    return {r.image: pose_facts(r) for r in csv_annotations(shared_data, 17372) if r.image in VISION}


def test_faithful_vision_replies_are_ok(rows):
    assert set(rows) == set(VISION)
    for image, text in VISION.items():
        assert find_bystanders(text, 1) == [], image
        assert judge(text, "stop", rows[image], saw_image=True) == ("ok", None), image
        scene = Gate(background_people="scene")
        assert judge(text, "stop", rows[image], scene, saw_image=True) == ("ok", None), image


@pytest.mark.parametrize("case", sorted(ADDED))
def test_people_not_annotated_are_rejected_by_default_and_scene_when_asked(rows, case):
    image, added, clause = ADDED[case]
    text = VISION[image] + added
    status, why = judge(text, "stop", rows[image], saw_image=True)
    assert status == "invalid"
    assert why.startswith("describes people the annotations do not have (1 annotated)")
    assert repr(clause) in why, why
    assert judge(text, "stop", rows[image], Gate(background_people="scene"), saw_image=True) == ("ok", None)
    # A text-only reply is judged as before image input existed: its model was shown no bystander to invent
    _, text_only_why = judge(text, "stop", rows[image])
    assert text_only_why is None or "people the annotations do not have" not in text_only_why


def test_scene_clauses_claim_nothing_about_the_annotated_person(rows):
    # The annotated person of 060754485 stands; "Another man sits" would contradict that if it were theirs.
    image, added, _ = ADDED["another"]
    text = VISION[image] + added
    found = find_bystanders(text, 1)
    masked = mask_bystanders(text, found)
    assert len(masked) == len(text) and "sits" not in masked and "watching" in masked
    states = {c.value for c in parse_claims(text).claims if c.kind == "state"}
    assert states == {"standing", "sitting"}  # unmasked, the man's posture reads as the person's
    assert {c.value for c in parse_claims(masked).claims if c.kind == "state"} == {"standing"}


def test_what_counts_as_a_mention():
    def rules(text, n=1, **kw):
        return [(b.text.lower(), b.rule) for b in find_bystanders(text, n, **kw)]

    assert rules("Fans cheer while the person jumps.") == [("fans", "background")]
    assert rules("A woman in the background is walking.") == [("a woman in the background", "placed")]
    assert rules("Someone else holds the rope.") == [("someone else", "placed")]
    assert rules("Their coach stands nearby.") == [("their coach", "extra")]
    assert rules("Others are sitting.") == [("others", "extra")]
    # With two annotated people "the other person" and "another person on the right" are theirs.
    assert rules("The other person sits. Another person on the right stands.", n=2) == []
    assert rules("The second person stands in the background.", n=2) == []
    # The annotated person's own things are not people; nor is the activity's own word.
    assert rules("They hold the other hand up; the rest of the body is upright.") == []
    assert rules("A spectator sits in the stands.", activity="sitting at a sporting event, spectator") == []
    # The clause blanked under --background-people scene: the mention, participles before it, to a boundary.
    text = "She kicks as cheering fans stand up, arms raised."
    (b,) = find_bystanders(text, 1)
    assert b.text == "fans" and text[b.clause_start : b.clause_end] == "cheering fans stand up"


def test_the_policy_is_checked():
    with pytest.raises(PipelineError, match="--background-people 'maybe'"):
        Gate(background_people="maybe")
