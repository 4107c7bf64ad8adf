"""`eval --check-data`: per task, is its dataset where eval looks, what is in it, and where to get it.

    check = check_task(task, root, split, roots, options)     # only the reader runs: no model
    print(format_checks([check], {task.id: dataset_hint(task)}))

A task's expected layout is its reader's own description (the reader module's docstring, the one home of
that fact) and its official source is the reader module's SOURCE.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from evaluation.readers import READERS, DataAbsent, ReaderInput
from evaluation.tasks import Task


@dataclass(slots=True)
class DataCheck:
    task: str
    dataset: str
    folder: str
    status: str  # found | missing | unreadable | empty
    split: str
    samples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    looked_for: list[str] = field(default_factory=list)
    message: str = ""


def reader_module(task: Task) -> ModuleType | None:
    fn = READERS.get(task.reader) if isinstance(task.reader, str) else task.reader
    return inspect.getmodule(fn) if fn is not None else None


def dataset_hint(task: Task) -> str:
    """One paragraph for a user whose dataset is missing: the layout the reader parses and where to get it."""
    module = reader_module(task)
    layout = " ".join((module.__doc__ or "").split("\n\n")[0].split()).rstrip(".") if module else ""
    source = getattr(module, "SOURCE", "")
    hint = f"expected in the dataset folder: {layout}" if layout else ""
    return f"{hint}; official source: {source}" if source else hint


def check_task(
    task: Task, root: Path, split: str, paths: dict[str, Path], options: dict[str, str]
) -> DataCheck:
    check = DataCheck(task.id, task.dataset, str(root), "found", split)
    try:
        if not root.exists():
            raise DataAbsent(f"dataset folder {root} does not exist", [root])
        read = task.read(ReaderInput(root=root, split=split, options=options, paths=paths))
    except DataAbsent as err:
        check.status, check.message, check.looked_for = "missing", str(err), err.looked_for
        return check
    except Exception as err:  # a malformed annotation file: say which and why, go on with the next task
        check.status, check.message = "unreadable", f"{type(err).__name__}: {err}"
        return check
    check.split = read.split or split
    check.samples = len(read.samples)
    check.skipped = dict(read.skipped)
    check.message = "; ".join(read.notes)
    if not read.samples:
        check.status = "empty"
    return check


def format_checks(checks: list[DataCheck], hints: dict[str, str]) -> str:
    """A table a person reads: one block per task, with the layout and source where data is missing."""
    lines = []
    for c in checks:
        skipped = sum(c.skipped.values())
        counts = f"{c.samples:,} samples" + (f" ({skipped:,} skipped: {_top(c.skipped)})" if skipped else "")
        shown = counts if c.status != "missing" else ""
        lines.append(f"{c.task:22s} {c.status:10s} split={c.split:6s} {shown}".rstrip())
        lines.append(f"    folder: {c.folder}")
        if c.message:
            lines.append(f"    {c.message}")
        if c.status != "found":
            lines += [f"    looked for: {p}" for p in c.looked_for]
            lines.append(f"    {hints[c.task]}")
    found = sum(c.status == "found" for c in checks)
    lines.append(f"{found} of {len(checks)} tasks have data")
    return "\n".join(lines)


def _top(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
