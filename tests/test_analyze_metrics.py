"""analyze's pure parts: text metrics against brute force and hand counts, the claim parser on free text,
the faithfulness verdicts on poses with known geometry, and the negative control."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from pipeline.analyze.controls import contradict
from pipeline.analyze.text_metrics import (
    clip_token_counts,
    fk_grade,
    mtld,
    ngram_repetition,
    style_consistency,
    text_summary,
    words,
)
from pipeline.claims import parse_claims
from pipeline.faithfulness import check_description
from pipeline.geometry import image_facts
from pipeline.records import ImageAnnotation, Person, empty_keypoints

# ---- poses with known geometry (image coordinates, y down; MPII order) --------------------------------


def _person(points: dict[int, tuple[float, float]], v: int = 2) -> Person:
    kps = empty_keypoints()
    for j, (x, y) in points.items():
        kps[j] = (x, y, v)
    return Person(keypoints=kps)


def standing_left_arm_up(dx: float = 0.0) -> Person:
    """Standing, straight legs; right arm hanging straight; left arm straight up above the head."""
    p = {9: (100, 20), 8: (100, 40), 7: (100, 50), 6: (100, 120), 2: (90, 120), 3: (110, 120), 1: (90, 170),
         4: (110, 170), 0: (90, 220), 5: (110, 220), 12: (85, 50), 13: (115, 50), 11: (82, 85), 10: (80, 120),
         14: (120, 25), 15: (124, 0)}  # fmt: skip
    return _person({j: (x + dx, y) for j, (x, y) in p.items()})


def sitting_person(dx: float = 0.0) -> Person:
    """Seated: thighs horizontal, knees at 90 degrees, arms lowered and bent."""
    p = {9: (100, 20), 8: (100, 40), 7: (100, 50), 6: (100, 120), 2: (92, 120), 3: (108, 120), 1: (50, 122),
         4: (60, 122), 0: (50, 175), 5: (60, 175), 12: (85, 50), 13: (115, 50), 11: (80, 90), 10: (55, 95),
         14: (120, 90), 15: (140, 95)}  # fmt: skip
    return _person({j: (x + dx, y) for j, (x, y) in p.items()})


def _checks(text: str, ann: ImageAnnotation):
    facts = image_facts([p.keypoints for p in ann.people], [p.center for p in ann.people])
    parsed = parse_claims(text, activity=ann.activity, category=ann.category)
    return parsed, check_description(parsed, ann, facts)


def _verdicts(res) -> dict[str, str]:
    return {
        c.claim.label + (f"@{c.claim.subject[1]}" if c.claim.subject else ""): c.verdict for c in res.checks
    }


# ---- text metrics ------------------------------------------------------------------------------------


def test_metrics_need_no_network(monkeypatch):
    """Everything text_summary uses must work offline (textstat>=0.7.9 would download cmudict)."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    import textstat.backend.utils as textstat_utils

    from pipeline.analyze import text_metrics

    # Drop what earlier tests loaded, so that the dictionary and the BPE vocabulary load again, offline.
    text_metrics._tokenizer.cache_clear()
    getattr(textstat_utils.get_cmudict, "cache_clear", lambda: None)()
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    summary = text_summary(["The person is standing. Their left arm is raised.", "Two people are sitting."])
    assert summary["n"] == 2 and summary["fk_grade"]["n"] == 2 and summary["clip_tokens"]["mean"] > 5


def test_words_and_clip_tokens_match_open_clip():
    import open_clip

    texts = ["The person's left arm is raised.", "Two people; one is sitting. " * 20, ""]
    assert words(texts[0]) == ["the", "person's", "left", "arm", "is", "raised"]
    counts = clip_token_counts(texts)
    ids = open_clip.tokenize(texts[:1])  # pads with 0 after the end token
    assert counts[0] == int((ids[0] != 0).sum())
    assert counts[1] > 77 and counts[2] == 2  # the long one overflows CLIP's context; empty = start + end


def test_style_consistency_equals_brute_force_pairwise_cosine():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    from pipeline.analyze.text_metrics import _WORD

    texts = ["the person is standing with arms raised", "the person is sitting with legs bent",
             "two people are lying on the floor", "a person stands; the left arm is straight"]  # fmt: skip
    sim = cosine_similarity(TfidfVectorizer(token_pattern=_WORD.pattern).fit_transform(texts))
    n = len(texts)
    brute = (sim.sum() - np.trace(sim)) / (n * (n - 1))
    assert style_consistency(texts) == pytest.approx(brute, abs=1e-9)
    assert style_consistency(["same words here"] * 3) == pytest.approx(1.0)
    assert style_consistency(["alpha beta", "gamma delta"]) == pytest.approx(0.0)
    assert style_consistency(["only one"]) is None


def test_mtld_hand_counts():
    # "x x x ...": the TTR drops to 0.5 at every second token -> one factor per 2 tokens -> MTLD 2.
    assert mtld(["x"] * 10) == pytest.approx(2.0)
    # a b c a: TTR 0.75 never reaches 0.72 -> only a partial factor (1 - 0.75) / (1 - 0.72) = 0.893.
    assert mtld(["a", "b", "c", "a"]) == pytest.approx(4 / ((1 - 0.75) / (1 - 0.72)))
    assert mtld(["all", "different", "words"]) is None  # no factor at all: undefined, not infinite
    assert mtld([]) is None


def test_trigram_repetition_and_readability():
    assert ngram_repetition(["a", "b", "c", "a", "b", "c"]) == pytest.approx(
        0.25
    )  # abc bca cab abc: 1 of 4 repeats
    assert ngram_repetition(["a", "b"]) is None
    easy = "The cat sat. The dog ran. We had fun."
    hard = ("Notwithstanding considerable methodological heterogeneity, comprehensive investigations "
            "systematically demonstrated substantial physiological adaptations.")  # fmt: skip
    assert fk_grade(easy) < 3 < 12 < fk_grade(hard)
    assert fk_grade("") is None


# ---- claims ------------------------------------------------------------------------------------------


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


# ---- faithfulness ------------------------------------------------------------------------------------


def test_faithful_description_is_confirmed_and_wrong_one_contradicted():
    ann = ImageAnnotation(image="x.jpg", people=[standing_left_arm_up()])
    right = ("One person is standing. Their left arm is raised above their head and straight. Their right "
             "arm is lowered and straight. Their legs are straight. Their torso is upright.")  # fmt: skip
    parsed, res = _checks(right, ann)
    assert len(res.checks) == 10 and {c.verdict for c in res.checks} == {"confirmed"}, _verdicts(res)
    _, res = _checks(contradict(right), ann)
    v = _verdicts(res)
    assert v["count=2"] == "contradicted" and v["state=sitting"] == "contradicted"
    assert v["left arm raised=False"] == "contradicted" and v["right arm raised=True"] == "contradicted"
    assert sum(x == "contradicted" for x in v.values()) >= 8


def test_two_people_positions_and_ambiguous_subjects():
    ann = ImageAnnotation(image="x.jpg", people=[sitting_person(dx=400), standing_left_arm_up()])
    text = ("Two people. The person on the left is standing and the person on the right is sitting. "
            "The person in the center is lying. Someone is standing.")  # fmt: skip
    _, res = _checks(text, ann)
    v = [(c.claim.kind, c.claim.value, c.verdict) for c in res.checks]
    assert ("state", "standing", "confirmed") in v and ("state", "sitting", "confirmed") in v
    assert ("position", "center", "contradicted") in v  # no center among two people
    assert ("state", "lying", "unverifiable") in v  # about nobody present
    # "Someone is standing" has no subject: the last one named is "the person in the center" -> nobody.
    swapped = "Two people. The person on the left is sitting and the person on the right is standing."
    _, res = _checks(swapped, ann)
    assert [c.verdict for c in res.checks if c.claim.kind == "state"] == ["contradicted", "contradicted"]


def test_unannotated_joints_make_claims_unverifiable_and_are_flagged():
    person = standing_left_arm_up()
    person.keypoints[[13, 14, 15]] = empty_keypoints()[[13, 14, 15]]  # left arm not annotated (v = 0)
    ann = ImageAnnotation(image="x.jpg", people=[person])
    _, res = _checks("The person is standing. Their left arm is raised.", ann)
    assert [c.verdict for c in res.checks if c.claim.part == "left arm"] == ["unverifiable"]
    assert res.missing_joint_mentions == ["left arm"]
    _, res = _checks("The person is standing. Their left arm is out of frame.", ann)
    assert res.missing_joint_mentions == []  # saying it is not visible is faithful
    assert [c.verdict for c in res.checks if c.claim.kind == "visible"] == ["confirmed"]


def test_bend_margin_tolerates_threshold_edges():
    # Elbow at about 150 degrees: geometry says "slightly bent"; "straight" is within the 10 degree margin.
    p = standing_left_arm_up()
    p.keypoints[10, :2] = (62, 113.7)  # right forearm turned 30 degrees out: elbow at 150
    ann = ImageAnnotation(image="x.jpg", people=[p])
    angle = image_facts([p.keypoints])[0].limbs["right arm"].angle
    assert 145 < angle < 155
    _, res = _checks("Their right arm is straight. Their right arm is sharply bent.", ann)
    assert [c.verdict for c in res.checks] == ["confirmed", "contradicted"]


def test_contradict_flips_without_cascading():
    assert contradict("The person on the left is standing. Their right arm is raised and straight.") == (
        "The person on the right is sitting. Their right arm is lowered and sharply bent."
    )
    assert contradict("This image shows two people.") == "This image shows three people."
    assert contradict(None) is None


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
