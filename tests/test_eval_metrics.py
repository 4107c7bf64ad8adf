"""Pure parts of the evaluation: metrics, random baselines, prompt rendering and template ensembling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation import metrics, zeroshot
from evaluation.tasks import PAPER_TASKS, TASKS, Task, load_templates


def _independent_topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """acc@k by counting, per row, the classes scoring strictly higher than the true one (no ties here)."""
    higher = (scores > scores[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    return float((higher < k).mean())


@pytest.mark.parametrize("k", [1, 3, 5])
def test_acc_at_k_matches_independent_computations(k):
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(500, 12)), rng.integers(0, 12, 500)
    expected = _independent_topk(scores, labels, k)
    assert metrics.acc_at_k(scores, labels, k) == pytest.approx(expected)
    top = torch.from_numpy(scores).topk(k, dim=1).indices.numpy()
    assert expected == pytest.approx((top == labels[:, None]).any(axis=1).mean())


def test_summary_fields_and_small_class_counts():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 1, 1, 1])
    out = metrics.summary(scores, labels, k=1)
    assert set(out) == {"acc@1", "acc1", "acc5", "mean_per_class_recall"}
    assert out["acc1"] == pytest.approx(0.5)
    assert out["acc5"] is None  # 3 classes: top-5 would be 100% by construction
    assert out["mean_per_class_recall"] == pytest.approx((1.0 + 1 / 3) / 2)  # class 0: 1/1, class 1: 1/3
    assert metrics.acc_at_k(scores, labels, 10) == 1.0


def test_ties_do_not_make_every_sample_correct():
    scores = np.zeros((4, 10))
    assert metrics.acc_at_k(scores, np.array([0, 5, 9, 1]), 1) == pytest.approx(0.25)


def test_random_baselines():
    labels = np.random.default_rng(0).integers(0, 40, 20000)
    out = metrics.random_baseline(labels, n_classes=40, k=3, seed=7)
    assert out["analytic"] == pytest.approx(3 / 40)
    assert abs(out["simulated"] - 3 / 40) < 0.01
    assert out == metrics.random_baseline(labels, n_classes=40, k=3, seed=7)  # seeded
    assert metrics.random_baseline(labels[:10], n_classes=2, k=3)["analytic"] == 1.0


def test_prompts_and_articles():
    face = "a photo of {article} {c} looking face"
    assert zeroshot.render(face, "angry") == "a photo of an angry looking face"
    assert zeroshot.render("a photo of {article} {c} person", "kid") == "a photo of a kid person"
    task = TASKS["fer2013-emotion"]
    names = [task.prompt_name(c) for c in task.classes]
    prompts = zeroshot.class_prompts(names, task.select_templates("paper"))
    assert prompts[2] == ["a photo of a fearful looking face"]
    assert len(task.select_templates("ensemble")) == len(load_templates("emotion_face")) > 1


def test_class_embeddings_average_unit_vectors():
    feats = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 2.0]]])  # 2 classes x 2 templates
    emb = zeroshot.class_embeddings(feats)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2))
    assert torch.allclose(emb[0], torch.tensor([1.0, 1.0]) / 2**0.5)  # norms do not weight the mean
    logits = zeroshot.logits(torch.tensor([[2.0, 2.0]]), emb)
    assert logits[0, 0] == pytest.approx(100.0) and logits[0, 1] == pytest.approx(100.0)


def test_registry_matches_the_paper_protocol():
    assert len(PAPER_TASKS) == 10 and len(TASKS) == 14
    assert {TASKS[t].k for t in PAPER_TASKS if TASKS[t].group in ("Action", "Emotion")} == {3}
    assert {TASKS[t].k for t in PAPER_TASKS if TASKS[t].group in ("Age", "Race")} == {1}
    assert TASKS["ferplus-emotion"].split == "test" and TASKS["fer2013-emotion"].split == "train"
    assert len(TASKS["ferplus-emotion"].classes) == 8 and len(TASKS["emotic-emotion"].classes) == 26
    with pytest.raises(ValueError, match="unknown reader"):
        Task(id="x", dataset="x", reader="nope", label="a", classes=None, templates=("{c}",), k=1, split="t")
