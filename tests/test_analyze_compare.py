"""analyze with a text-only and an image-grounded descriptions artifact of the same real images: the side by
side comparison (length, faithfulness, the words the image adds, by class) in report.json, report.md and the
HTML gallery; and clauses about people the annotations do not have claim nothing in analyze either."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from fake_openai import VISION_SCENE, FakeOpenAI
from test_analyze_stage import _chromium, _run_browser, publish_descriptions
from test_describe_rules import csv_annotations, put_annotations

from pipeline.analyze import AnalyzeConfig, analyze
from pipeline.analyze.compare import added_words, content_words, word_class
from pipeline.describe import DescribeConfig, describe
from pipeline.describe.validate import Gate
from pipeline.facts import pose_facts

MPII = "mpii/mmpose_tests"


def test_added_words_and_their_classes():
    text = "One person is standing. Their left arm is raised and their torso is upright."
    image = text + " " + VISION_SCENE
    # Pose words said again are not additions; plurals fold; a word the text-only one has is not added.
    assert content_words(text) == set()
    assert added_words(image, [text]) == [
        "dark", "floor", "grey", "hall", "indoor", "jacket", "sneaker", "trouser", "wall", "wear", "white",
        "wooden",
    ]  # fmt: skip
    assert added_words(image, [text + " The floor is wooden."]) == [
        "dark", "grey", "hall", "indoor", "jacket", "sneaker", "trouser", "wall", "wear", "white",
    ]  # fmt: skip
    classes = {w: word_class(w) for w in added_words(image, [text])}
    assert [w for w, c in classes.items() if c == "clothes"] == ["jacket", "sneaker", "trouser"]
    assert [w for w, c in classes.items() if c == "scene"] == ["floor", "hall", "indoor", "wall"]
    assert word_class("boxes") == "objects" and word_class("sunglasses") == "clothes"
    assert word_class("watches") is None  # "a crowd watches" is not a wristwatch


@pytest.fixture
def two_artifacts(store, shared_data):
    """descriptions/text (paper prompt, keypoints only) and descriptions/vision (grounded-image, the photo)
    of the five real MPII images, from the local OpenAI-protocol server."""
    names = {p.name for p in (shared_data / MPII).glob("*.jpg")}
    rows = [r for r in csv_annotations(shared_data, 17372) if r.image in names]
    put_annotations(store, "mpii", rows)
    common = {"annotations": "mpii", "backend": "openai", "model": "gpt-4o", "concurrency": 2}
    with FakeOpenAI() as server:
        describe(DescribeConfig(**common, base_url=server.url, name="text"), store)
        describe(DescribeConfig(**common, base_url=server.url, name="vision", with_image=True,
                                images=str(shared_data / MPII)), store)  # fmt: skip
    return store


def test_text_only_and_image_grounded_side_by_side(two_artifacts, shared_data):
    store = two_artifacts
    summary = analyze(AnalyzeConfig(descriptions=["text", "vision"], images=shared_data / MPII), store)
    assert summary["image_grounded"] == ["gpt-4o/grounded-image"]
    (c,) = summary["comparisons"]
    assert c["text_source"] == "gpt-4o/paper" and c["image_source"] == "gpt-4o/grounded-image"
    assert c["images"] == 5 and c["descriptions"] == {"text": 5, "image": 5}
    # The fake vision model says what the keypoint describer says, plus VISION_SCENE (24 more words).
    assert c["words"]["image"] - c["words"]["text"] == pytest.approx(len(VISION_SCENE.split()), abs=0.5)
    assert c["added_words_per_description"] == 12.0 and c["with_added_words"] == 1.0
    assert c["added_by_class_per_description"] == {"clothes": 3.0, "objects": 0.0, "scene": 4.0}
    assert ["jacket", 5] in c["top_added_words"]
    assert c["faithfulness"]["text"]["agreement"] == c["faithfulness"]["image"]["agreement"] == 1.0
    report = store.path("reports", "text_vision")  # the default name (store names cannot hold "+")
    md = (report / "report.md").read_text()
    assert (
        "## Text-only vs image-grounded" in md
        and "| Content words the image adds / description | – | 12.0 |" in md
    )
    html = (report / "report.html").read_text()
    assert "Text-only vs image-grounded" in html and "the image adds: " in html
    cards = json.loads(html.split('<script id="cards" type="application/json">', 1)[1].split("</script>")[0])
    assert len(cards) == 5 and all(len(card["descriptions"]) == 2 for card in cards)
    for card in cards:
        text, vision = sorted(card["descriptions"], key=lambda d: d["with_image"])
        assert not text["with_image"] and text["added"] == []
        assert vision["with_image"] and ["jacket", "clothes"] in vision["added"]
        assert card["img"].startswith("data:image/jpeg;base64,")  # the photo beside both descriptions


def test_no_comparison_without_an_image_grounded_source(two_artifacts):
    summary = analyze(AnalyzeConfig(descriptions=["text"]), two_artifacts)
    assert summary["comparisons"] == [] and summary["image_grounded"] == []
    assert (
        "Text-only vs image-grounded" not in (two_artifacts.path("reports", "text") / "report.md").read_text()
    )


def test_scene_people_claim_nothing_in_analyze(store, shared_data):
    (ann,) = [r for r in csv_annotations(shared_data, 17372) if r.image == "060754485.jpg"]  # standing
    put_annotations(store, "mpii", [ann])
    text = (
        "One person stands upright with both legs straight; the torso and head are upright. The left arm "
        "hangs straight down by their side. Another man sits on the truck's step behind them."
    )
    from pipeline.describe.validate import judge

    assert judge(text, "stop", pose_facts(ann), Gate(background_people="scene")) == ("ok", None)
    publish_descriptions(store, "scene", [{"image": ann.image, "source": "vlm", "description": text}], "mpii")
    analyze(AnalyzeConfig(descriptions=["scene"]), store)
    checks = pq.read_table(store.path("reports", "scene") / "checks.parquet").to_pylist()
    states = [c["value"] for c in checks if c["kind"] == "state"]
    assert states == ["standing"] and not [c for c in checks if c["verdict"] == "contradicted"]


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (CI installs Debian's chromium)")
def test_the_gallery_shows_both_descriptions_and_what_the_image_adds(two_artifacts, shared_data, tmp_path):
    analyze(
        AnalyzeConfig(descriptions=["text", "vision"], images=shared_data / MPII, name="page"), two_artifacts
    )
    page = (two_artifacts.path("reports", "page") / "report.html").resolve()
    res = _run_browser(_chromium(), tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom",
                       page.as_uri())  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert dom.count('<article class="card">') == 5 and dom.count('class="desc"') == 10
    assert dom.count(">saw the image <") == 5 and dom.count(">the image adds: ") == 5
    assert "jacket (clothes)" in dom and "hall (scene)" in dom
