"""benchmarks/focus_effect.py: its statistics against scipy and the losses, and a reduced run end to end
(sample -> dataset -> CLIP and FocusCLIP per seed -> per-image scores -> evals/<name>), then an ablation
that must reuse the CLIP runs."""

from __future__ import annotations

import importlib.util
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


@pytest.mark.slow
def test_reduced_run_then_an_ablation_reuses_clip(tmp_path, capsys):
    store = Store(tmp_path / "store")
    tiny = ["--seeds", "2", "--steps", "2", "--images", "30", "--batch-size", "8", "--arch", "focus-tiny",
            "--image-size", "32", "--action-per-class", "2", "--state-per-class", "2", "--bootstrap", "100",
            "--threads", "1", "--store", str(store.root)]  # fmt: skip
    assert fe.main(tiny) == 0
    out = capsys.readouterr().out
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
    # each per-seed accuracy equals what the eval stage itself reports for that run
    from evaluation.stage import EvalConfig, evaluate
    from pipeline.demo import eval_paths, eval_tasks

    run = result["runs"]["focusclip"][1]
    sample = next(store.cache_dir("focus-effect-sample").iterdir())
    ecfg = EvalConfig(run=run, tasks=eval_tasks(), paths=eval_paths(sample / "eval"), workers=0)
    ours = evaluate(ecfg, store)
    for r in ours:
        got = result["stats"][r["task"]]["acc"]["focusclip"][1]
        assert got == pytest.approx(100 * r["metrics"][f"acc@{r['k']}"], abs=1e-3)  # stored rounded
    inputs = {i["name"] for i in store.meta("evals", "focus-effect")["inputs"]}
    assert set(result["runs"]["clip"]) | set(result["runs"]["focusclip"]) < inputs
    assert "| focusclip |" in (folder / "results.md").read_text()

    assert fe.main([*tiny, "--heatmap", "uniform", "--name", "fe-uniform"]) == 0
    uniform = json.loads((store.path("evals", "fe-uniform") / "results.json").read_text())
    assert uniform["runs"]["clip"] == result["runs"]["clip"]  # the same CLIP runs, not retrained
    assert not set(uniform["runs"]["focusclip"]) & set(result["runs"]["focusclip"])
    run_cfg = store.meta("runs", uniform["runs"]["focusclip"][0])["config"]
    assert run_cfg["heatmap_source"] == "uniform" and run_cfg["seed"] == 0
    assert not math.isnan(uniform["stats"]["synthetic-action"]["mean"])

    capsys.readouterr()
    assert fe.main(["--store", str(store.root), "--compare", "focus-effect", "fe-uniform"]) == 0
    head, _, first, second = capsys.readouterr().out.strip().splitlines()
    assert head.startswith("| Setting | Seeds | Synthetic actions CLIP / FocusCLIP")
    assert "heatmap=uniform" in second and "heatmap" not in first and "| 2 |" in first
