"""The descriptions artifact: descriptions/<name>/descriptions.parquet, one row per (image, sample), written
by describe (its journal, journal.sqlite, beside it) and read by build-dataset and analyze.

    from pipeline.artifacts import descriptions
    descriptions.write(writer.dir / descriptions.FILE, results)   # results: list[DescriptionResult]
    table = descriptions.read(store, "rules", columns=(*descriptions.REQUIRED, "cost_usd"))
    meta = DescribeMeta.read(store, "rules")                       # how they were made

A row's status is one of STATUSES: ok passed the quality gate (pipeline.describe.validate); the others say why
a reply is not used (truncated, refused by the model, invalid under the gate, or an error with no reply).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.store import Store

FILE = "descriptions.parquet"
STATUSES = ("ok", "truncated", "refused", "invalid", "error")
FAILED_STATUSES = tuple(s for s in STATUSES if s != "ok")  # what describe --retry-failed re-runs
# Status ranks for --retry-invalid: a row keeps its best ask (ok, then a reply that has text, then none).
RANK = {"ok": 0, "invalid": 1, "truncated": 2, "refused": 3, "error": 4}


@dataclass(slots=True)
class DescriptionResult:
    """One row of descriptions.parquet and of the journal."""

    cache_key: str
    image: str
    source: str
    sample: int
    description: str | None
    status: str  # one of STATUSES
    model: str
    template: str
    template_hash: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None
    response_id: str | None = None
    # --with-image: JSON of what was sent (ImageInput.record); kept in the journal, not in the parquet
    image_input: str | None = None


SCHEMA = pa.schema([
    ("image", pa.string()),
    ("source", pa.string()),
    ("sample", pa.int32()),
    ("description", pa.string()),
    ("status", pa.string()),
    ("model", pa.string()),
    ("template", pa.string()),
    ("template_hash", pa.string()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("latency_s", pa.float64()),
    ("attempts", pa.int32()),
    ("error", pa.string()),
    ("response_id", pa.string()),
    ("cache_key", pa.string()),
])  # fmt: skip
REQUIRED = ("image", "source", "sample", "description", "status")  # what every reader needs
USAGE = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s")  # numbers; rows of old files: null
# What a dataset row keeps of its description: the text and where it came from (build-dataset).
PROVENANCE = (*REQUIRED, "model", "template", "template_hash",
              "prompt_tokens", "completion_tokens", "cost_usd")  # fmt: skip


def _check_columns() -> None:
    """Every column is a DescriptionResult field and every name used above a column: a rename fails here."""
    results = {f.name for f in dataclasses.fields(DescriptionResult)}
    for name in (*SCHEMA.names, *REQUIRED, *USAGE, *PROVENANCE):
        if name not in results or name not in SCHEMA.names:
            raise TypeError(f"descriptions column {name!r}: not both in SCHEMA and a DescriptionResult field")


_check_columns()


def write(path: Path, results: Sequence[DescriptionResult]) -> None:
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for r in results:
        for name in cols:
            cols[name].append(getattr(r, name))
    pq.write_table(pa.table(cols, schema=SCHEMA), path, compression="zstd")


def totals(results: Sequence[DescriptionResult]) -> dict[str, Any]:
    """The counts meta.json records: rows, images, rows per status, tokens and cost."""
    by_status = Counter(r.status for r in results)
    return {
        "rows": len(results),
        "images": len({r.image for r in results}),
        **{s: by_status.get(s, 0) for s in STATUSES},
        "prompt_tokens": sum(r.prompt_tokens for r in results),
        "completion_tokens": sum(r.completion_tokens for r in results),
        "cost_usd": round(sum(r.cost_usd for r in results), 6),
    }


def read_file(path: str | Path, columns: Sequence[str] = REQUIRED) -> pa.Table:
    """`columns` of a descriptions.parquet, checked: the required columns are there, image, source and
    status are never null and every status is one of STATUSES. Absent optional columns come back null."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: missing (descriptions/{path.parent.name} has no {FILE})")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (see the describe schema)")
    for col in ("image", "source", "status"):
        nulls = table.column(col).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise PipelineError(f"{path}: row {int(nulls.argmax())}: {col} is null")
    unknown = pc.invert(pc.is_in(table.column("status"), value_set=pa.array(STATUSES)))
    if pc.any(unknown).as_py():
        row = int(np.argmax(unknown.to_numpy(zero_copy_only=False)))
        raise PipelineError(
            f"{path}: row {row}: status {table.column('status')[row].as_py()!r} is not one of "
            f"{', '.join(STATUSES)}"
        )
    for col in columns:
        if col not in table.column_names:
            table = table.append_column(
                SCHEMA.field(col), pa.nulls(table.num_rows, type=SCHEMA.field(col).type)
            )
    return table.select(list(columns))


def read(store: Store, name: str, columns: Sequence[str] = REQUIRED) -> pa.Table:
    """`columns` of descriptions/<name> (see read_file)."""
    return read_file(store.path("descriptions", name) / FILE, columns)


@dataclass(frozen=True, slots=True)
class DescribeMeta:
    """What a descriptions artifact's meta.json says about how it was made (the describe config it recorded,
    its counts, and the annotations it was made from)."""

    name: str
    config: dict[str, Any]
    counts: dict[str, Any]
    annotations: str | None  # the annotations artifact it was made from (None: not recorded)

    @classmethod
    def read(cls, store: Store, name: str) -> DescribeMeta:
        meta = store.meta("descriptions", name)
        made_from = next((i["name"] for i in meta["inputs"] if i["kind"] == "annotations"), None)
        return cls(name=name, config=meta["config"], counts=meta["counts"], annotations=made_from)

    @property
    def backend(self) -> str | None:
        return self.config.get("backend")

    @property
    def with_image(self) -> bool:
        """describe --with-image: the model saw the photograph."""
        return bool(self.config.get("with_image"))
