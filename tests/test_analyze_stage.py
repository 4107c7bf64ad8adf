"""analyze end to end on a temporary store: rules descriptions of real MPII annotations (faithful) against a
deliberately wrong set, the describe schema's statuses and costs, CLI errors, the CLIP score of a tiny
trained run, and report.html rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.analyze import AnalyzeConfig, analyze
from pipeline.analyze.controls import contradict
from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.annotations import write as write_annotations
from pipeline.artifacts.descriptions import SCHEMA as DESCRIPTIONS_SCHEMA
from pipeline.records import ImageAnnotation, Person, empty_keypoints

# ---- real MPII annotations ---------------------------------------------------------------------------


def csv_rows(shared_data: Path, limit: int) -> list[ImageAnnotation]:
    """The first rows of the real activity CSV (one person per image, -1 = unannotated joint)."""
    df = pd.read_csv(shared_data / "mpii/csv_activity/mpii_dataset.csv", nrows=limit)
    xy = df.iloc[:, 2:34].to_numpy(dtype=np.float32).reshape(-1, 16, 2)
    out = []
    for i, rec in enumerate(df.itertuples(index=False)):
        kps = empty_keypoints()
        ok = (xy[i] >= 0).all(axis=1)
        kps[ok, :2], kps[ok, 2] = xy[i][ok], 2
        person = Person(keypoints=kps, scale=float(rec.Scale))
        out.append(ImageAnnotation(rec.NAME, "train", rec.Activity, rec.Category, people=[person]))
    return out


def publish_annotations(store, name: str, rows: list[ImageAnnotation]) -> None:
    with store.create("annotations", name, stage="convert", config={}) as w:
        write_annotations(w.dir / "annotations.parquet", rows)


def publish_descriptions(store, name: str, rows: list[dict], annotations: str | None) -> None:
    defaults = {"sample": 0, "status": "ok", "model": "m", "template": "t", "template_hash": "h",
                "finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                "latency_s": 0.0, "attempts": 1, "error": None, "response_id": None}  # fmt: skip
    full = [defaults | {"cache_key": f"k{i}"} | r for i, r in enumerate(rows)]
    inputs = [store.ref("annotations", annotations)] if annotations else []
    with store.create("descriptions", name, stage="describe", config={}, inputs=inputs) as w:
        pq.write_table(pa.Table.from_pylist(full, schema=DESCRIPTIONS_SCHEMA), w.dir / "descriptions.parquet")


@pytest.fixture
def mpii_rules(cli, store, shared_data):
    """Real MPII annotations converted by the convert stage (the validation split's people joined with the
    activity CSV), 45 single-person and 20 multi-person images of them described by the rules describer,
    and a deliberately wrong copy of those descriptions."""
    from pipeline.describe import DescribeConfig, describe

    mpii = shared_data / "mpii"
    res = cli(
        "convert", mpii / "hourglass_annot/valid.h5", mpii / "csv_activity/mpii_dataset.csv", "--name", "val"
    )
    assert res.exit_code == 0, res.output
    rows = read_annotations(store.path("annotations", "val") / "annotations.parquet")
    rows = [r for r in rows if len(r.people) == 1][:45] + [r for r in rows if len(r.people) > 1][:20]
    assert sum(r.activity is not None for r in rows) > 50
    publish_annotations(store, "mpii", rows)
    describe(DescribeConfig(annotations="mpii", backend="rules", name="mpii-rules"), store)
    rules = pq.read_table(store.path("descriptions", "mpii-rules") / "descriptions.parquet").to_pylist()
    wrong = [r | {"source": "wrong", "description": contradict(r["description"])} for r in rules]
    publish_descriptions(store, "mpii-wrong", wrong, "mpii")
    return rows


# ---- faithfulness on real data -----------------------------------------------------------------------


def test_rules_descriptions_are_faithful_and_wrong_set_is_not(cli, store, mpii_rules):
    res = cli("analyze", "--descriptions", "mpii-rules", "mpii-wrong", "--negative-control",
              "--name", "faith", "--sample", "6")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = store.path("reports", "faith")
    summary = json.loads((out / "report.json").read_text())
    assert summary["sources"] == ["rules", "wrong", "rules (flipped)", "wrong (flipped)"]
    per = {s: v["faithfulness"] for s, v in summary["per_source"].items()}
    rules, wrong, flipped = per["rules"], per["wrong"], per["rules (flipped)"]
    assert rules["descriptions"] == len(mpii_rules)
    assert rules["claims_per_description"] > 8 and rules["verifiable_share"] > 0.95
    assert rules["agreement"] >= 0.99 and rules["with_contradiction"] <= 0.01
    assert rules["mentions_missing_joint"] == 0.0  # the rules describer never talks about unannotated joints
    for kind in ("count", "position", "state", "raised", "bend"):
        assert rules["by_kind"][kind]["confirmed"] > 0, kind
    assert wrong["agreement"] <= 0.3 and wrong["with_contradiction"] >= 0.9
    assert flipped["agreement"] == pytest.approx(wrong["agreement"])  # the same flip, by the CLI flag
    assert re.search(r"rules: \d+ ok, score (1\.000|0\.9\d\d) \(agreement (100\.0|99\.\d)%", res.output), (
        res.output
    )

    md = (out / "report.md").read_text()
    assert "| Metric | rules | wrong | rules (flipped) | wrong (flipped) |" in md and "Agreement" in md
    checks = pq.read_table(out / "checks.parquet").to_pandas()
    assert len(checks) == sum(v["claims"] for v in per.values())
    assert (checks["text"].str.len() > 0).all()
    assert store.meta("reports", "faith")["counts"]["gallery_cards"] == 6


def test_descriptions_from_a_local_openai_server(store, mpii_rules, tmp_path):
    """describe --backend openai against the fake chat-completions server on 127.0.0.1 (some requests
    refused, cut by max tokens or failing), then analyzed beside the rules descriptions."""
    from fake_openai import FakeOpenAI

    from pipeline.describe import DescribeConfig, describe
    from pipeline.describe.prompting import PROMPTS_DIR

    # The paper prompt with the image name in the user message, so the server can fault chosen images.
    template = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "paper", template)
    (template / "user.j2").write_text("Image {{ image }}\n" + (template / "user.j2").read_text())
    images = [r.image for r in mpii_rules[:12]]
    with FakeOpenAI() as server:
        server.script = {images[0]: ["refuse"], images[1]: ["length"], images[2]: ["500*"]}
        cfg = DescribeConfig(annotations="mpii", backend="openai", base_url=server.url, model="gpt-4o-mini",
                             template=str(template), name="fake", limit=12, max_retries=1, backoff=0.01,
                             concurrency=4, timeout=5.0, allow_partial=True)  # fmt: skip
        describe(cfg, store)
    summary = analyze(AnalyzeConfig(descriptions=["mpii-rules", "fake"], name="llm", sample=4), store)
    label = next(s for s in summary["sources"] if s != "rules")
    fake = summary["per_source"][label]
    assert fake["rows"] == 12 and fake["status"]["ok"] == 9
    assert fake["status"]["refused"] + fake["status"]["truncated"] + fake["status"]["error"] == 3
    assert fake["prompt_tokens_per_row"] > 100 and fake["cost_per_row"] > 0  # the paper prompt, priced
    # The fake server answers with the rules describer's words for the prompt's keypoints: all confirmed,
    # and the three failed rows cover nothing.
    assert (
        fake["faithfulness"]["agreement"] == 1.0
        and fake["faithfulness"]["by_kind"]["count"]["confirmed"] == 9
    )
    assert fake["coverage"]["with_checked_claim"] == pytest.approx(9 / 12)
    assert fake["coverage"]["score"] < summary["per_source"]["rules"]["coverage"]["score"]
    md = (store.path("reports", "llm") / "report.md").read_text()
    assert f"| Metric | rules | {label} |" in md


def test_off_topic_replies_cannot_win_the_headline_score(cli, store, mpii_rules):
    """The issue's case: replies that make no checkable claim were all `ok` and scored high agreement."""
    from fake_openai import bad_reply

    rules = pq.read_table(store.path("descriptions", "mpii-rules") / "descriptions.parquet").to_pylist()
    vague = "This image shows one person. They appear calm and focused on what they are doing."
    offtopic = [r | {"source": "offtopic", "description": bad_reply("offtopic", "", "")} for r in rules]
    vague = [r | {"source": "vague", "description": vague} for r in rules]  # agreement 100% on few claims
    publish_descriptions(store, "mpii-offtopic", offtopic + vague, "mpii")
    res = cli("analyze", "--descriptions", "mpii-rules", "mpii-offtopic", "mpii-wrong", "--name", "cover",
              "--sample", "0")  # fmt: skip
    assert res.exit_code == 0, res.output
    per = json.loads((store.path("reports", "cover") / "report.json").read_text())["per_source"]
    score = {s: per[s]["coverage"]["score"] for s in per}
    assert (
        per["rules"]["coverage"]["with_checked_claim"] == 1.0
        and per["rules"]["coverage"]["part_coverage"] > 0.9
    )
    assert score["rules"] > 0.9 and score["offtopic"] == 0.0 and score["wrong"] < 0.3
    assert (
        per["offtopic"]["coverage"]["with_checked_claim"] == 0.0
        and per["offtopic"]["faithfulness"]["claims"] == 0
    )
    # "one person" is confirmed on the single-person images: agreement is high, the score is not.
    assert per["vague"]["faithfulness"]["agreement"] > 0.6 and score["vague"] == 0.0
    md = (store.path("reports", "cover") / "report.md").read_text()
    assert "**Faithfulness score** (agreement × part coverage)" in md


# ---- the describe schema: statuses, costs, several sources -------------------------------------------


def test_statuses_costs_and_same_source_in_two_artifacts(store, shared_data):
    rows = csv_rows(shared_data, 6)
    publish_annotations(store, "ann", rows)
    images = [r.image for r in rows]
    a = [
        {"image": images[0], "source": "gpt", "description": "One person is standing.", "prompt_tokens": 100,
         "completion_tokens": 20, "cost_usd": 0.002},
        {"image": images[1], "source": "gpt", "description": "cut off", "status": "truncated",
         "prompt_tokens": 100, "completion_tokens": 512, "cost_usd": 0.004},
        {"image": images[2], "source": "gpt", "description": None, "status": "refused", "prompt_tokens": 100,
         "completion_tokens": 10, "cost_usd": 0.001},
        {"image": images[3], "source": "gpt", "description": None, "status": "error", "error": "HTTP 500"},
        {"image": images[4], "source": "gpt", "description": "", "status": "invalid"},
        {"image": images[0], "source": "llama", "sample": 1, "description": "Two people are sitting."},
    ]  # fmt: skip
    publish_descriptions(store, "run-a", a, "ann")
    publish_descriptions(
        store, "run-b", [{"image": images[5], "source": "gpt", "description": "A person."}], "ann"
    )
    s = analyze(AnalyzeConfig(descriptions=["run-a", "run-b"], name="mixed", sample=10), store)
    assert s["sources"] == ["run-a/gpt", "llama", "run-b/gpt"]
    gpt = s["per_source"]["run-a/gpt"]
    assert gpt["rows"] == 5 and gpt["text"]["n"] == 1
    assert gpt["status"] == {"ok": 1, "truncated": 1, "refused": 1, "invalid": 1, "error": 1}
    assert gpt["cost_per_row"] == pytest.approx(0.007 / 5) and gpt["prompt_tokens_per_row"] == 60
    llama = s["per_source"]["llama"]["faithfulness"]
    assert llama["by_kind"]["count"]["contradicted"] == 1  # "two people" of a one-person image
    md = (store.path("reports", "mixed") / "report.md").read_text()
    assert "| Status: truncated | 1 | 0 | 0 |" in md
    assert s["gallery"]["cards"] == 2  # only images with a usable description: images[0] and images[5]


def test_without_annotations_reports_quality_only(store):
    publish_descriptions(
        store,
        "free",
        [
            {"image": "a.jpg", "source": "x", "description": "A person stands."},
            {"image": "b.jpg", "source": "x", "description": "Two people sit."},
        ],
        None,
    )
    s = analyze(AnalyzeConfig(descriptions=["free"], sample=2), store)
    assert s["per_source"]["x"]["faithfulness"] is None and s["per_source"]["x"]["text"]["n"] == 2
    assert "Not measured" in (store.path("reports", "free") / "report.md").read_text()


# ---- CLI ---------------------------------------------------------------------------------------------


def test_cli_errors_are_one_line_and_leave_no_artifact(cli, store, store_root, shared_data, tmp_path):
    res = cli("analyze", "--descriptions", "nope")
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        f"error: no artifact descriptions/nope in store {store_root.resolve()} "
        "(see `focus-pipeline store ls`)"
    ]
    publish_annotations(store, "ann", csv_rows(shared_data, 2))
    bad = [{"image": "a.jpg", "source": "x", "description": "ok"},
           {"image": "b.jpg", "source": "x", "description": "?", "status": "weird"}]  # fmt: skip
    publish_descriptions(store, "bad", bad, "ann")
    res = cli("analyze", "--descriptions", "bad")
    assert res.exit_code == 2
    assert "descriptions.parquet: row 1: status 'weird' is not one of ok, truncated" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not store.exists("reports", "bad") and not (store_root / "reports" / ".staging" / "bad").exists()
    res = cli("analyze", "--descriptions", "bad", "--images", "/no/such/folder")
    assert res.exit_code == 2 and "--images /no/such/folder: no such folder" in res.output
    res = cli("analyze", "--descriptions", "bad", "--images", tmp_path, "--run", "r", "--device", "bogus")
    assert res.exit_code == 2 and "--device 'bogus': not a torch device" in res.output  # before the report


def test_cli_takes_several_names_after_one_flag_and_refuses_to_overwrite(cli, store, shared_data):
    rows = csv_rows(shared_data, 3)
    publish_annotations(store, "ann", rows)
    for name in ("a", "b"):
        texts = [{"image": r.image, "source": name, "description": "A person stands."} for r in rows]
        publish_descriptions(store, name, texts, "ann")
    res = cli("analyze", "--descriptions", "a", "b", "--name", "ab", "--sample", "2")
    assert res.exit_code == 0, res.output
    assert json.loads((store.path("reports", "ab") / "report.json").read_text())["sources"] == ["a", "b"]
    res = cli("analyze", "--descriptions", "a", "b", "--name", "ab")
    assert res.exit_code == 2 and "already exists" in res.output
    assert cli("analyze", "--descriptions", "a", "--name", "ab", "--overwrite").exit_code == 0


# ---- CLIP score of a (tiny, untrained) run -----------------------------------------------------------


def test_clip_score_matches_the_model_and_photos_reach_the_gallery(store, shared_data, tmp_path):
    import open_clip
    import torch
    from PIL import Image

    from training.inference import load_model
    from training.towers import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("focus-tiny")
    with store.create(
        "runs",
        "tiny",
        stage="train",
        config={"arch": "focus-tiny", "model_type": "clip", "context_length": 77, "image_size": 64},
    ) as w:
        torch.save(model.state_dict(), w.dir / "model.pt")
    rows = csv_rows(shared_data, 4)
    publish_annotations(store, "ann", rows)
    texts = ["A person is standing.", "A person is sitting with both legs bent.", "A skier.", "A cook."]
    publish_descriptions(store, "d", [{"image": r.image, "source": "s", "description": t}
                                      for r, t in zip(rows, texts, strict=True)], "ann")  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for r in rows[:3]:  # the 4th image is missing: it gets no score, and a neutral canvas in the gallery
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(images / r.image)
    s = analyze(AnalyzeConfig(descriptions=["d"], run="tiny", images=images, sample=4), store)
    clip = s["per_source"]["s"]["clip_score"]
    assert clip["n"] == 3 and 0.0 <= clip["min"] <= clip["max"] <= 100.0

    m, preprocess, tokenizer = load_model(run_dir=store.path("runs", "tiny"))
    with torch.no_grad():
        scores = []
        for r, t in zip(rows[:3], texts, strict=False):
            i = torch.nn.functional.normalize(
                m.encode_image(preprocess(Image.open(images / r.image))[None]), dim=-1
            )
            x = torch.nn.functional.normalize(m.encode_text(tokenizer([t])), dim=-1)
            scores.append(max(100.0 * float((i * x).sum()), 0.0))
    assert clip["mean"] == pytest.approx(float(np.mean(scores)), abs=1e-3)


# ---- the page in a real browser ----------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def _run_browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (CI installs Debian's chromium)")
def test_report_html_renders_in_headless_chromium(store, shared_data, tmp_path):
    from PIL import Image

    rows = csv_rows(shared_data, 15)
    publish_annotations(store, "ann", rows)
    text = "One person is standing. Their left arm is raised."
    publish_descriptions(
        store, "d", [{"image": r.image, "source": "s", "description": text} for r in rows], "ann"
    )
    analyze(AnalyzeConfig(descriptions=["d"], name="page", sample=15, per_page=12), store)
    page = (store.path("reports", "page") / "report.html").resolve()
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing is fetched at view time

    binary = _chromium()
    counts = []
    for fragment in ("", "#page=2"):
        res = _run_browser(binary, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom",
                           page.as_uri() + fragment)  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        counts.append(res.stdout.count('<article class="card">'))
        assert "Page " in res.stdout
    assert counts == [12, 3]  # 15 sampled images, 12 per page

    shot = tmp_path / "shot.png"
    res = _run_browser(binary, tmp_path / "profile", "--virtual-time-budget=3000", f"--screenshot={shot}",
                       "--window-size=1280,2400", page.as_uri())  # fmt: skip
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # charts, tables and card pictures, not a blank page
    # The cards (pictures with skeletons) sit below the tables: the lower half is not blank either.
    assert pixels[pixels.shape[0] // 2 :].std() > 10
