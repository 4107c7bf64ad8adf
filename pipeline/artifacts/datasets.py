"""The datasets artifact: datasets/<name>/, a Hugging Face dataset in Parquet shards, written by build-dataset
(and the synthetic test writer) and read by training.

    from pipeline.artifacts import datasets
    writer = datasets.SplitWriter(folder / datasets.DATA_DIR, "train", max_bytes=500 * 2**20)
    writer.add(row, nbytes); files = writer.finish()        # data/train-00000-of-00001.parquet
    paths = datasets.shard_paths(store.path("datasets", "mpii"), "train")
    meta = DatasetMeta.read(store, "mpii")                  # roi, skeletons, statistics

Layout: data/<split>-NNNNN-of-NNNNN.parquet (one row per image: FEATURES), README.md (the card: YAML header
that `datasets.load_dataset(<folder>)` and the Hub read, and the Markdown body), skipped.jsonl (every image or
description row left out, with its reason) and meta.json. The Parquet schema carries FEATURES as
"huggingface" metadata, as `datasets` itself writes them, so `load_dataset("parquet", ...)` decodes the image
columns too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets as hf
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.skeletons import SKELETONS, Skeleton
from pipeline.store import Store

DATA_DIR = "data"
CARD_FILE = "README.md"
SKIPPED_FILE = "skipped.jsonl"

PERSON_FEATURES = {
    # 3K floats: x, y, v per joint of the row's skeleton (MPII: 48, in MPII order), in stored-image pixels;
    # v = 0 (not annotated) has NaN x, y.
    "keypoints": hf.List(hf.Value("float32")),
    "center": hf.List(hf.Value("float32")),
    "scale": hf.Value("float32"),
    "label": hf.Value("string"),  # the instance's category (COCO-format sources: "person", a species)
    "box": hf.List(hf.Value("float32")),  # the source's instance box x1, y1, x2, y2
    "crowd": hf.Value("bool"),  # a COCO crowd region (several people, no keypoints)
    "roi": hf.Value("string"),  # what drew this instance's part of the heatmap: keypoints, box, mask
}
FEATURES = hf.Features({
    "image": hf.Image(),
    "heatmap": hf.Image(),  # 8-bit L PNG, same size as image
    "image_id": hf.Value("string"),
    "split": hf.Value("string"),
    "activity": hf.Value("string"),
    "category": hf.Value("string"),
    "activity_id": hf.Value("int32"),
    "description": hf.Value("string"),
    "descriptions": hf.List({
        "source": hf.Value("string"),
        "model": hf.Value("string"),
        "text": hf.Value("string"),
    }),
    "width": hf.Value("int32"),
    "height": hf.Value("int32"),
    "people": hf.List(PERSON_FEATURES),
    "skeleton": hf.Value("string"),  # a pipeline.skeletons name (the card lists its joints)
})  # fmt: skip
# The columns readers name (a column renamed in FEATURES fails _check_columns at import, not a reader later).
IMAGE, HEATMAP = "image", "heatmap"  # the pixels: {bytes, path} cells of encoded images
IMAGE_ID, WIDTH, HEIGHT, PEOPLE, SKELETON = "image_id", "width", "height", "people", "skeleton"
DESCRIPTION, DESCRIPTIONS = "description", "descriptions"
KEYPOINTS = "keypoints"  # of each person: 3K floats (PERSON_FEATURES)
# What training reads of each row besides the pixels, and what a shard must have for it.
META_COLUMNS = (IMAGE_ID, DESCRIPTION, DESCRIPTIONS, PEOPLE, WIDTH, HEIGHT, SKELETON)
TRAIN_REQUIRED = (IMAGE, WIDTH, HEIGHT, PEOPLE)  # and HEATMAP when training on the stored heatmaps
TEXT_COLUMNS = (DESCRIPTION, DESCRIPTIONS)  # one of them: the text a row is trained on


def _check_columns() -> None:
    """Every column named above is one of FEATURES: a renamed column fails here, at import."""
    for name in (IMAGE, HEATMAP, *META_COLUMNS):
        if name not in FEATURES:
            raise TypeError(f"datasets column {name!r} is not in FEATURES")
    if KEYPOINTS not in PERSON_FEATURES:
        raise TypeError(f"datasets person field {KEYPOINTS!r} is not in PERSON_FEATURES")


_check_columns()


def _portable(feature: Any) -> Any:
    """A features dict in the form every supported `datasets` reads: variable-length lists as `[feature]`.

    datasets >= 4 serialises `List` as {"_type": "List"}, a type name older versions do not know ("Feature
    type 'List' not found" with datasets 3.6); a one-element list is how older versions wrote such lists,
    and datasets 4 still reads it as `List`.
    """
    if isinstance(feature, dict):
        if feature.get("_type") == "List" and feature.get("length", -1) == -1:
            return [_portable(feature["feature"])]
        return {k: _portable(v) for k, v in feature.items()}
    return feature


SCHEMA = FEATURES.arrow_schema.with_metadata(
    {"huggingface": json.dumps({"info": {"features": _portable(FEATURES.to_dict())}})}
)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def shard_paths(root: Path, split: str) -> list[Path]:
    """The split's shards in a dataset folder; a one-line error naming the splits there when it has none."""
    paths = sorted((root / DATA_DIR).glob(f"{split}-*-of-*.parquet"))
    if not paths:
        found = sorted({p.name.split("-")[0] for p in (root / DATA_DIR).glob("*.parquet")})
        raise PipelineError(
            f"{root}: no '{split}' shards in {DATA_DIR}/ (splits found: {', '.join(found) or 'none'})"
        )
    return paths


class SplitWriter:
    """Rows of one split -> data/<split>-NNNNN-of-NNNNN.parquet, a row group at a time, bounded shards.

    Shards are written as .partial files and named at the end, when their total count is known.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str,
        *,
        max_bytes: int | None = None,
        max_rows: int | None = None,
        group_rows: int = 100,
    ):
        self.data_dir, self.split = data_dir, split
        self.max_bytes, self.max_rows, self.group_rows = max_bytes, max_rows, group_rows
        self.parts: list[Path] = []
        self.rows = 0
        self.num_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._buf: list[dict] = []
        self._buf_bytes = 0
        self._shard_rows = 0
        self._shard_bytes = 0

    def add(self, row: dict, nbytes: int) -> None:
        """One row (FEATURES' columns) of about `nbytes` (what bounds the shards and row groups)."""
        full = (self.max_bytes is not None and self._shard_bytes + nbytes > self.max_bytes) or (
            self.max_rows is not None and self._shard_rows >= self.max_rows
        )
        if self._shard_rows and full:
            self.close_shard()
        self._buf.append(row)
        self._buf_bytes += nbytes
        self._shard_rows += 1
        self._shard_bytes += nbytes
        self.rows += 1
        if len(self._buf) >= self.group_rows or self._buf_bytes >= 64 * 2**20:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        if self._writer is None:
            path = self.data_dir / f"{self.split}-{len(self.parts):05d}.partial"
            self.parts.append(path)
            self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        table = pa.Table.from_pylist(self._buf, schema=SCHEMA)
        self._writer.write_table(table, row_group_size=len(self._buf))
        self.num_bytes += table.nbytes
        self._buf, self._buf_bytes = [], 0

    def close_shard(self) -> None:
        """End the current shard here: the next row starts a new one (a writer that splits by count)."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_rows = self._shard_bytes = 0

    def finish(self) -> list[Path]:
        self.close_shard()
        n = len(self.parts)
        final = [p.with_name(shard_name(self.split, i, n)) for i, p in enumerate(self.parts)]
        for part, path in zip(self.parts, final, strict=True):
            part.rename(path)
        return final


def check_columns(names: set[str], where: str | Path, *, heatmaps: bool = False) -> None:
    """A one-line error naming the shard (`where`) when its columns (`names`) lack one training reads: those
    of TRAIN_REQUIRED, a text column, and the heatmap when `heatmaps`."""
    missing = set(TRAIN_REQUIRED) - names
    if heatmaps and HEATMAP not in names:
        missing.add(HEATMAP)
    if not names & set(TEXT_COLUMNS):
        missing.add(TEXT_COLUMNS[0])
    if missing:
        raise PipelineError(f"{where}: missing column(s) {', '.join(sorted(missing))}")


def row_texts(row: dict[str, Any]) -> list[str]:
    """The texts a row is trained on: its descriptions, or its one description (older datasets)."""
    texts = [d["text"] for d in (row.get(DESCRIPTIONS) or []) if d and d.get("text")]
    if not texts and row.get(DESCRIPTION):
        texts = [row[DESCRIPTION]]
    return texts


@dataclass(frozen=True, slots=True)
class DatasetMeta:
    """What a dataset's meta.json says about it beyond its rows."""

    name: str
    fingerprint: str
    roi: str  # what its stored heatmaps come from (build-dataset --roi): keypoints, box or mask
    skeletons: dict[str, Skeleton]  # the skeletons its rows may name: built in, or defined in meta.json
    statistics: dict[str, Any]
    counts: dict[str, Any]

    @classmethod
    def read(cls, store: Store, name: str) -> DatasetMeta:
        meta = store.meta("datasets", name)
        defined = {d["name"]: Skeleton.from_dict(d) for d in meta.get("skeletons", [])}
        return cls(
            name=name,
            fingerprint=meta["fingerprint"],
            roi=meta["config"].get("roi") or "keypoints",  # datasets built before --roi: keypoints
            skeletons=SKELETONS | defined,
            statistics=meta.get("statistics", {}),
            counts=meta["counts"],
        )
