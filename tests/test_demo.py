"""The demo end to end on a reduced sample: every stage for real (generator, convert, rules describe,
build-dataset, CLIP and FocusCLIP training, zero-shot eval, comparison), then reuse and --fresh."""

from __future__ import annotations

import json

import pytest

from pipeline.demo import ACTION_TASK, STATE_TASK, DemoConfig, _forget, _sample_dir, demo
from pipeline.errors import PipelineError

# focus-tiny and a few images keep the whole chain to seconds; the real demo uses focus-small.
ARGS = dict(images=30, steps=2, batch_size=8, arch="focus-tiny", action_test_per_class=2,
            state_test_per_class=2, threads=1)  # fmt: skip
CLI_ARGS = ["--images", "30", "--steps", "2", "--batch-size", "8", "--arch", "focus-tiny",
            "--eval-per-class", "2", "--state-per-class", "2", "--threads", "1"]  # fmt: skip
STAGES = ["annotations/demo", "descriptions/demo", "datasets/demo", "runs/demo-clip", "runs/demo-focusclip",
          "evals/demo-clip", "evals/demo-focusclip"]  # fmt: skip


def _fingerprints(store) -> dict[str, str]:
    return {s: store.meta(*s.split("/"))["fingerprint"] for s in STAGES}


@pytest.mark.slow
def test_demo_end_to_end_then_reuse(cli, store):
    result = cli("demo", *CLI_ARGS)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "| demo-clip |" in out and "| demo-focusclip |" in out and "| Sim. random |" in out
    assert "Synthetic actions (Acc@3)" in out and "Synthetic body states (Acc@1)" in out
    assert "report:" in out

    # What the demo published: the comparison, the merged results, the loss curves and the bar chart.
    folder = store.path("evals", "demo")
    for name in ("results.md", "results.json", "comparison.md", "comparison.png", "loss_curves.png"):
        assert (folder / name).is_file(), name
    results = json.loads((folder / "results.json").read_text())
    scored = {(r["pretrained"], r["task"]): r for r in results}
    for model_type in ("clip", "focusclip"):
        for task, n in ((ACTION_TASK, 2 * 10), (STATE_TASK, 2 * 3)):
            r = scored[(f"runs/demo-{model_type}", task)]
            assert r["status"] == "ok" and r["n_samples"] == n and not r["skipped"]
            assert r["dataset"].startswith("synthetic-")  # never filed as the real Stanford 40 / FER2013
    meta = store.meta("evals", "demo")
    assert {f"{i['kind']}/{i['name']}" for i in meta["inputs"]} == set(STAGES[3:])
    for model_type in ("clip", "focusclip"):
        run = store.meta("runs", f"demo-{model_type}")
        assert run["config"]["max_steps"] == 2 and run["config"]["model_type"] == model_type
        assert run["inputs"][0]["name"] == "demo"
    assert store.meta("runs", "demo-focusclip")["summary"]["alpha"] is not None
    report = (folder / "results.md").read_text()
    assert "## Wall time per stage" in report and "random (k/C)" in report
    assert "(paper)" not in report  # the paper's Table 2 has none of the synthetic tasks: no empty rows
    assert "not whether FocusCLIP beats CLIP" in report  # one draw: no effect claimed
    assert "Trained with 1 torch CPU thread(s), torch " in report  # what the table's reproduction needs

    # Same settings again: every stage is reused, nothing is rewritten.
    before = _fingerprints(store)
    again = demo(DemoConfig(**ARGS), store)
    assert sorted(again.reused) == sorted(STAGES)
    assert _fingerprints(store) == before
    assert again.table in result.output

    # More steps: the sample, annotations, descriptions and dataset stay; the runs and evals are redone.
    more = demo(DemoConfig(**ARGS | {"steps": 3}), store)
    assert sorted(more.reused) == sorted(STAGES[:3])
    assert store.meta("runs", "demo-clip")["config"]["max_steps"] == 3

    # --fresh first forgets this demo's artifacts and samples (then runs as on an empty store, as above).
    cfg = DemoConfig(**ARGS)
    assert _sample_dir(store, cfg).is_dir()
    _forget(store, cfg)
    assert not _sample_dir(store, cfg).exists()
    assert not any(store.exists(*s.split("/")) for s in [*STAGES, "evals/demo"])


def test_demo_refuses_bad_settings(cli, store_root):
    result = cli("demo", "--images", "3")
    assert result.exit_code == 2
    assert "error: --images 3" in result.output
    assert not store_root.exists() or not any(store_root.glob("*/*/meta.json"))
    with pytest.raises(PipelineError, match="batch-size"):
        DemoConfig(batch_size=1)
