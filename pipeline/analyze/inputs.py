"""Reading analyze's inputs: description artifacts (validated against the describe schema) and annotations.

frame, annotations_by_artifact = load_descriptions(store, ["rules-mpii", "gpt4o"])
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.records import ImageAnnotation, read_annotations
from pipeline.store import Store

log = logging.getLogger(__name__)

STATUSES = ("ok", "truncated", "refused", "invalid", "error")  # the describe stage's row statuses
REQUIRED = ("image", "source", "sample", "description", "status")
OPTIONAL_NUMERIC = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s")
OPTIONAL_TEXT = ("model", "template")


def read_descriptions(store: Store, name: str) -> pd.DataFrame:
    """One descriptions artifact as a DataFrame with the columns analyze uses, checked row by row."""
    path = store.path("descriptions", name) / "descriptions.parquet"
    if not path.is_file():
        raise PipelineError(f"{path}: missing (descriptions/{name} has no descriptions.parquet)")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise PipelineError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (see the describe schema)")
    keep = [c for c in (*REQUIRED, *OPTIONAL_NUMERIC, *OPTIONAL_TEXT) if c in table.column_names]
    df = table.select(keep).to_pandas()
    for col in ("image", "source", "status"):
        bad = df[col].isna()
        if bad.any():
            raise PipelineError(f"{path}: row {int(bad.idxmax())}: {col} is null")
    unknown = ~df["status"].isin(STATUSES)
    if unknown.any():
        row = int(unknown.idxmax())
        raise PipelineError(
            f"{path}: row {row}: status {df['status'][row]!r} is not one of {', '.join(STATUSES)}"
        )
    for col in OPTIONAL_NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else float("nan")
    for col in OPTIONAL_TEXT:
        if col not in df:
            df[col] = None
    df["artifact"] = name
    return df


def annotations_name(store: Store, descriptions: str, override: str | None) -> str | None:
    """The annotations a descriptions artifact was made from (its meta.json inputs), unless overridden."""
    if override:
        return override
    for ref in store.meta("descriptions", descriptions).get("inputs", []):
        if ref.get("kind") == "annotations":
            return ref["name"]
    return None


def read_annotation_index(store: Store, name: str) -> dict[str, ImageAnnotation]:
    path = store.path("annotations", name) / "annotations.parquet"
    if not path.is_file():
        raise PipelineError(f"{path}: missing (annotations/{name} has no annotations.parquet)")
    try:
        rows = read_annotations(path)
    except Exception as err:
        raise PipelineError(f"{path}: not an annotations table ({type(err).__name__}: {err})") from None
    index: dict[str, ImageAnnotation] = {}
    for r in rows:
        index.setdefault(r.image, r)  # convert writes one row per image; keep the first if not
    return index
