"""benchmarks/focus_effect.py: its statistics against scipy and the losses, and a reduced run end to end
(sample -> dataset -> CLIP and FocusCLIP per seed -> per-image scores -> evals/<name>), then an ablation
that must reuse the CLIP runs."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from pipeline.store import Store
from training.losses import contrastive_loss, ntxent_loss

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "focus_effect.py"
_spec = importlib.util.spec_from_file_location("focus_effect", _PATH)
fe = importlib.util.module_from_spec(_spec)
sys.modules["focus_effect"] = fe
_spec.loader.exec_module(fe)


def test_t_interval_and_sign_flip_test():
    diffs = np.array([2.0, -1.0, 3.5, 0.5, 4.0, 1.0])
    lo, hi = fe.t_interval(diffs)
    ref = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert fe.sign_flip_p(np.array([1.0, 2, 3, 4, 5, 6])) == pytest.approx(2 / 64)
    assert fe.sign_flip_p(np.array([1.0, -1.0])) == 1.0
    # (1, 2): |mean| 1.5 is reached by ++ and -- only; +- and -+ give 0.5
    assert fe.sign_flip_p(np.array([1.0, 2.0])) == pytest.approx(0.5)


def test_image_level_bootstrap_and_mcnemar():
    rng = np.random.default_rng(0)
    same = rng.random((3, 50)) < 0.5
    assert fe.bootstrap_interval(same, same, 200) == (0.0, 0.0)
    assert fe.bootstrap_interval(np.ones((3, 50), bool), np.zeros((3, 50), bool), 200) == (100.0, 100.0)
    f = np.array([1, 1, 1, 0, 0, 1], bool)
    c = np.array([0, 0, 1, 1, 0, 1], bool)
    b, n, p = fe.mcnemar_p(f, c)
    assert (b, n) == (2, 1) and p == pytest.approx(stats.binomtest(2, 3, 0.5).pvalue)


@pytest.mark.parametrize("kind", ["infonce", "ntxent"])
@pytest.mark.parametrize("temperature", [0.5, 0.07])
def test_loss_floor_is_the_simplex_value_and_a_lower_bound(kind, temperature):
    b = 8
    simplex = F.normalize(torch.eye(b, dtype=torch.float64) - 1.0 / b, dim=-1)  # cosines -1/(b-1)
    scale = torch.tensor(1 / temperature, dtype=torch.float64)
    loss = contrastive_loss if kind == "infonce" else ntxent_loss
    assert float(loss(simplex, simplex, scale)) == pytest.approx(fe.loss_floor(kind, temperature, b))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = F.normalize(torch.randn(b, 8, generator=gen, dtype=torch.float64), dim=-1)
        other = F.normalize(a + 0.3 * torch.randn(b, 8, generator=gen, dtype=torch.float64), dim=-1)
        assert float(loss(a, other, scale)) >= fe.loss_floor(kind, temperature, b) - 1e-9


def test_collapse_step():
    assert fe.collapse([2.0, 0.01, 0.2, 0.01, 0.01]) == 4
    assert fe.collapse([0.01, 0.02]) == 1
    assert fe.collapse([0.01, 0.2]) is None


def test_verdict_screen_and_holm():
    t = {"ci": [0.5, 4.0], "sign_flip_p": 0.03}
    assert fe.verdict(t) == "beats CLIP"
    assert (
        fe.verdict({**t, "sign_flip_p": 0.06}) == "no difference detected"
    )  # both conditions, as registered
    assert fe.verdict({"ci": [-5.0, -0.1], "sign_flip_p": 0.2}) == "worse than CLIP"
    assert fe.verdict({"ci": [-5.0, 3.0], "sign_flip_p": 0.5}) == "no difference detected"
    assert fe.survives_screen({"a": {"mean": -1.0}, "b": {"mean": 0.5}})
    assert not fe.survives_screen({"a": {"mean": -1.0}, "b": {"mean": 0.0}})
    # Holm against statsmodels' definition, worked by hand: sorted p * (m - rank), running max, capped at 1
    assert fe.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_variants_change_only_what_they_say():
    base = fe.EffectConfig(seeds=2, steps=30)
    assert base.with_variant("default") == base
    large = base.with_variant("large")
    assert (large.images, large.steps, large.variant) == (3000, 90, "large")
    independent = base.with_variant("independent-views")
    assert (
        independent.masked_view == "independent"
        and independent.train_config("d", "clip", 0).masked_view == "shared"
    )
    no_mi = base.with_variant("no-masked-image").train_config("d", "focusclip", 0)
    assert no_mi.loss_weights == (0.0, 1.0, 1.0) and no_mi.focus_mode == "pixels"
    assert base.with_variant("guided-pooling").train_config("d", "focusclip", 0).focus_mode == "pooling"
    # validation: the layouts' train streams only, whatever the training sample's size
    assert base.validation == large.validation
    assert (base.validation.action_test_per_class, base.validation.action_train_per_class) == (0, 30)


TINY = ["--seeds", "2", "--steps", "2", "--images", "30", "--batch-size", "8", "--arch", "focus-tiny",
        "--image-size", "32", "--action-per-class", "2", "--state-per-class", "2",
        "--val-action-per-class", "2", "--val-state-per-class", "2", "--bootstrap", "100",
        "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def reduced(module_tmp) -> tuple[Store, list[str], str]:
    """The default protocol, reduced, run once for the module: (store, its arguments, what it printed)."""
    store = Store(module_tmp("effect") / "store")
    tiny = [*TINY, "--store", str(store.root)]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert fe.main(tiny) == 0
    return store, tiny, out.getvalue()


@pytest.mark.slow
def test_reduced_run_then_an_ablation_reuses_clip(reduced, capsys):
    store, tiny, out = reduced
    assert out.startswith("Protocol (fixed before any result):")
    last = out.strip().splitlines()[-2:]
    for line, task in zip(last, ("synthetic-action", "synthetic-body-state"), strict=True):
        assert line.startswith(f"FocusCLIP - CLIP: {task} mean ") and " pts, 95% CI [" in line

    folder = store.path("evals", "focus-effect")
    assert (folder / "effect.png").stat().st_size > 0
    result = json.loads((folder / "results.json").read_text())
    action = result["stats"]["synthetic-action"]
    assert action["n_images"] == 20 and len(action["diff"]) == 2
    assert action["diff"] == pytest.approx(
        [f - c for f, c in zip(action["acc"]["focusclip"], action["acc"]["clip"], strict=True)]
    )
    assert action["verdict"] == fe.verdict(action)
    # the validation split: its own images (the layouts' train lists), scored for every run
    assert result["validation"]["synthetic-action"]["n_images"] == 20
    assert result["validation"]["synthetic-body-state"]["n_images"] == 6
    assert result["screen"]["seeds"] == [0, 1]
    assert result["screen"]["survives"] == fe.survives_screen(result["validation"])
    collapse = result["collapse"]
    assert set(collapse["trajectory"]) == {"1"} and collapse["weight"] == 1.0
    assert collapse["trajectory"]["1"][0] == pytest.approx(
        np.mean([fe.curves(store, r)["loss_masked_image"][0] for r in result["runs"]["focusclip"]])
    )
    # each per-seed accuracy equals what the eval stage itself reports for that run
    from evaluation.config import EvalConfig
    from evaluation.stage import evaluate
    from pipeline.demo import eval_paths, eval_tasks

    run = result["runs"]["focusclip"][1]
    sample = next(store.cache_dir("focus-effect-sample").iterdir())
    for split, root, by_task in (("test", sample / "eval", result["stats"]),
                                 ("train", next(store.cache_dir("focus-effect-validation").iterdir()),
                                  result["validation"])):  # fmt: skip
        ecfg = EvalConfig(run=run, tasks=eval_tasks(), paths=eval_paths(root), workers=0, split=split,
                          name=f"check-{split}")  # fmt: skip
        for r in evaluate(ecfg, store):
            got = by_task[r["task"]]["acc"]["focusclip"][1]
            assert got == pytest.approx(100 * r["metrics"][f"acc@{r['k']}"], abs=1e-3)  # stored rounded
    inputs = {i["name"] for i in store.meta("evals", "focus-effect")["inputs"]}
    assert set(result["runs"]["clip"]) | set(result["runs"]["focusclip"]) < inputs
    report = (folder / "results.md").read_text()
    assert "| focusclip |" in report and "## Collapse of L(masked,image)" in report and "survives:" in report

    assert fe.main([*tiny, "--heatmap", "uniform", "--name", "fe-uniform"]) == 0
    uniform = json.loads((store.path("evals", "fe-uniform") / "results.json").read_text())
    assert uniform["runs"]["clip"] == result["runs"]["clip"]  # the same CLIP runs, not retrained
    assert not set(uniform["runs"]["focusclip"]) & set(result["runs"]["focusclip"])
    run_cfg = store.meta("runs", uniform["runs"]["focusclip"][0])["config"]
    assert run_cfg["heatmap_source"] == "uniform" and run_cfg["seed"] == 0
    assert not math.isnan(uniform["stats"]["synthetic-action"]["mean"])

    capsys.readouterr()
    assert fe.main(["--store", str(store.root), "--compare", "focus-effect", "fe-uniform"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    head, _, first, second = lines[:4]
    assert head.startswith("| Setting | Seeds | Synthetic actions CLIP / FocusCLIP")
    assert "heatmap=uniform" in second and "heatmap" not in first and "| 2 |" in first
    assert lines[5].startswith("Holm-adjusted sign-flip p over the 4 tests above")
    assert (
        "Screen (validation split):" in lines
        and "Collapse of L(masked,image), mean (min-max) over seeds:" in lines
    )
    versus = lines.index("FocusCLIP minus focus-effect's FocusCLIP, paired by seed (seeds both have):")
    f_diff = np.subtract(uniform["stats"]["synthetic-action"]["acc"]["focusclip"], action["acc"]["focusclip"])
    row = lines[versus + 4]
    assert (
        row.startswith("| fe-uniform | ")
        and "heatmap=uniform, " in row
        and f"| 2 | {f_diff.mean():+.2f} [" in row
    )


@pytest.mark.slow
def test_every_variant_runs_reduced_and_prints_the_ci_lines(reduced, capsys):
    """Each registered variant end to end, reduced: FocusCLIP-only variants reuse the default's CLIP runs and
    record their setting in the run's config; large trains both models on 3x the images for 3x the steps."""
    store, tiny, _ = reduced
    default = json.loads((store.path("evals", "focus-effect") / "results.json").read_text())
    expect = {
        "independent-views": ("masked_view", "independent"),
        "no-masked-image": ("loss_weights", [0.0, 1.0, 1.0]),
        "guided-pooling": ("focus_mode", "pooling"),
    }
    for variant, (key, value) in expect.items():
        capsys.readouterr()
        assert fe.main([*tiny, "--variant", variant]) == 0
        out = capsys.readouterr().out
        assert f"variant   {variant}: " in out.splitlines()[1]
        assert out.strip().splitlines()[-1].startswith("FocusCLIP - CLIP: synthetic-body-state mean ")
        result = json.loads((store.path("evals", f"fe-{variant}") / "results.json").read_text())
        assert result["runs"]["clip"] == default["runs"]["clip"]
        assert store.meta("runs", result["runs"]["focusclip"][0])["config"][key] == value
    no_mi = json.loads((store.path("evals", "fe-no-masked-image") / "results.json").read_text())
    assert no_mi["collapse"]["weight"] == 0.0  # logged, not trained

    capsys.readouterr()
    assert fe.main([*tiny, "--variant", "large"]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .splitlines()[-2]
        .startswith("FocusCLIP - CLIP: synthetic-action mean ")
    )
    large = json.loads((store.path("evals", "fe-large") / "results.json").read_text())
    assert not set(large["runs"]["clip"]) & set(default["runs"]["clip"])
    meta = store.meta("runs", large["runs"]["clip"][0])
    assert meta["config"]["max_steps"] == 6 and meta["counts"]["images"] == 90
