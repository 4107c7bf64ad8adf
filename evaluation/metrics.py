"""Classification metrics on logits and integer labels (pure NumPy), and the random baselines the paper's
"Sim. Rand" row reports.

    acc_at_k(scores, labels, 3)            # fraction whose label is among the 3 highest scores
    summary(scores, labels, k=3)           # {"acc@3", "acc1", "acc5", "mean_per_class_recall"}
    random_baseline(labels, n_classes, k)  # {"analytic": k/C, "simulated": seeded uniform-random scores}
"""

from __future__ import annotations

import numpy as np


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: is labels[i] among the k highest scores of row i.

    Ties are broken by class index (a stable sort), so the answer is deterministic; counting "fewer than k
    classes score strictly higher" instead would call every sample correct when all scores are equal."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"scores (N, C) and labels (N,) expected, got {scores.shape} and {labels.shape}")
    if k < 1:
        raise ValueError("k must be >= 1")
    if len(labels) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return (order == labels[:, None]).any(axis=1)


def acc_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    hits = topk_hits(scores, labels, k)
    return float(hits.mean()) if hits.size else float("nan")


def mean_per_class_recall(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 recall averaged over the classes present in labels (CLIP_benchmark's balanced accuracy)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    hits = topk_hits(scores, labels, 1)
    return float(np.mean([hits[labels == c].mean() for c in np.unique(labels)]))


def summary(scores: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float | None]:
    """acc@k for the task's k, acc1, acc5 (None where there are 5 classes or fewer: it would be 100%),
    mean per-class recall."""
    n_classes = np.asarray(scores).shape[1]
    return {
        f"acc@{k}": acc_at_k(scores, labels, k),
        "acc1": acc_at_k(scores, labels, 1),
        "acc5": acc_at_k(scores, labels, 5) if n_classes > 5 else None,
        "mean_per_class_recall": mean_per_class_recall(scores, labels),
    }


def random_baseline(labels: np.ndarray, n_classes: int, k: int, seed: int = 0) -> dict[str, float]:
    """Expected acc@k of a classifier that ranks classes uniformly at random (k/C), and one seeded draw of
    such a classifier on these labels (the paper's simulated random row)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    scores = rng.random((len(labels), n_classes))
    return {"analytic": min(k, n_classes) / n_classes, "simulated": acc_at_k(scores, labels, k)}
