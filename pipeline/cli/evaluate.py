"""`focus-pipeline eval`: zero-shot evaluation of a run (or any open_clip arch + checkpoint), or a comparison
of finished evals.

    focus-pipeline eval --run demo-focusclip --data-root ~/eval-data
    focus-pipeline eval --arch ViT-B-16 --checkpoint model.pt --tasks fer2013-emotion utkface-age \
        --path fer2013=~/fer2013_images --split test --templates ensemble
    focus-pipeline eval --compare evals/clip evals/focusclip      # beside the paper's latest numbers (v3)
    focus-pipeline eval --compare --paper v1 evals/clip evals/focusclip   # beside v1's Table 2, per dataset
    focus-pipeline eval --list-tasks
    focus-pipeline eval --check-data --data-root ~/eval-data     # what is found where, and what is missing
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import PanelCommand, app, state
from pipeline.errors import PipelineError


def _parse_paths(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        dataset, sep, folder = value.partition("=")
        if not sep or not dataset or not folder:
            raise PipelineError(f"--path {value!r}: expected DATASET=DIR, e.g. fer2013=~/data/fer2013")
        out[dataset.strip()] = folder.strip()
    return out


def _parse_splits(values: list[str]) -> tuple[str | None, dict[str, str]]:
    everywhere, per = None, {}
    for value in values:
        key, sep, split = value.partition("=")
        if sep:
            if not key or not split:
                raise PipelineError(f"--split {value!r}: expected SPLIT or TASK=SPLIT")
            per[key.strip()] = split.strip()
        else:
            everywhere = value.strip()
    return everywhere, per


def _task_ids(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


# --help groups the options into these panels, in the order of the command's parameters.
MODEL = "Model"
DATA = "Tasks and data"
RUN = "Run control"
OUTPUT = "Output"
COMPARE = "Compare finished evals (--compare)"
INSPECT = "Inspect and exit"

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Entries = Annotated[
    list[str] | None,
    typer.Argument(help="With --compare: evals to compare (folders or evals names); else more task ids."),
]
Run = Annotated[
    str | None, typer.Option("--run", help="A runs/<name> artifact of the store.", rich_help_panel=MODEL)
]
Arch = Annotated[
    str | None,
    typer.Option("--arch", help="An open_clip architecture (with --checkpoint).", rich_help_panel=MODEL),
]
Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="A state dict open_clip loads for --arch.", rich_help_panel=MODEL),
]
Tasks = Annotated[
    list[str] | None,
    typer.Option(
        "--tasks",
        help="Task ids (repeat, comma-separate or list them); default: the paper's ten.",
        rich_help_panel=DATA,
    ),
]
DataRoot = Annotated[
    str,
    typer.Option(
        "--data-root",
        envvar="FOCUS_EVAL_DATA",
        help="Folder holding one folder per dataset.",
        rich_help_panel=DATA,
    ),
]
Paths = Annotated[
    list[str] | None,
    typer.Option("--path", help="DATASET=DIR: where one dataset lives (repeatable).", rich_help_panel=DATA),
]
Splits = Annotated[
    list[str] | None,
    typer.Option(
        "--split",
        help="SPLIT for every task, or TASK=SPLIT / DATASET=SPLIT for one (repeatable).",
        rich_help_panel=DATA,
    ),
]
UtkSplitList = Annotated[
    Path | None,
    typer.Option(
        "--utk-split-list",
        help="UTKFace: score only the images named in this file (one per line, or a CSV with img_name; "
        "the reference scores its val list).",
        rich_help_panel=DATA,
    ),
]
Templates = Annotated[
    str,
    typer.Option(
        "--templates",
        help="paper: the paper's single prompt; ensemble: average several.",
        rich_help_panel=DATA,
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Images per forward pass.", rich_help_panel=RUN)]
Workers = Annotated[int, typer.Option("--workers", help="DataLoader worker processes.", rich_help_panel=RUN)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUN)]
Limit = Annotated[
    int | None,
    typer.Option(
        "--limit", help="Score at most N samples per task (seeded subset, recorded).", rich_help_panel=DATA
    ),
]
Name = Annotated[
    str | None,
    typer.Option("--name", help="Artifact name (evals/<name> or reports/<name>).", rich_help_panel=OUTPUT),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing evals/<name>.", rich_help_panel=OUTPUT)
]
AllowEmpty = Annotated[
    bool,
    typer.Option(
        "--allow-empty", help="Publish the eval even when no task scored a sample.", rich_help_panel=OUTPUT
    ),
]
Compare = Annotated[
    bool,
    typer.Option(
        "--compare",
        help="Compare the evals given as arguments (Table 2 layout), beside the paper's published rows.",
        rich_help_panel=COMPARE,
    ),
]
Paper = Annotated[
    str,
    typer.Option(
        "--paper",
        help="With --compare: the paper version whose published numbers are shown: v1 (Table 2, per "
        "dataset), v3 (its abstract: per task group and on average) or latest (v3).",
        rich_help_panel=COMPARE,
    ),
]
NoPaper = Annotated[
    bool, typer.Option("--no-paper", help="With --compare: no published numbers.", rich_help_panel=COMPARE)
]
ListTasks = Annotated[
    bool, typer.Option("--list-tasks", help="Print the task registry and exit.", rich_help_panel=INSPECT)
]
CheckData = Annotated[
    bool,
    typer.Option(
        "--check-data",
        help="For each task: is its dataset found, what is in it, the layout expected, where to get it.",
        rich_help_panel=INSPECT,
    ),
]


@app.command("eval", cls=PanelCommand)
def _evaluate(
    entries: Entries = None,
    *,
    run: Run = None,
    arch: Arch = None,
    checkpoint: Checkpoint = None,
    tasks: Tasks = None,
    data_root: DataRoot = "eval-data",
    path: Paths = None,
    split: Splits = None,
    utk_split_list: UtkSplitList = None,
    templates: Templates = "paper",
    limit: Limit = None,
    batch_size: BatchSize = 64,
    workers: Workers = 2,
    device: Device = "auto",
    name: Name = None,
    overwrite: Overwrite = False,
    allow_empty: AllowEmpty = False,
    compare: Compare = False,
    paper: Paper = "latest",
    no_paper: NoPaper = False,
    list_tasks: ListTasks = False,
    check_data: CheckData = False,
) -> None:
    """Score a model zero-shot on human-centric tasks (or compare finished evals)."""
    if list_tasks:
        return _list_tasks()
    if compare:
        scoring = {"--run": run, "--arch": arch, "--checkpoint": checkpoint, "--tasks": tasks, "--path": path,
                   "--split": split, "--utk-split-list": utk_split_list, "--limit": limit}  # fmt: skip
        if given := [option for option, value in scoring.items() if value]:
            raise PipelineError(f"{', '.join(given)}: scoring option(s), not read by --compare (it reads "
                                "finished evals)")  # fmt: skip
        return _compare(entries or [], name, None if no_paper else paper)
    from evaluation.config import EvalConfig
    from evaluation.tasks import PAPER_TASKS, TASKS

    unknown = [e for e in entries or [] if e not in TASKS]
    if unknown:
        raise PipelineError(
            f"unexpected argument(s) {' '.join(unknown)} (task ids go after --tasks; "
            "eval folders need --compare)"
        )
    if run and (arch or checkpoint):
        raise PipelineError("give either --run or --arch/--checkpoint, not both")
    every_split, splits = _parse_splits(split or [])
    cfg = EvalConfig(
        run=run if not check_data else None, arch=arch, checkpoint=str(checkpoint) if checkpoint else None,
        tasks=tuple(_task_ids([*(tasks or []), *(entries or [])]) or PAPER_TASKS), data_root=data_root,
        paths=_parse_paths(path or []), split=every_split, splits=splits,
        utk_split_list=str(utk_split_list) if utk_split_list else None, templates=templates,
        batch_size=batch_size, workers=workers, device=device, name=name, limit=limit, overwrite=overwrite,
        allow_empty=allow_empty,
    )  # fmt: skip
    if check_data:
        _check_data(cfg)
    else:
        _score(cfg)


def _list_tasks() -> None:
    from evaluation.tasks import PAPER_TASKS, TASKS

    for t in TASKS.values():
        mark = "*" if t.id in PAPER_TASKS else " "
        typer.echo(f"{mark} {t.id:20s} {t.group:8s} acc@{t.k}  dataset={t.dataset}  split={t.split}")
    typer.echo("(* = the paper's ten, the default)")


def _score(cfg) -> None:
    from evaluation.stage import evaluate

    for r in evaluate(cfg, state.store):
        if r["status"] == "ok":
            acc = r["metrics"][f"acc@{r['k']}"]
            typer.echo(
                f"{r['task']:20s} acc@{r['k']} {100 * acc:6.2f}%  n={r['n_samples']}  "
                f"skipped={sum(r['skipped'].values())}"
            )
        else:
            typer.echo(f"{r['task']:20s} {r['status']}: {r.get('message', '')}")


def _check_data(cfg) -> None:
    from evaluation.data_check import check_task, dataset_hint, format_checks
    from evaluation.scoring import dataset_roots

    tasks = cfg.resolved_tasks()
    roots = dataset_roots(cfg, tasks)
    checks = [check_task(t, roots[t.dataset], cfg.split_for(t), roots, cfg.options_for(t)) for t in tasks]
    typer.echo(format_checks(checks, {t.id: dataset_hint(t) for t in tasks}))


def _compare(entries: list[str], name: str | None, paper: str | None) -> None:
    from evaluation.compare import compare_stage

    table = compare_stage(entries, state.store, name, paper=paper)
    typer.echo(table.markdown)
    files = ", ".join(f.name for f in table.files)
    typer.echo(f"wrote reports/{name or 'compare'} ({files})", err=True)
