"""pipeline.claims: what the parser reads in descriptions as people and models write them (subjects, counts,
postures, parts and their predicates, negation, masking), and the patterns of pipeline.claim_patterns."""

from __future__ import annotations

import pytest

from pipeline.claim_patterns import PEOPLE_SUBJECTS, noun_patterns
from pipeline.claims import parse_claims


def test_parser_reads_free_text_claims_with_subjects():
    text = ("In this image, two people are playing volleyball. The person on the left is standing with "
            "their right arm raised above their head and the left arm bent at the elbow. The right person is "
            "sitting; both legs are bent.")  # fmt: skip
    got = [(c.kind, c.subject and c.subject[1], c.part, c.value) for c in parse_claims(text).claims]
    assert got == [
        ("count", None, None, 2),
        ("position", "left", None, "left"),
        ("state", "left", None, "standing"),
        ("raised", "left", "right arm", True),
        ("above_head", "left", "right arm", True),
        ("bend", "left", "left arm", "bent"),
        ("position", "right", None, "right"),
        ("state", "right", None, "sitting"),
        ("bend", "right", "left leg", "bent"),
        ("bend", "right", "right leg", "bent"),
    ]


def test_parser_rules_negation_masking_joined_parts_and_ranks():
    # MPII activity labels are full of postures: they are not claims about the pose.
    p = parse_claims("This image shows one person; the activity is standing, talking in person (misc).",
                     activity="standing, talking in person", category="misc")  # fmt: skip
    assert [c.kind for c in p.claims] == ["count"]
    assert [c.kind for c in parse_claims("The person is not sitting.").claims] == []
    p = parse_claims("Their left arm and right leg are raised.")
    assert [(c.part, c.kind, c.value) for c in p.claims] == [
        ("left arm", "raised", True),
        ("right leg", "raised", True),
    ]
    p = parse_claims(
        "The person on the left is standing. Another person on the left is lying. Person 3 sits."
    )
    assert [c.subject for c in p.claims if c.kind == "state"] == [
        ("position", "left", 1), ("position", "left", 2), ("index", 3)]  # fmt: skip
    p = parse_claims("The left leg is not visible.")
    assert [(c.kind, c.value) for c in p.claims] == [("visible", False)] and p.mentions[0].says_invisible
    p = parse_claims("Their arms are crossed and their feet are shoulder-width apart.")
    assert {(c.kind, c.value) for c in p.claims} == {("arms_crossed", True), ("feet_apart", True)}


def test_parser_reads_what_strong_models_write():
    """Forms found in tests/calibration's replies (benchmarks/gate_calibration.py)."""

    def got(text):
        return [(c.label, c.subject) for c in parse_claims(text).claims]

    right, left = ("position", "right", 1), ("position", "left", 1)
    # Subjects at the head of a sentence; "the others" are nobody in particular.
    assert got("On the right, one person stands. Left: head tilted.") == [
        ("position=right", right), ("count=1", None), ("state=standing", right), ("position=left", left),
        ("head head=tilted", left)]  # fmt: skip
    assert got("Person on the right: seated.")[-1] == ("state=sitting", right)
    assert got("The person on the left sits; the others stand.")[-1] == ("state=standing", ("unresolved",))
    # A raise whose subject is the hand is the hand's; an arm's own raise stays the arm's.
    assert got("The right arm is sharply bent, the hand raised to the chest.") == [
        ("right arm bend=sharply bent", None), ("right hand raised=True", None)]  # fmt: skip
    assert got("Their right arm is raised, the hand open.")[0] == ("right arm raised=True", None)
    assert got("Both hands hang down.") == [
        ("left hand raised=False", None),
        ("right hand raised=False", None),
    ]
    # A bare comma separates clauses; "and" lists parts that share the predicate.
    assert got("Kneeling on the right knee, left leg extended.") == [("left leg bend=straight", None)]
    # A single limb's words override the same sentence's "both arms".
    assert got("Both arms are extended, the left elbow slightly bent.") == [
        ("right arm bend=straight", None), ("left arm bend=slightly bent", None)]  # fmt: skip
    # Hedges and levels.
    head = parse_claims("The head is tilted slightly to the left.").claims[0]
    assert head.label == "head head=tilted" and head.hedged
    assert got("The left knee is a little bent; the right leg is almost fully extended.") == [
        ("left leg bend=slightly bent", None), ("right leg bend=nearly straight", None)]  # fmt: skip
    assert got("The torso is bent over at the hips.") == [("torso torso=bent forward", None)]
    # How many people the words imply.
    assert parse_claims("A second person stands behind them.").people_implied == 2
    assert parse_claims("Another person on the right is sitting.").people_implied == 2
    assert parse_claims("The person on the left is sitting.").people_implied == 0


def test_parser_on_paper_style_llm_text():
    text = ("The image shows 1 person who is bicycling. The individual is seated on the bike with the torso "
            "leaning forward. The left leg is bent at the knee, while the right leg is nearly straight. Both "
            "arms are extended towards the handlebars. The head is upright and facing forward.")  # fmt: skip
    got = [(c.kind, c.part, c.value, text[c.start : c.end]) for c in parse_claims(text).claims]
    assert got == [
        ("count", None, 1, "1 person"),
        ("state", None, "sitting", "seated"),
        ("torso", "torso", "leaning", "leaning"),
        ("bend", "left leg", "bent", "bent"),
        ("bend", "right leg", "nearly straight", "nearly straight"),
        ("bend", "left arm", "straight", "extended"),
        ("bend", "right arm", "straight", "extended"),
        ("head", "head", "upright", "upright"),
    ]


@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("The person is standing. Papers are lying on the desk.", ["standing"]),
        ("A ball is lying at her feet while she stands.", ["standing"]),
        ("The man is sitting on a bench; a dog is lying beside him.", ["sitting"]),
        ("Two bikes stand against the wall. The person is sitting.", ["sitting"]),
        ("Their bag is lying on the floor, and they are lying on the mat.", ["lying"]),
        # the person is still the subject when a thing follows a person word or opens the sentence
        ("The woman in the red jacket is standing.", ["standing"]),
        ("The man by the car is sitting.", ["sitting"]),
        ("Standing on the left, the person raises an arm.", ["standing"]),
    ],
)
def test_postures_of_things_are_not_claims_about_the_person(text, states):
    assert [c.value for c in parse_claims(text).claims if c.kind == "state"] == states


def test_an_instance_noun_is_never_a_thing():
    claims = parse_claims("The dog is lying down.", nouns=("dog",), human=False).claims
    assert [c.value for c in claims if c.kind == "state"] == ["lying"]


def test_subject_and_noun_patterns():
    assert PEOPLE_SUBJECTS.adj.search("and the far left player is seated").group(0) == "the far left player"
    assert PEOPLE_SUBJECTS.prep.search("Another person standing on the right waves").group(2) == "right"
    assert PEOPLE_SUBJECTS.index.search("player #2 jumps").group(1) == "2"
    zebras = noun_patterns(("zebra", "argali sheep"))
    m = zebras.count.search("There are two argali  sheep and a single zebra.")
    assert (m.group(1), zebras.forms[" ".join(m.group(2).lower().split())]) == ("two", "argali sheep")
    assert zebras.subjects.adj.search("the left zebra grazes").group(0) == "the left zebra"
    assert noun_patterns(("zebra", "argali sheep")) is zebras  # built once per image's nouns


def test_a_noun_count_and_subject_are_read_per_noun():
    p = parse_claims("Two zebras and one giraffe. The zebra on the left is facing right.",
                     nouns=("zebra", "giraffe", "animal"), human=False)  # fmt: skip
    assert [(c.kind, c.part, c.value) for c in p.claims] == [
        ("count", "zebra", 2), ("count", "giraffe", 1), ("position", None, "left"), ("facing", None, "right"),
    ]  # fmt: skip
    assert [c.subject for c in p.claims][-2:] == [("position", "left", 1)] * 2


def test_empty_text_claims_nothing():
    assert parse_claims("").claims == [] and parse_claims("").mentions == []
