"""The dataset's Parquet shards: one SplitWriter per split, and the row an image becomes.

    writer = SplitWriter(data_dir, "train", max_bytes=500 * 2**20, max_rows=None, group_rows=100)
    writer.add(dataset_row(ann, descs, res, sources), nbytes)
    files = writer.finish()   # data/train-00000-of-00002.parquet, ...

Rows are written with the card's SCHEMA (pipeline.build_dataset.card), compressed with zstd.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.build_dataset.card import SCHEMA
from pipeline.build_dataset.images import ImageResult
from pipeline.build_dataset.index import Description
from pipeline.records import ImageAnnotation, Person


class SplitWriter:
    """Rows of one split -> data/<split>-NNNNN-of-NNNNN.parquet, a row group at a time, bounded shards.

    Shards are written as .partial files and named at the end, when their total count is known.
    """

    def __init__(self, data_dir: Path, split: str, *, max_bytes: int, max_rows: int | None, group_rows: int):
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
        full = self._shard_bytes + nbytes > self.max_bytes or (
            self.max_rows and self._shard_rows >= self.max_rows
        )
        if self._shard_rows and full:
            self._close_shard()
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

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_rows = self._shard_bytes = 0

    def finish(self) -> list[Path]:
        self._close_shard()
        n = len(self.parts)
        final = [p.with_name(f"{self.split}-{i:05d}-of-{n:05d}.parquet") for i, p in enumerate(self.parts)]
        for part, path in zip(self.parts, final, strict=True):
            part.rename(path)
        return final


def _person_row(p: Person, roi: str | None, sx: float, sy: float) -> dict:
    kps = p.keypoints.astype(np.float32).copy()
    kps[:, 0] *= sx
    kps[:, 1] *= sy
    box = p.source_box
    return {
        "keypoints": kps.reshape(-1).tolist(),
        "center": None if p.center is None else [float(p.center[0]) * sx, float(p.center[1]) * sy],
        # scale is person height / 200 px, so it follows the vertical factor.
        "scale": None if p.scale is None else float(p.scale) * sy,
        "label": p.label,
        "box": None if box is None else [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy],
        "crowd": p.crowd,
        "roi": roi,
    }


def dataset_row(
    ann: ImageAnnotation, descs: list[Description], res: ImageResult, sources: list[str | None]
) -> dict:
    sx, sy = res.scale
    return {
        "image": {"bytes": res.image, "path": ann.image},
        "heatmap": {"bytes": res.heatmap, "path": None},
        "image_id": ann.image,
        "split": ann.split,
        "activity": ann.activity,
        "category": ann.category,
        "activity_id": ann.activity_id,
        "description": descs[0].text,
        "descriptions": [asdict(d) for d in descs],
        "width": res.width,
        "height": res.height,
        "people": [_person_row(p, s, sx, sy) for p, s in zip(ann.people, sources, strict=True)],
        "skeleton": ann.skeleton.name,
    }
