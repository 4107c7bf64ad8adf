"""Reading analyze's inputs: description artifacts (validated against the describe schema) and annotations.

frame = descriptions_frame(store, "rules-mpii"); index = read_annotation_index(store, "mpii")
"""

from __future__ import annotations

import pandas as pd

from pipeline.records import (
    ANNOTATIONS_FILE,
    DESCRIPTIONS_FILE,
    DESCRIPTIONS_REQUIRED,
    ImageAnnotation,
    read_annotations,
    read_descriptions,
)
from pipeline.store import Store

OPTIONAL_NUMERIC = ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s")
OPTIONAL_TEXT = ("model", "template")


def descriptions_frame(store: Store, name: str) -> pd.DataFrame:
    """One descriptions artifact as a DataFrame with the columns analyze uses, checked row by row."""
    path = store.path("descriptions", name) / DESCRIPTIONS_FILE
    df = read_descriptions(path, (*DESCRIPTIONS_REQUIRED, *OPTIONAL_NUMERIC, *OPTIONAL_TEXT)).to_pandas()
    for col in OPTIONAL_NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["artifact"] = name
    # describe --with-image: the model saw the photograph (analyze compares these with text-only sources).
    df["with_image"] = bool(store.meta("descriptions", name).get("config", {}).get("with_image"))
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
    index: dict[str, ImageAnnotation] = {}
    for r in read_annotations(store.path("annotations", name) / ANNOTATIONS_FILE):
        index.setdefault(r.image, r)  # convert writes one row per image; keep the first if not
    return index
