"""The reports artifact: reports/<name>/, written by analyze (description quality and faithfulness) and by
eval --compare (the zero-shot comparison of several evals).

    from pipeline.artifacts import reports
    report = reports.read(store, "rules-mpii")                 # report.json, what analyze measured
    checks = reports.read_checks(store, "rules-mpii")          # one row per checked claim

analyze writes report.json (everything measured), report.md (the tables), report.html (charts and the
gallery) and checks.parquet (CHECKS_SCHEMA). eval --compare writes comparison.json, comparison.md and
comparison.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.store import Store

REPORT_FILE = "report.json"
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
CHECKS_FILE = "checks.parquet"
COMPARISON_FILE = "comparison.json"
COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_PLOT = "comparison.png"

CHECKS_SCHEMA = pa.schema([
    ("image", pa.string()), ("source", pa.string()), ("sample", pa.int32()), ("kind", pa.string()),
    ("part", pa.string()), ("value", pa.string()), ("person", pa.int32()), ("verdict", pa.string()),
    ("evidence", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("text", pa.string()),
])  # fmt: skip


def write(folder: Path, report: dict[str, Any], *, markdown: str, html: str, checks: pa.Table) -> None:
    """An analyze report's four files (report is JSON-safe: no NaN, plain Python numbers)."""
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (folder / MARKDOWN_FILE).write_text(markdown)
    (folder / HTML_FILE).write_text(html)
    pq.write_table(checks.cast(CHECKS_SCHEMA), folder / CHECKS_FILE, compression="zstd")


def read(store: Store, name: str) -> dict[str, Any]:
    """report.json of reports/<name> (an analyze report)."""
    path = store.path("reports", name) / REPORT_FILE
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: not a readable analyze report ({type(err).__name__}: {err})") from None
    if not isinstance(report, dict) or not isinstance(report.get("per_source"), dict):
        raise PipelineError(f"{path}: not an analyze report (no per_source)")
    return report


def read_checks(store: Store, name: str) -> pa.Table:
    """checks.parquet of reports/<name>, checked against CHECKS_SCHEMA."""
    path = store.path("reports", name) / CHECKS_FILE
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in CHECKS_SCHEMA.names if c not in table.column_names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (see reports.CHECKS_SCHEMA)")
    return table.select(CHECKS_SCHEMA.names)


def write_comparison(folder: Path, data: dict[str, Any], *, markdown: str) -> list[Path]:
    """eval --compare's comparison.md and comparison.json; returns them (the plot is drawn beside them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPARISON_MARKDOWN).write_text(markdown)
    (folder / COMPARISON_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return [folder / COMPARISON_MARKDOWN, folder / COMPARISON_FILE]
