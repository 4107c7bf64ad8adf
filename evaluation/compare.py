"""Several evals side by side, in the layout of the paper's Table 2: tasks as columns grouped Action / Age /
Emotion / Race, one row per eval, a random-baseline row and an average column; plus a grouped bar chart.

    focus-pipeline eval --compare evals/clip evals/focusclip   # prints it, writes reports/compare
    from evaluation.compare import compare
    table = compare(["evals/clip", "evals/focusclip"], store, out_dir=Path("out"))
    print(table.markdown)

An entry is a folder holding results.json, or the name of an evals artifact (with or without "evals/").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.tasks import GROUPS, PAPER_TASKS
from pipeline.errors import PipelineError
from pipeline.store import Store

log = logging.getLogger(__name__)


@dataclass
class Column:
    task: str
    title: str
    group: str
    k: int


@dataclass
class Comparison:
    columns: list[Column]
    rows: list[tuple[str, list[float | None]]]  # (label, acc@k per column in [0, 1])
    random: list[float | None]  # the simulated random classifier per column (the paper's "Sim. Rand")
    analytic: list[float | None] = field(default_factory=list)  # k / C per column
    markdown: str = ""
    files: list[Path] = field(default_factory=list)


def load_results(entry: str | Path, store: Store | None) -> tuple[str, list[dict[str, Any]]]:
    path = Path(entry).expanduser()
    if (path / "results.json").is_file():
        return path.name, json.loads((path / "results.json").read_text())
    name = str(entry).removeprefix("evals/").rstrip("/")
    if store is not None and store.exists("evals", name):
        return name, json.loads((store.path("evals", name) / "results.json").read_text())
    raise PipelineError(f"{entry}: no results.json there and no evals/{name} in the store")


def _order(task: str, group: str) -> tuple[int, int, str]:
    g = GROUPS.index(group) if group in GROUPS else len(GROUPS)
    return g, PAPER_TASKS.index(task) if task in PAPER_TASKS else len(PAPER_TASKS), task


def build(runs: list[tuple[str, list[dict[str, Any]]]]) -> Comparison:
    """The table's numbers from each eval's results (tasks any eval scored become columns)."""
    columns: dict[str, Column] = {}
    random: dict[str, float] = {}
    analytic: dict[str, float] = {}
    for _, results in runs:
        for r in results:
            if r.get("status", "ok") == "ok" and r["metrics"].get(f"acc@{r['k']}") is not None:
                columns.setdefault(
                    r["task"], Column(r["task"], r.get("title", r["task"]), r.get("group", ""), r["k"])
                )
                if r.get("random", {}).get("simulated") is not None:
                    random.setdefault(r["task"], r["random"]["simulated"])
                    analytic.setdefault(r["task"], r["random"]["analytic"])
    ordered = sorted(columns.values(), key=lambda c: _order(c.task, c.group))
    rows = []
    for label, results in runs:
        by_task = {r["task"]: r for r in results if r.get("status", "ok") == "ok"}
        rows.append(
            (
                label,
                [by_task[c.task]["metrics"][f"acc@{c.k}"] if c.task in by_task else None for c in ordered],
            )
        )
    return Comparison(
        ordered, rows, [random.get(c.task) for c in ordered], [analytic.get(c.task) for c in ordered]
    )


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _average(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean = _cell(float(np.mean(present)))
    return mean if len(present) == len(values) else f"{mean} ({len(present)}/{len(values)})"


def markdown(table: Comparison) -> str:
    header = ["Model"] + [f"{c.group}: {c.title} (Acc@{c.k})" for c in table.columns] + ["Avg."]
    lines = [
        "Zero-shot accuracy (%), columns grouped by task type as in the paper's Table 2; Avg. is the mean "
        "over the columns (n/m when a row lacks some).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for label, values in [*table.rows, ("Sim. random", table.random), ("Random (k/C)", table.analytic)]:
        lines.append("| " + " | ".join([label, *map(_cell, values), _average(values)]) + " |")
    return "\n".join(lines) + "\n"


def plot(table: Comparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [*table.rows, ("Sim. random", table.random)]
    n, width = len(table.columns), 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * n + 2), 4.0))
    x = np.arange(n)
    for i, (label, values) in enumerate(series):
        heights = [100 * v if v is not None else 0.0 for v in values]
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            heights,
            width,
            label=label,
            color="#999999" if label == "Sim. random" else None,
        )
    ax.set_xticks(x, [f"{c.title}\n{c.group} @{c.k}" for c in table.columns], fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(entries: list[str | Path], store: Store | None = None, out_dir: Path | None = None) -> Comparison:
    """Load each eval, build the table; with out_dir, write comparison.md, comparison.json, comparison.png."""
    if not entries:
        raise PipelineError("--compare needs at least one eval (a folder with results.json or an evals name)")
    table = build([load_results(e, store) for e in entries])
    if not table.columns:
        raise PipelineError("none of the given evals has a scored task to compare")
    table.markdown = markdown(table)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.md").write_text(table.markdown)
        data = {
            "columns": [c.__dict__ for c in table.columns],
            "random": table.random,
            "rows": [{"label": label, "acc": values} for label, values in table.rows],
        }
        (out_dir / "comparison.json").write_text(json.dumps(data, indent=2) + "\n")
        plot(table, out_dir / "comparison.png")
        table.files = [out_dir / n for n in ("comparison.md", "comparison.json", "comparison.png")]
    return table
