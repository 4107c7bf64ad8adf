"""Reading analyze's inputs: description artifacts (validated against the describe schema) and annotations.

frame = descriptions_frame(store, "rules-mpii"); index = read_annotation_index(store, "mpii")
"""

from __future__ import annotations

import pandas as pd

from pipeline.artifacts import annotations, descriptions
from pipeline.artifacts.descriptions import DescribeMeta
from pipeline.records import ImageAnnotation
from pipeline.store import Store


def descriptions_frame(store: Store, name: str) -> pd.DataFrame:
    """One descriptions artifact as a DataFrame with the columns analyze uses, checked row by row."""
    columns = (*descriptions.REQUIRED, *descriptions.USAGE, "model", "template")
    df = descriptions.read(store, name, columns).to_pandas()
    for col in descriptions.USAGE:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["artifact"] = name
    # describe --with-image: the model saw the photograph (analyze compares these with text-only sources).
    df["with_image"] = DescribeMeta.read(store, name).with_image
    return df


def annotations_name(store: Store, name: str, override: str | None) -> str | None:
    """The annotations descriptions/<name> was made from (its meta.json inputs), unless overridden."""
    return override or DescribeMeta.read(store, name).annotations


def read_annotation_index(store: Store, name: str) -> dict[str, ImageAnnotation]:
    index: dict[str, ImageAnnotation] = {}
    for r in annotations.read(store, name):
        index.setdefault(r.image, r)  # convert writes one row per image; keep the first if not
    return index
