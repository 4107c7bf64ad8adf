"""The evals artifact: evals/<name>/, zero-shot results of one model on many tasks, written by eval (and by
the demo, for both of its models), read by eval --compare, the demo and push's model card.

    from pipeline.artifacts import evals
    evals.write_results(writer.dir, results)  # results.json
    evals.write_clip_benchmark(writer.dir, results)   # clip_benchmark/<task>.json
    results = evals.read(store, "demo-clip")  # list[TaskResult], checked

results.json is one TaskResult per task, in the order asked; results.md and results.png (written by the
stage) show the same numbers. clip_benchmark/ holds each scored task in CLIP_benchmark's one-file-per-
evaluation schema, so `clip_benchmark build` can aggregate it with other models' results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from pipeline.errors import PipelineError
from pipeline.store import Store

RESULTS_FILE = "results.json"
MARKDOWN_FILE = "results.md"
PLOT_FILE = "results.png"
CLIP_BENCHMARK_DIR = "clip_benchmark"
# ok: scored; skipped: its data is absent; error: its data or scoring failed; empty: no sample to score.
TASK_STATUSES = ("ok", "skipped", "error", "empty")


class TaskResult(TypedDict):
    """One task's entry in results.json (metrics in [0, 1]; None where undefined, e.g. acc5 of 5 classes)."""

    task: str
    dataset: str
    model: str
    pretrained: str
    metrics: dict[str, float | None]  # acc@k (the task's k), acc1, acc5, mean_per_class_recall
    n_samples: int
    skipped: dict[str, int]  # rows not scored, by reason
    status: str  # one of TASK_STATUSES
    group: str
    title: str
    k: int
    split: str
    templates: str
    data_path: str
    random: NotRequired[dict[str, float | None]]  # analytic (k/C) and simulated random classifier
    n_classes: NotRequired[int]
    n_available: NotRequired[int]
    limit: NotRequired[int]
    seconds: NotRequired[float]
    notes: NotRequired[list[str]]
    unknown_labels: NotRequired[dict[str, int]]
    message: NotRequired[str]  # why a task is not ok
    looked_for: NotRequired[list[str]]
    hint: NotRequired[str]


# What every reader needs of a task (eval --compare also reads results.json files written elsewhere).
REQUIRED = ("task", "k", "metrics")


def clip_benchmark_record(result: TaskResult) -> dict[str, Any]:
    """One scored task in CLIP_benchmark's result schema (what `clip_benchmark build` aggregates).

    The dataset is the task id ("emotic-age", "synthetic-action"): unique per row of a table, and a
    dataset that CLIP_benchmark itself knows by another name is never mistaken for ours.
    """
    return {
        "dataset": result["task"],
        "model": result["model"],
        "pretrained": result["pretrained"],
        "task": "zeroshot_classification",
        "metrics": {k: v for k, v in result["metrics"].items() if v is not None},
        "language": "en",
    }


def write_results(folder: Path, results: list[TaskResult]) -> None:
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")


def write_clip_benchmark(folder: Path, results: list[TaskResult]) -> None:
    """clip_benchmark/<task>.json per scored task of one model: CLIP_benchmark's one-file-per-evaluation."""
    (folder / CLIP_BENCHMARK_DIR).mkdir(parents=True, exist_ok=True)
    for r in results:
        if r["status"] == "ok":
            record = json.dumps(clip_benchmark_record(r), indent=2)
            (folder / CLIP_BENCHMARK_DIR / f"{r['task']}.json").write_text(record + "\n")


def read_file(path: Path) -> list[TaskResult]:
    """A results.json, checked: a list of task results, each with the REQUIRED keys and a known status."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: not readable eval results ({type(err).__name__}: {err})") from None
    if not isinstance(results, list):
        raise PipelineError(
            f"{path}: not eval results (a JSON {type(results).__name__}, not a list of tasks)"
        )
    for i, r in enumerate(results):
        missing = [k for k in REQUIRED if k not in r] if isinstance(r, dict) else ["(not an object)"]
        if missing:
            raise PipelineError(f"{path}: task {i}: missing {', '.join(missing)}")
        if r.get("status", "ok") not in TASK_STATUSES:
            known = ", ".join(TASK_STATUSES)
            raise PipelineError(
                f"{path}: task {i} ({r['task']}): status {r['status']!r} is not one of {known}"
            )
    return results


def read(store: Store, name: str) -> list[TaskResult]:
    return read_file(store.path("evals", name) / RESULTS_FILE)


def stored_name(entry: str | Path, store: Store | None) -> str | None:
    """The evals artifact an entry ("name" or "evals/name") names; None for a folder holding results.json;
    a one-line error for neither."""
    if (Path(entry).expanduser() / RESULTS_FILE).is_file():
        return None
    name = str(entry).removeprefix("evals/").rstrip("/")
    if store is None or not store.exists("evals", name):
        raise PipelineError(f"{entry}: no {RESULTS_FILE} there and no evals/{name} in the store")
    return name


def read_entry(entry: str | Path, store: Store | None) -> tuple[str, list[TaskResult]]:
    """(label, results) of a folder holding results.json, or of an evals artifact ("name" or "evals/name")."""
    name = stored_name(entry, store)
    if name is None:
        path = Path(entry).expanduser()
        return path.name, read_file(path / RESULTS_FILE)
    return name, read(store, name)
