"""describe's quality gate: every failure class a weak model produces ends `invalid` with its reason, while
the rules describer and faithful descriptions stay `ok`; each threshold is tested on both sides."""

from __future__ import annotations

import pytest
from fake_openai import BAD_REPLIES, bad_reply, faithful
from test_analyze_metrics import sitting_person, standing_left_arm_up
from test_describe_rules import csv_annotations, h5_annotations

from pipeline.describe.prompting import image_context, load_template
from pipeline.describe.rules import rules_description
from pipeline.describe.validate import Gate, echo_share, judge
from pipeline.facts import pose_facts
from pipeline.records import ImageAnnotation

ONE = pose_facts(
    ImageAnnotation(image="a.jpg", activity="yoga", category="sports", people=[standing_left_arm_up()])
)
TWO = pose_facts(ImageAnnotation(image="b.jpg", people=[standing_left_arm_up(), sitting_person(dx=300)]))
# Written as a good LLM writes them, not in the rules describer's words.
FAITHFUL_ONE = (
    "This image shows one person doing yoga. The person is standing tall with both legs straight and their "
    "feet planted on the ground. Their left arm is raised straight above their head, while the right arm "
    "hangs down by their side. Their torso is upright and the head is held level."
)
FAITHFUL_TWO = (
    "Two people are in this image. The person on the left is standing with their left arm raised above "
    "their head and their right arm hanging straight down; their legs are straight. The person on the right "
    "is sitting, with both knees bent and the arms lowered."
)

# The paper template's shape: count and activity, its general attributes, then each person part by part.
PAPER_STYLE_ONE = (
    "In this image, one person is practising yoga. Yoga is a slow, balanced activity in which the body holds "
    "a posture for a while. The person is standing upright on both feet. Their left leg and right leg are "
    "straight, with the feet planted on the ground. The left arm is stretched straight up above the head, "
    "while the right arm hangs down by their side. The torso is upright and the head is upright, facing "
    "forward."
)
PAPER_STYLE_TWO = (
    "This image shows two people. The activity calls for one person to stand while the other sits. The "
    "person on the left is standing upright: both legs are straight, the left arm is raised above their "
    "head and the right arm is lowered. The person on the right is seated; their knees are bent, both arms "
    "are lowered and bent at the elbows, and their torso is upright."
)


def test_faithful_descriptions_are_ok():
    assert judge(FAITHFUL_ONE, "stop", ONE) == ("ok", None)
    assert judge(FAITHFUL_TWO, "stop", TWO) == ("ok", None)
    assert judge(PAPER_STYLE_ONE, "stop", ONE) == ("ok", None)
    assert judge(PAPER_STYLE_TWO, "stop", TWO) == ("ok", None)
    # An angle is something the keypoints do give.
    angle = FAITHFUL_ONE + " The right elbow is straight, at about 170 degrees."
    assert judge(angle, "stop", ONE) == ("ok", None)


def test_rules_describer_stays_ok_on_real_annotations(shared_data):
    rules = load_template("rules")
    rows = csv_annotations(shared_data, 60) + h5_annotations(shared_data, 20)
    every = [pose_facts(a) for a in rows]
    verdicts = [judge(rules_description(rules, image_context(f)), "stop", f) for f in every]
    assert [v for v in verdicts if v[0] != "ok"] == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("json", "echoes the prompt"),
        ("mangled", "JSON or code"),
        ("echo", "echoes the prompt"),
        ("meta", "meta talk"),
        ("measure", "measurement the keypoints cannot give"),
        ("coords", "coordinates or keypoint numbers"),
        ("placeholder", "template placeholder"),
        ("list", "a list restating the template"),
        ("count", "says 3 people, the annotations have 1"),
        ("invent", "describes 2 different people, the annotations have 1"),
        ("limb", "describes the left arm, whose keypoints are all unknown"),
        ("contradict", "checked claims contradict the keypoints"),
        ("short", "too short"),
        ("offtopic", "too few checkable pose claims (0 < 3)"),
    ],
)
def test_each_bad_reply_is_invalid_with_its_reason(fault, reason):
    person = standing_left_arm_up()
    person.keypoints[[13, 14, 15], :] = (0, 0, 0)  # the left arm unannotated: what "limb" invents
    ann = pose_facts(ImageAnnotation(image="c.jpg", activity="yoga", people=[person]))
    messages = load_template("paper").messages(image_context(ann))
    prompt = [m["content"] for m in messages]
    reply = bad_reply(fault, messages[-1]["content"], messages[0]["content"])
    assert judge(faithful(messages[-1]["content"]), "stop", ann, prompt=prompt) == ("ok", None)
    status, why = judge(reply, "stop", ann, prompt=prompt)
    assert status == "invalid" and reason in why, (fault, why)


def test_shape_statuses():
    assert judge(FAITHFUL_ONE, "length", ONE)[0] == "truncated"
    assert judge("I'm sorry, but I can't describe people.", "stop", ONE)[0] == "refused"
    assert judge("  ", "stop", ONE)[0] == "refused" and judge(None, "stop", ONE)[0] == "refused"
    assert judge(FAITHFUL_ONE, "content_filter", ONE)[0] == "refused"


def test_length_thresholds():
    text = "The person stands."  # 18 characters
    assert judge(text, "stop", ONE, Gate(min_chars=19))[1] == "too short (18 chars < 19)"
    assert judge(text, "stop", ONE, Gate(min_chars=18, min_pose_claims=1)) == ("ok", None)
    assert judge(FAITHFUL_ONE, "stop", ONE, Gate(max_chars=len(FAITHFUL_ONE) - 1))[0] == "invalid"
    assert judge(FAITHFUL_ONE, "stop", ONE, Gate(max_chars=len(FAITHFUL_ONE)))[0] == "ok"


def test_echo_threshold():
    prompt = (
        "Describe the pose. For example: the person is standing with both arms hanging down by their side."
    )
    copied = "The person is standing with both arms hanging down by their side. " + FAITHFUL_ONE
    share = echo_share(copied, [prompt])
    assert 0 < share < 0.5
    assert judge(copied, "stop", ONE, prompt=[prompt]) == ("ok", None)
    status, why = judge(copied, "stop", ONE, Gate(max_echo=share - 0.01), prompt=[prompt])
    assert status == "invalid" and why.startswith("echoes the prompt")
    assert judge(copied, "stop", ONE, Gate(max_echo=share), prompt=[prompt])[0] == "ok"
    # Messages are read as one text, a line break between them: a 5-gram may run across two of them.
    words = prompt.split(" ")
    split = [" ".join(words[:9]), " ".join(words[9:11]), " ".join(words[11:])]  # the middle one 2 words long
    assert echo_share(copied, split) == share and echo_share(copied, words) == share


def test_list_threshold():
    items = [
        "1. The person is standing upright.",
        "2. Their left arm is raised above their head.",
        "3. Overall impression: the scene looks calm.",
        "4. Mood: focused on the activity at hand.",
    ]
    half = "\n".join(items)  # 2 of 4 items make no pose claim
    assert judge(half, "stop", ONE, Gate(min_pose_claims=2)) == ("ok", None)
    status, why = judge(half, "stop", ONE, Gate(min_pose_claims=2, max_list_share=0.49))
    assert status == "invalid" and why == "a list restating the template (2 of 4 items make no pose claim)"


def test_contradiction_threshold():
    # One wrong claim among the checked ones: the right arm hangs down.
    text = (
        "One person. The person is standing. Their left arm is raised above their head. Their right arm "
        "is raised too. Their torso is upright and their head is upright."
    )
    status, why = judge(text, "stop", ONE, Gate(max_contradicted=0.1))
    assert status == "invalid" and "right arm raised=True (right arm: lowered)" in why
    wrong, settled = (int(x) for x in why.split(" checked")[0].split(" of "))
    assert judge(text, "stop", ONE, Gate(max_contradicted=wrong / settled)) == ("ok", None)
    assert judge(text, "stop", ONE, Gate(max_contradicted=wrong / settled - 0.01))[0] == "invalid"


def test_min_pose_claims_threshold_and_its_cap():
    text = "This image shows one person doing yoga. The person is standing, left arm raised."
    assert judge(text, "stop", ONE, Gate(min_pose_claims=2)) == ("ok", None)
    assert judge(text, "stop", ONE, Gate(min_pose_claims=3)) == (
        "invalid",
        "too few checkable pose claims (2 < 3)",
    )
    # Only the head is annotated: one checkable fact, so one claim is all a description can give.
    head_only = standing_left_arm_up()
    head_only.keypoints[:8, :] = 0
    head_only.keypoints[10:, :] = 0
    ann = pose_facts(ImageAnnotation(image="d.jpg", people=[head_only]))
    assert judge("One person is visible here; their head is upright.", "stop", ann) == ("ok", None)


def test_people_that_the_image_does_not_have():
    assert judge(FAITHFUL_TWO.replace("Two people", "Three people"), "stop", TWO)[1] == (
        "says 3 people, the annotations have 2"
    )
    status, why = judge(FAITHFUL_TWO + " Person 3 is standing in the back.", "stop", TWO)
    assert status == "invalid" and "the annotations do not have" in why


# ---- through the openai backend against the local OpenAI-protocol server ------------------------------
REASONS = {
    "json": "echoes the prompt", "mangled": "JSON or code", "echo": "echoes the prompt",
    "meta": "meta talk", "measure": "measurement", "coords": "coordinates",
    "placeholder": "template placeholder", "list": "a list restating the template", "count": "says 3 people",
    "invent": "describes 2 different people",
    "limb": "describes the left leg, whose keypoints are all unknown",
    "contradict": "contradict the keypoints", "short": "too short",
    "offtopic": "too few checkable pose claims",
}  # fmt: skip


@pytest.fixture
def live(shared_data, store, tmp_path):
    """16 real single-person images (row 14 has no leg joints) in the store, the paper prompt tagged with
    the image name (so the server can answer per image), and the server."""
    import shutil

    from fake_openai import FakeOpenAI
    from test_describe_rules import put_annotations

    from pipeline.describe.prompting import PROMPTS_DIR

    rows = csv_annotations(shared_data, 16)
    put_annotations(store, "mpii", rows)
    folder = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "paper", folder)
    (folder / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")
    with FakeOpenAI() as server:
        yield server, [r.image for r in rows], str(folder)


def _cfg(server, template, **kw):
    from pipeline.describe import DescribeConfig

    base = {
        "annotations": "mpii",
        "backend": "openai",
        "base_url": server.url,
        "model": "fake",
        "template": template,
        "concurrency": 4,
        "timeout": 2.0,
        "max_retries": 1,
        "backoff": 0.01,
    }
    return DescribeConfig(**(base | kw))  # fmt: skip


def test_every_failure_class_from_the_server_ends_invalid(live, store):
    import pandas as pd

    from pipeline.describe import describe

    server, im, template = live
    faults = [f for f in BAD_REPLIES if f != "limb"]
    script = {im[i]: f for i, f in enumerate(faults)} | {im[14]: "limb"}
    server.script = {image: [fault] for image, fault in script.items()}
    summary = describe(_cfg(server, template), store)
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert set(script.values()) == set(BAD_REPLIES)
    for image, fault in script.items():
        assert df.loc[image, "status"] == "invalid", (fault, df.loc[image, "description"])
        assert REASONS[fault] in df.loc[image, "error"], (fault, df.loc[image, "error"])
    assert summary["invalid"] == len(BAD_REPLIES) and summary["ok"] == 16 - len(BAD_REPLIES)
    # The gate's process gave judge's own verdicts: the next run re-judges every row on its own thread
    # (rejudge) and changes none, and sends nothing.
    again = describe(_cfg(server, template), store)
    assert again["cache_hits"] == 16 and again.get("requests_sent", 0) == 0
    assert {k: again[k] for k in ("ok", "invalid")} == {k: summary[k] for k in ("ok", "invalid")}
    assert (
        pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet")
        .set_index("image")
        .equals(df)
    )


def test_the_gate_process_judges_as_the_loop_would_and_after_its_death_the_loop_judges():
    import asyncio

    from pipeline.describe.judging import JudgeProcess

    req = _request(ONE, FAITHFUL_ONE)
    texts = [FAITHFUL_ONE, "I'm sorry, I can't.", FAITHFUL_ONE.replace("right arm", "left leg"), None]
    expected = [judge(t, "stop", ONE) for t in texts]
    with JudgeProcess([req], Gate()) as judging:
        assert asyncio.run(_ask(judging, req, texts)) == expected and expected[0] == ("ok", None)
    assert judging.cpu_s > 0 and judging.gone is None
    with JudgeProcess([req], Gate()) as judging:
        judging._process.kill()
        assert asyncio.run(_ask(judging, req, texts)) == expected
    assert judging.gone and "died mid-run (exit code -9)" in judging.gone


def test_a_run_whose_gate_process_dies_fails_and_keeps_every_paid_reply(live, store):
    """The gate's process is killed while the first asks are at the server: the run fails, every reply the
    server sent is judged and journaled, and the re-run sends only the rows left."""
    import multiprocessing
    import sqlite3
    import threading
    import time

    import pandas as pd

    from pipeline.describe import describe
    from pipeline.errors import PipelineError

    server, im, template = live
    server.latency = 0.5

    def kill_the_gate() -> None:
        while len(server.requests) < 4:
            time.sleep(0.01)
        for child in multiprocessing.active_children():
            if child.name == "describe-gate":
                child.kill()

    killer = threading.Thread(target=kill_the_gate)
    killer.start()
    with pytest.raises(PipelineError, match=r"the gate's process \(\d+\) died mid-run .* re-run to send"):
        describe(_cfg(server, template), store)
    killer.join()
    paid = len(server.requests)
    db = sqlite3.connect(store.staging_dir("descriptions", "mpii") / "journal.sqlite")  # kept for the re-run
    kept = dict(db.execute("SELECT image, status FROM results").fetchall())
    assert 4 <= paid < 16 and len(kept) == paid and set(kept.values()) == {"ok"}
    server.latency = 0.0
    again = describe(_cfg(server, template), store)
    assert len(server.requests) == 16 and again["requests_sent"] == 16 - paid and again["ok"] == 16
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet")
    assert sorted(df.image) == sorted(im)


def _request(facts, text):
    from pipeline.describe.config import DescriptionRequest

    return DescriptionRequest(image="a.jpg", sample=0, source="fake", model="fake", template="paper",
                              template_hash="h", cache_key="k", facts=facts, text=text)  # fmt: skip


async def _ask(judging, req, texts):
    return [await judging.judge(req, t, "stop") for t in texts]


def test_retry_invalid_reasks_and_keeps_every_ask(live, store):
    import sqlite3

    import pandas as pd

    from pipeline.describe import describe

    server, im, template = live
    server.script = {im[0]: ["meta", "ok"], im[1]: ["list", "offtopic", "short"], im[2]: ["count"]}
    summary = describe(_cfg(server, template, retry_invalid=2, price_input=1.0, price_output=1.0), store)
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert df.loc[im[0], "status"] == "ok" and df.loc[im[0], "attempts"] == 2
    assert df.loc[im[1], "status"] == "invalid" and df.loc[im[1], "attempts"] == 3
    assert df.loc[im[1], "error"].startswith("a list restating")  # the first of equally bad asks is kept
    assert summary["reasks"] == 1 + 2 + 1 and summary["requests_sent"] == 16 + 4
    # Re-asks send a new seed and a warmer temperature.
    sent = [(r["seed"], r["temperature"]) for r in server.requests if im[1] in r["user"]]
    assert sent == [(None, 0.5), (1, 0.7), (2, 0.9)]
    db = sqlite3.connect(store.path("descriptions", "mpii") / "journal.sqlite")
    asks = db.execute("SELECT cache_key, ask, status, cost_usd FROM asks").fetchall()
    assert len(asks) == 16 + 4
    row = df.loc[im[1]]
    mine = [a for a in asks if a[0] == row.cache_key]
    assert [a[1:3] for a in mine] == [(0, "invalid"), (1, "invalid"), (2, "invalid")]
    # Every ask is paid for: the row's cost is their sum, and the artifact's total is the journal's.
    assert row.cost_usd == pytest.approx(sum(a[3] for a in mine)) and row.cost_usd > 0
    assert df.cost_usd.sum() == pytest.approx(sum(a[3] for a in asks))


def test_a_leg_merely_not_lifted_is_not_asked_for():
    """As on 4 real validation images: one upper arm and two thighs annotated; the rules describer states
    the arm only (the legs are known not to be lifted, which goes unsaid)."""
    person = standing_left_arm_up()
    person.keypoints[[0, 5, 6, 7, 8, 9, 10, 11, 12, 15], :] = 0  # left shoulder + elbow, hips + knees remain
    ann = pose_facts(ImageAnnotation(image="e.jpg", people=[person]))
    text = rules_description(load_template("rules"), image_context(ann))
    assert "leg" not in text and judge(text, "stop", ann) == ("ok", None)


def test_a_changed_gate_rejudges_the_journal_without_asking_again(live, store):
    import pandas as pd

    from pipeline.describe import describe

    server, im, template = live
    server.script = {im[0]: ["offtopic"]}
    first = describe(_cfg(server, template), store)
    assert first["ok"] == 15 and first["invalid"] == 1
    strict = describe(_cfg(server, template, gate=Gate(min_chars=2000), allow_partial=True), store)
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet")
    assert (
        strict["requests_sent"] == 0
        and strict["invalid"] == 16
        and df.error.str.startswith("too short").all()
    )
    again = describe(_cfg(server, template), store)
    assert again["requests_sent"] == 0 and again["ok"] == 15 and len(server.requests) == 16


def test_reasks_stop_at_the_budget(live, store):
    import sqlite3

    from pipeline.describe import describe
    from pipeline.errors import PipelineError

    server, im, template = live
    server.script = {im[0]: ["meta*"]}  # invalid however often it is asked
    cap = 0.0015  # $1 per 1M tokens: room for a few asks of ~500 tokens, not for 4 + the other rows
    cfg = _cfg(server, template, retry_invalid=3, concurrency=1, max_tokens=64, max_cost=cap,
               price_input=1.0, price_output=1.0)  # fmt: skip
    with pytest.raises(PipelineError, match="stopped at --max-cost"):
        describe(cfg, store)
    journal = next(store.root.rglob("journal.sqlite"))
    asks = sqlite3.connect(journal).execute("SELECT status, cost_usd FROM asks").fetchall()
    assert 1 < len(asks) < 4 and {s for s, _ in asks} == {"invalid"}  # the budget cut the re-asks
    assert sum(c for _, c in asks) <= cap
