"""Several evals side by side, in the layout of the paper's Table 2: tasks as columns grouped Action / Age /
Emotion / Race, one row per eval, a random-baseline row and an average column; plus a grouped bar chart.
The paper's published numbers are shown beside them, by version (PAPERS): v1's Table 2
(evaluation/paper_table2.csv, one column per dataset, rows marked "(paper)"), or v3's (evaluation/
paper_v3.csv: what could be read of it, the per-task and average numbers of its abstract, in a block of
their own, rows marked "(paper v3)"). The default is the latest version.

    focus-pipeline eval --compare evals/clip evals/focusclip   # prints it, writes reports/compare
    focus-pipeline eval --compare                              # the latest published numbers alone
    focus-pipeline eval --compare --paper v1                   # v1's Table 2 alone
    from evaluation.compare import compare
    table = compare(["evals/clip", "evals/focusclip"], store, out_dir=Path("out"))
    print(table.markdown)

An entry is a folder holding results.json, or the name of an evals artifact (with or without "evals/").
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from evaluation.tasks import GROUPS, PAPER_TASKS, TASKS
from pipeline.artifacts import evals, reports
from pipeline.artifacts.evals import TaskResult
from pipeline.errors import PipelineError
from pipeline.store import Recorded, Store

log = logging.getLogger(__name__)

PAPER_TABLE = Path(__file__).parent / "paper_table2.csv"
PUBLISHED_MARK = "†"


@dataclass(frozen=True)
class PaperVersion:
    """One arXiv version's published results: the stored file, and where it comes from."""

    path: Path
    source: str


PAPERS = {
    "v1": PaperVersion(PAPER_TABLE, "Table 2 of arXiv 2403.06904v1 (https://arxiv.org/abs/2403.06904v1)"),
    "v3": PaperVersion(
        Path(__file__).parent / "paper_v3.csv",
        "the abstract of arXiv 2403.06904v3 (https://arxiv.org/html/2403.06904v3)",
    ),
}
LATEST = "v3"


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
    published: list[tuple[str, list[float | None]]] = field(default_factory=list)  # the paper's rows
    paper: str | None = None  # the PAPERS version shown
    scopes: PublishedScopes | None = None  # a version published per task group, not per dataset (v3)
    notes: dict[str, str] = field(default_factory=dict)  # task -> why its published cells need a caveat
    splits: list[str] = field(default_factory=list)  # "row: task on split" where a row left the default
    markdown: str = ""
    files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Published:
    """The paper's Table 2: acc@k in [0, 1] by model label and task id, and a caveat per task where needed."""

    acc: dict[str, dict[str, float]]
    notes: dict[str, str]


@cache
def published(path: Path = PAPER_TABLE) -> Published:
    """Table 2 of arXiv 2403.06904 as stored data: one row per task, one column per model (in %), a note."""
    acc: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        models = [c for c in reader.fieldnames or [] if c not in ("task", "note")]
        for line, row in enumerate(reader, start=2):
            if row["task"] not in TASKS:
                raise PipelineError(f"{path} line {line}: unknown task {row['task']!r}")
            for model in models:
                acc.setdefault(f"{model} (paper)", {})[row["task"]] = float(row[model]) / 100
            if row["note"]:
                notes[row["task"]] = row["note"]
    return Published(acc, notes)


@dataclass(frozen=True)
class PublishedScopes:
    """A version's numbers per task group and on average (v3's abstract): values in points by row label
    and scope; a row's missing scope was not published."""

    scopes: tuple[str, ...]
    rows: dict[str, dict[str, float]]


@cache
def published_scopes(path: Path) -> PublishedScopes:
    """paper_v3.csv: '#' comment lines citing the source, then one row per scope (activity, age, emotion,
    average) with CLIP, FocusCLIP and FocusCLIP - CLIP in points, empty where the version gave none."""
    with path.open(newline="") as f:
        reader = csv.DictReader(line for line in f if not line.startswith("#"))
        models = [c for c in reader.fieldnames or [] if c != "scope"]
        scopes, rows = [], {f"{m} (paper v3)": {} for m in models}
        for line, row in enumerate(reader, start=2):
            scopes.append(row["scope"])
            for m in models:
                if row[m]:
                    try:
                        rows[f"{m} (paper v3)"][row["scope"]] = float(row[m])
                    except ValueError:
                        raise PipelineError(f"{path} row {line}: {m} is not a number: {row[m]!r}") from None
    return PublishedScopes(tuple(scopes), rows)


def _order(task: str, group: str) -> tuple[int, int, str]:
    g = GROUPS.index(group) if group in GROUPS else len(GROUPS)
    return g, PAPER_TASKS.index(task) if task in PAPER_TASKS else len(PAPER_TASKS), task


def build(
    runs: list[tuple[str, list[TaskResult]]],
    paper: Published | None = None,
    scopes: PublishedScopes | None = None,
) -> Comparison:
    """The table's numbers from each eval's results (tasks any eval scored become columns; with no eval,
    the paper's ten for v1), with a version's published rows beside them when given: per dataset (v1's
    `paper`) or per task group (v3's `scopes`), either only where the evals include a paper task."""
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
    if not runs and paper is not None:
        columns = {t: Column(t, TASKS[t].name, TASKS[t].group, TASKS[t].k) for t in PAPER_TASKS}
    human_centric = not runs or any(t in PAPER_TASKS for t in columns)  # not the demo's synthetic tasks
    ordered = sorted(columns.values(), key=lambda c: _order(c.task, c.group))
    rows, splits = [], []
    for label, results in runs:
        by_task = {r["task"]: r for r in results if r.get("status", "ok") == "ok"}
        # e.g. Kinetics-400 scored on val where the test annotations have no labels
        splits += [
            f"{label}: {r.get('title', task)} on {r['split']} (the task's default: {TASKS[task].split})"
            for task, r in by_task.items()
            if task in TASKS and r.get("split", TASKS[task].split) != TASKS[task].split
        ]
        rows.append(
            (
                label,
                [by_task[c.task]["metrics"][f"acc@{c.k}"] if c.task in by_task else None for c in ordered],
            )
        )
    table = Comparison(
        ordered,
        rows,
        [random.get(c.task) for c in ordered],
        [analytic.get(c.task) for c in ordered],
        splits=splits,
    )
    if paper is not None and any(c.task in PAPER_TASKS for c in ordered):  # none: the rows would be empty
        table.published = [(label, [acc.get(c.task) for c in ordered]) for label, acc in paper.acc.items()]
        table.notes = {c.task: paper.notes[c.task] for c in ordered if c.task in paper.notes}
    if scopes is not None and human_centric:
        table.scopes = scopes
    return table


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _average(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean = _cell(float(np.mean(present)))
    return mean if len(present) == len(values) else f"{mean} ({len(present)}/{len(values)})"


def markdown(table: Comparison) -> str:
    lines = [] if table.columns else scopes_markdown(table.scopes)  # a version's numbers alone (v3)
    return "\n".join(lines or _columns_markdown(table)) + "\n"


def _columns_markdown(table: Comparison) -> list[str]:
    header = ["Model"] + [f"{c.group}: {c.title} (Acc@{c.k})" for c in table.columns] + ["Avg."]
    lines = [
        "Zero-shot accuracy (%), columns grouped by task type as in the paper's Table 2; Avg. is the mean "
        "over the columns (n/m when a row lacks some).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    baselines = [("Sim. random", table.random), ("Random (k/C)", table.analytic)] if table.rows else []
    for label, values in [*table.rows, *baselines]:
        lines.append("| " + " | ".join([label, *map(_cell, values), _average(values)]) + " |")
    for label, values in table.published:
        cells = [
            _cell(v) + (PUBLISHED_MARK if v is not None and c.task in table.notes else "")
            for c, v in zip(table.columns, values, strict=True)
        ]
        lines.append("| " + " | ".join([label, *cells, _average(values)]) + " |")
    if table.splits:
        lines += ["", "Scored on another split than the task's default:", *(f"- {s}" for s in table.splits)]
    if table.published:
        lines += ["", "(paper): published in Table 2 of arXiv 2403.06904v1, not measured here."]
        lines += [f"{PUBLISHED_MARK} {TASKS[task].name}: {note}." for task, note in table.notes.items()]
    if table.scopes is not None:
        lines += ["", *scopes_markdown(table.scopes)]
    return lines


def scopes_markdown(scopes: PublishedScopes) -> list[str]:
    """v3's published numbers (points) per task group and on average, as a table of their own."""
    lines = [
        f"(paper v3): published in {PAPERS['v3'].source}, not measured here; accuracy points, '-' where the "
        "abstract gives none. v3's per-dataset table could not be read here, so these rows have no dataset "
        "columns (--paper v1 shows v1's Table 2, per dataset).",
        "",
        "| Model | " + " | ".join(s.capitalize() for s in scopes.scopes) + " |",
        "|" + "---|" * (1 + len(scopes.scopes)),
    ]
    for label, values in scopes.rows.items():
        sign = "+" if " - " in label else ""
        cells = [f"{values[s]:{sign}.2f}" if s in values else "-" for s in scopes.scopes]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def plot(table: Comparison, path: Path) -> None:
    import matplotlib  # ~1-3 s to import; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [*table.rows, ("Sim. random", table.random)] if table.rows else []
    series += table.published
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
            color="#999999" if label.startswith("Sim. random") else None,
            hatch="//" if label.endswith("(paper)") else None,
        )
    ax.set_xticks(x, [f"{c.title}\n{c.group} @{c.k}" for c in table.columns], fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(
    entries: list[str | Path],
    store: Store | None = None,
    out_dir: Path | None = None,
    *,
    paper: str | None = LATEST,
) -> Comparison:
    """Load each eval, build the table with the published rows of the PAPERS version `paper` ("latest": the
    newest; None: none); with out_dir, write comparison.md, comparison.json, comparison.png."""
    paper = LATEST if paper == "latest" else paper
    if paper is not None and paper not in PAPERS:
        raise PipelineError(f"--paper must be one of {', '.join(PAPERS)}, not {paper!r}")
    if not entries and paper is None:
        raise PipelineError("--compare needs at least one eval (a folder with results.json or an evals name)")
    runs = [evals.read_entry(e, store) for e in entries]
    if paper == "v1":
        table = build(runs, published(PAPERS["v1"].path))
    else:
        table = build(runs, None, published_scopes(PAPERS[paper].path) if paper else None)
    if not table.columns and table.scopes is None:
        raise PipelineError("none of the given evals has a scored task to compare")
    table.paper = paper
    table.markdown = markdown(table)
    if out_dir is not None:
        data = {
            "columns": [c.__dict__ for c in table.columns],
            "random": table.random,
            "rows": [{"label": label, "acc": values} for label, values in table.rows]
            + [{"label": label, "acc": values, "published": True} for label, values in table.published],
            "notes": table.notes,
            "splits": table.splits,
            "paper": table.paper,
        }
        if table.scopes is not None:
            data["paper_v3"] = {"scopes": list(table.scopes.scopes), "rows": table.scopes.rows}
        table.files = reports.write_comparison(out_dir, data, markdown=table.markdown)
        if table.columns:  # v3's numbers alone have no dataset column to draw
            plot(table, out_dir / reports.COMPARISON_PLOT)
            table.files.append(out_dir / reports.COMPARISON_PLOT)
    return table


def compare_stage(
    entries: list[str], store: Store, name: str | None = None, *, paper: str | None = LATEST
) -> Comparison:
    """The compare step: publish reports/<name> (default "compare") with the comparison's files.

    A comparison is derived from the evals it names and cheap to redo, so it replaces an older comparison
    (never another stage's report of that name)."""
    paper = LATEST if paper == "latest" else paper  # the report records the version it shows
    report = name or "compare"
    if (
        store.exists("reports", report)
        and (stage := store.meta("reports", report).get("stage")) != "eval-compare"
    ):
        raise PipelineError(f"reports/{report} holds a {stage!r} report, not a comparison: name another")
    with store.create(
        "reports",
        report,
        stage="eval-compare",
        config=Recorded.plain({"evals": entries, "paper": paper}),
        # the evals it was built from, so `store rm` refuses to remove one from under it
        inputs=[store.ref("evals", n) for e in entries if (n := evals.stored_name(e, store))],
        overwrite=True,
    ) as w:
        table = compare(entries, store, out_dir=w.dir, paper=paper)
        w.counts.update(evals=len(table.rows), tasks=len(table.columns))
    table.files = [store.path("reports", report) / f.name for f in table.files]
    return table
