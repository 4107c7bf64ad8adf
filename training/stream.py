"""Streaming mode: batches read straight from the dataset's Parquet shards, local or at any fsspec URL
(hf://datasets/..., s3://..., file://, memory://), for data whose decoded cache would not fit the cache disk.

    source = StreamSource.open("hf://datasets/me/mpii-pose", "train", with_heatmaps=False)
    loader = StreamLoader(source, views, StreamOptions(batch_size=64, world=8, rank=r, seed=0, workers=8,
                          side=252, interpolation="bicubic", ...), tokenizer=tok, context_length=77)
    batch = loader.get(epoch, step)               # the same Batch, and the same kind of batch, as the cache's

The unit of reading is a Parquet row group. Opening reads the shards' footers only (row counts, and the
description column's statistics, which say whether every row has one; a group whose statistics cannot say
reads its description columns once). The epoch's order is a pure function of (seed, epoch):
1. the row groups are permuted, and their usable rows laid end to end into one sequence;
2. rank r takes the r-th run of steps_per_epoch * batch_size positions (steps_per_epoch = usable rows //
   global batch, as the cache mode's drop_last), so a rank reads its own row groups, not everybody's;
3. within a rank's run, blocks of SHUFFLE_ROWS positions are shuffled (a block shuffle: a batch mixes rows
   of about SHUFFLE_ROWS / rows-per-group random row groups; a worker holds one block's encoded bytes);
4. the run is cut into batches, and DataLoader worker l owns a contiguous run of them: step k is batch
   start(k mod W) + k // W, as the DataLoader's round-robin over W workers delivers it.
So every usable row is seen once per epoch when the global batch divides their number, a resumed run
started at step k of an epoch gets the very batches an uninterrupted one would (the physical workers are
re-assigned to the logical ones), and the order depends on the number of workers (--resume refuses
another number, or the other mode). Workers decode and squash (training/pixels.py, as the cache does), read
the keypoints and sample the sentences with the step's own generator; the crop and heatmap are made on the
device by the same BatchViews as the cache mode's, so a sample at a step is the same batch row in either
mode.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.artifacts.datasets import (
    META_COLUMNS,
    TEXT_COLUMNS,
    check_columns,
    row_texts,
)
from pipeline.errors import PipelineError
from pipeline.skeletons import MPII, Skeleton
from training.cache import NodeCache, cache_bytes, free_bytes
from training.data import (
    padded_keypoints,
    row_keypoints,
    row_skeleton,
    to_side,
)
from training.pixels import image_bytes, squash
from training.text import BatchStats, RowTexts
from training.views import Batch, BatchViews, HostBatch, step_generators

log = logging.getLogger(__name__)

# --data auto decodes a cache only when it takes at most this share of its disk's free space (the rest is
# left to checkpoints, logs and whoever else shares the disk); otherwise the run streams
CACHE_DISK_SHARE = 0.9
SHUFFLE_ROWS = 1024  # rows shuffled together (a block); a worker holds one block's encoded images


@dataclass(frozen=True, slots=True)
class Unit:
    """One row group: its shard, its index in the shard, its first row's number, its usable rows (offsets)."""

    shard: int
    group: int
    first: int
    rows: np.ndarray


@dataclass(slots=True)
class StreamSource:
    url: str  # the dataset folder (holding data/<split>-NNNNN-of-NNNNN.parquet), as given
    shards: list[str]  # paths on fs
    units: list[Unit]
    columns: set[str]
    skeleton_names: set[str]  # from the skeleton column's statistics (empty: no column, MPII)
    rows_total: int  # every row, usable or not (the cache-size estimate)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return _filesystem(self.url)

    @property
    def num_usable(self) -> int:
        return int(sum(len(u.rows) for u in self.units))

    @classmethod
    def open(cls, url: str, split: str, *, with_heatmaps: bool) -> StreamSource:
        """The split's shards and row groups, from the footers (no image is read)."""
        fs = _filesystem(url)
        root = fsspec.core.strip_protocol(url) if "://" in url else str(Path(url))  # a//b: a/b
        shards = sorted(fs.glob(f"{root.rstrip('/')}/data/{split}-*-of-*.parquet"))
        if not shards:
            raise PipelineError(f"{url}: no '{split}' shards in data/ (data/{split}-NNNNN-of-NNNNN.parquet)")
        units, names, columns, total = [], set(), None, 0
        for s, path in enumerate(shards):
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                cols = set(pf.schema_arrow.names)
                check_columns(cols, f"{url}/{path.rsplit('/', 1)[-1]}", heatmaps=with_heatmaps)
                columns = cols if columns is None else columns & cols
                first = 0
                for g in range(pf.num_row_groups):
                    meta = pf.metadata.row_group(g)
                    names |= _skeleton_names(pf, g, meta)
                    units.append(Unit(s, g, first, _usable_rows(pf, g, meta)))
                    first += meta.num_rows
                total += first
        source = cls(url, shards, [u for u in units if len(u.rows)], columns, names, total)
        if not source.units:
            raise PipelineError(f"{url}: no '{split}' rows with a description to train on")
        return source

    def skeleton(self, skeletons: dict[str, Skeleton]) -> Skeleton:
        """The rows' one skeleton (MPII for datasets without the column); rows are checked again as read."""
        if len(self.skeleton_names) > 1:
            raise PipelineError(
                f"{self.url}: rows of skeletons {', '.join(sorted(self.skeleton_names))}; training reads "
                f"one skeleton per dataset (build one dataset per skeleton)"
            )
        name = next(iter(self.skeleton_names), MPII.name)
        if name not in skeletons:
            raise PipelineError(f"{self.url}: skeleton {name!r} is neither built in nor defined in meta.json")
        return skeletons[name]


@functools.lru_cache(maxsize=8)
def _filesystem(url: str) -> fsspec.AbstractFileSystem:
    return fsspec.core.url_to_fs(url)[0]


def _stats(meta, name: str):
    """A top-level column's statistics in one row group's metadata, or None."""
    for i in range(meta.num_columns):
        column = meta.column(i)
        if column.path_in_schema == name:
            return column.statistics
    return None


def _skeleton_names(pf: pq.ParquetFile, g: int, meta) -> set[str]:
    if "skeleton" not in pf.schema_arrow.names:
        return set()
    stats = _stats(meta, "skeleton")
    if stats is not None and stats.has_min_max and stats.min == stats.max and stats.null_count == 0:
        return {stats.min}
    return {name or MPII.name for name in pf.read_row_group(g, columns=["skeleton"]).column(0).to_pylist()}


def _usable_rows(pf: pq.ParquetFile, g: int, meta) -> np.ndarray:
    """Offsets of the group's rows with a description: all of them when the statistics of `description`
    say every row has a non-empty one (what build-dataset writes), else read from the text columns."""
    stats = _stats(meta, "description")
    if stats is not None and stats.null_count == 0 and stats.has_min_max and stats.min:
        return np.arange(meta.num_rows, dtype=np.int32)
    cols = [c for c in TEXT_COLUMNS if c in pf.schema_arrow.names]
    rows = pf.read_row_group(g, columns=cols).to_pylist()
    return np.asarray([i for i, row in enumerate(rows) if row_texts(row)], dtype=np.int32)


# ---- the order: pure functions of (sizes, seed, epoch, rank, world, batch size, workers) ---------------
@dataclass(frozen=True, slots=True)
class StreamOrder:
    sizes: tuple[int, ...]  # usable rows per unit
    batch_size: int
    world: int
    workers: int  # logical workers (1 when the DataLoader has none)
    seed: int
    shuffle_rows: int = SHUFFLE_ROWS

    @property
    def steps_per_epoch(self) -> int:
        return sum(self.sizes) // (self.batch_size * self.world)

    def worker_batches(self, worker: int) -> range:
        """The rank's batch numbers (before the interleave) that logical worker `worker` owns."""
        spe, w = self.steps_per_epoch, self.workers
        count = spe // w + (worker < spe % w)
        start = worker * (spe // w) + min(worker, spe % w)
        return range(start, start + count)

    def batch_of_step(self, step: int) -> int:
        """The DataLoader delivers worker k % W's (k // W)-th batch at step k."""
        return self.worker_batches(step % self.workers)[step // self.workers]

    def first_batch(self, worker: int, start_step: int) -> int:
        """How many of logical worker `worker`'s batches the steps before start_step consumed."""
        return max(0, -(-(start_step - worker) // self.workers))

    @functools.lru_cache(maxsize=4)  # noqa: B019 (a few epochs' orders, on a frozen value object)
    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(units in this epoch's order, each one's first position in the epoch's sequence)."""
        rng = np.random.default_rng([self.seed, epoch, 0x5EED])
        order = rng.permutation(len(self.sizes))
        sizes = np.asarray(self.sizes, dtype=np.int64)[order]
        return order, np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def _block(self, batch: int) -> tuple[int, int, int]:
        """(block number, its first position in the rank's run, its size) of the block holding `batch`;
        a block is a whole number of batches, so no batch straddles two."""
        b, run = self.batch_size, self.steps_per_epoch * self.batch_size
        block = b * max(1, self.shuffle_rows // b)
        k = batch * b // block
        return k, k * block, min(block, run - k * block)

    def _units(self, epoch: int, rank: int, local: np.ndarray) -> list[tuple[int, int]]:
        """(unit, row number among its usable rows) at the rank's run positions `local`."""
        order, starts = self._epoch(epoch)
        pos = rank * self.steps_per_epoch * self.batch_size + local
        slot = np.searchsorted(starts, pos, side="right") - 1
        return [(int(order[s]), int(p - starts[s])) for s, p in zip(slot, pos, strict=True)]

    def batch_positions(self, epoch: int, rank: int, batch: int) -> list[tuple[int, int]]:
        """The (unit, row number among its usable rows) pairs of the rank's batch `batch` of the epoch."""
        k, first, size = self._block(batch)
        perm = np.random.default_rng([self.seed, epoch, rank, k]).permutation(size)
        at = batch * self.batch_size - first
        return self._units(epoch, rank, first + perm[at : at + self.batch_size])

    def block_units(self, epoch: int, rank: int, batch: int) -> set[int]:
        """The units the block holding `batch` draws from: what a worker keeps read while in it."""
        _, first, size = self._block(batch)
        return {u for u, _ in self._units(epoch, rank, first + np.arange(size))}


# ---- the workers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamOptions:
    batch_size: int
    world: int
    rank: int
    seed: int
    workers: int
    side: int  # the decoded square, as the cache's
    interpolation: str
    with_heatmaps: bool  # decode the stored heatmaps (heatmap_source="dataset")
    sample_sentences: bool = True
    all_descriptions: bool = True
    shuffle_rows: int = SHUFFLE_ROWS  # part of the order: a run resumes with the same


class _Rows:
    """The row groups a worker has read, one block's worth, as Python rows (bytes included)."""

    def __init__(self, source: StreamSource, columns: list[str]):
        self.source, self.columns = source, columns
        self.groups: dict[int, dict[str, list]] = {}
        self.files: dict[int, pq.ParquetFile] = {}

    def row(self, unit_id: int, usable: int) -> tuple[dict, str]:
        unit = self.source.units[unit_id]
        if unit_id not in self.groups:
            if unit.shard not in self.files:
                fh = self.source.fs.open(self.source.shards[unit.shard], "rb")
                self.files[unit.shard] = pq.ParquetFile(fh)
            table = self.files[unit.shard].read_row_group(unit.group, columns=self.columns)
            self.groups[unit_id] = table.to_pydict()
        offset = int(unit.rows[usable])
        group = self.groups[unit_id]
        name = self.source.shards[unit.shard].rsplit("/", 1)[-1]
        return {c: group[c][offset] for c in self.columns}, f"{name} row {unit.first + offset}"

    def keep_only(self, unit_ids: set[int]) -> None:
        self.groups = {u: g for u, g in self.groups.items() if u in unit_ids}


class StreamDataset(IterableDataset):
    """One epoch of one rank's batches, from a given step; each DataLoader worker yields its own. With
    `views` (a CPU BatchViews) the workers make the views too, so a CPU trainer's main process only steps."""

    def __init__(self, loader: StreamLoader, epoch: int, start: int, views: BatchViews | None):
        super().__init__()
        self.source, self.order, self.opts = loader.source, loader.order, loader.opts
        self.skeleton, self.tokenizer, self.context_length = (
            loader.skeleton,
            loader.tokenizer,
            loader.context_length,
        )
        self.epoch, self.start, self.views = epoch, start, views
        source, opts = self.source, self.opts
        self.columns = [c for c in META_COLUMNS if c in source.columns] + ["image"]
        if opts.with_heatmaps:
            self.columns.append("heatmap")

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        logical = (self.start + physical) % self.order.workers
        owned = self.order.worker_batches(logical)
        rows = _Rows(self.source, self.columns)
        for j in range(self.order.first_batch(logical, self.start), len(owned)):
            step = j * self.order.workers + logical
            try:
                yield self._batch(rows, step, owned[j])
            except PipelineError as err:  # one line in the main process, not a worker's traceback
                yield {"error": str(err)}
                return

    def _batch(self, rows: _Rows, step: int, batch: int) -> dict:
        opts = self.opts
        positions = self.order.batch_positions(self.epoch, opts.rank, batch)
        rows.keep_only(self.order.block_units(self.epoch, opts.rank, batch))  # the block's groups only
        images = np.empty((len(positions), opts.side, opts.side, 3), dtype=np.uint8)
        heat = (
            np.empty((len(positions), opts.side, opts.side), dtype=np.uint8) if opts.with_heatmaps else None
        )
        texts, kps, ids = [], [], []
        for i, (unit, usable) in enumerate(positions):
            row, where = rows.row(unit, usable)
            row_skeleton(self.skeleton, row, where, {self.skeleton.name: self.skeleton})
            images[i] = squash(image_bytes(row["image"], where), opts.side, "RGB", where, opts.interpolation)
            if heat is not None:
                heat[i] = squash(image_bytes(row["heatmap"], where + " heatmap"), opts.side, "L", where)
            texts.append(row_texts(row))
            kps.append(to_side(row_keypoints(row, where, self.skeleton), opts.side))
            ids.append(str(row.get("image_id", where)))
        _, rng = step_generators(opts.seed, opts.rank, self.epoch, step)
        tokens, stats = RowTexts(texts, self.tokenizer, context_length=self.context_length).batch(
            rng, sample_sentences=opts.sample_sentences, all_descriptions=opts.all_descriptions
        )
        host = HostBatch(
            images=torch.from_numpy(images),
            heatmaps=torch.from_numpy(heat) if heat is not None else None,
            keypoints=torch.from_numpy(padded_keypoints(kps, self.skeleton.num_joints)),
            tokens=tokens,
            text_stats=stats,
        )
        # plain dicts of tensors: what the DataLoader pins (it passes dataclasses through untouched)
        if self.views is not None:
            return {"step": step, "ids": ids, "batch": _shallow(self.views.make(host, self.epoch, step))}
        return {"step": step, "ids": ids, "host": _shallow(host)}


class StreamLoader:
    """This rank's batches from the stream, in step order, prepared on the device like the cache's."""

    def __init__(
        self,
        source: StreamSource,
        views: BatchViews,
        opts: StreamOptions,
        *,
        skeleton: Skeleton,
        tokenizer,
        context_length: int,
    ):
        self.source, self.views, self.opts, self.skeleton = source, views, opts, skeleton
        self.tokenizer, self.context_length = tokenizer, context_length
        sizes = tuple(len(u.rows) for u in source.units)
        self.order = StreamOrder(
            sizes, opts.batch_size, opts.world, max(1, opts.workers), opts.seed, opts.shuffle_rows
        )
        self.steps_per_epoch = self.order.steps_per_epoch
        if self.steps_per_epoch == 0:
            raise PipelineError(
                f"the split has {source.num_usable} usable images, fewer than one global batch "
                f"({opts.batch_size} x {opts.world} processes): lower --batch-size"
            )
        self._it: Iterator[dict] | None = None
        self._next: tuple[int, int] | None = None
        self.last_ids: list[str] = []

    def host_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, HostBatch, list[str]]]:
        """(step, host batch, image ids) from step `start` of `epoch` to its end, read by the workers."""
        for step, item, ids in self._items(epoch, start, views=None):
            yield step, _rebuilt(HostBatch, item["host"]), ids

    def _items(
        self, epoch: int, start: int, views: BatchViews | None
    ) -> Iterator[tuple[int, dict, list[str]]]:
        dataset = StreamDataset(self, epoch, start, views)
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.opts.workers,
            pin_memory=self.views.device.type == "cuda",
            prefetch_factor=4 if self.opts.workers else None,
        )
        expected = start
        for item in loader:
            if "error" in item:
                raise PipelineError(item["error"])
            if item["step"] != expected:  # the interleave is the order's contract; never train out of order
                raise PipelineError(f"stream delivered step {item['step']} where {expected} was due")
            expected += 1
            yield item["step"], item, item["ids"]

    def get(self, epoch: int, step: int) -> Batch:
        """Step `step` of `epoch`: on a CPU made by the workers, on a GPU made there from the host batch."""
        on_cpu = self.views.device.type == "cpu"
        if self._next != (epoch, step):  # a new epoch, or a resume: workers start at this step
            self._it = self._items(epoch, step, views=self.views if on_cpu else None)
        _, item, self.last_ids = next(self._it)
        self._next = (epoch, step + 1)
        if on_cpu:
            return _rebuilt(Batch, item["batch"])
        return self.views.make(_rebuilt(HostBatch, item["host"]), epoch, step)


def _shallow(batch: HostBatch | Batch) -> dict:
    """A batch as a dict of its tensors (and its text counters), without copying them."""
    out = {f.name: getattr(batch, f.name) for f in fields(batch)}
    out["text_stats"] = {f.name: getattr(batch.text_stats, f.name) for f in fields(BatchStats)}
    return out


def _rebuilt(kind: type[HostBatch] | type[Batch], item: dict) -> HostBatch | Batch:
    return kind(**{**item, "text_stats": BatchStats(**item["text_stats"])})


# ---- the data mode, and a training run's loader ----------------------------------------------------------
def choose_data_mode(requested: str, cache: NodeCache, *, rows: int, side: int, with_heatmaps: bool) -> str:
    """--data as a run uses it: cache or stream as asked; auto: the cache when it is built, or when its
    decoded pixels take at most CACHE_DISK_SHARE of its disk's free space; else the stream (logged)."""
    if requested != "auto":
        return requested
    if cache.ready():
        log.info("--data auto: cache (%s is built)", cache.path)
        return "cache"
    need, free = cache_bytes(rows, side, with_heatmaps=with_heatmaps), free_bytes(cache.path)
    fits = need <= CACHE_DISK_SHARE * free
    log.log(
        logging.INFO if fits else logging.WARNING,
        "--data auto: %s (the decoded cache of %d images at %d px takes %.2f GB; %s has %.2f GB free%s)",
        "cache" if fits else "stream: the cache would not fit its disk",
        rows,
        side,
        need / 1e9,
        cache.path.parent,
        free / 1e9,
        "" if fits else "; --cache-dir or FOCUS_CACHE can point it at a larger disk",
    )
    return "cache" if fits else "stream"


def split_rows(shards: list[Path]) -> int:
    """Rows of the split's local shards, from their footers."""
    return sum(pq.read_metadata(path).num_rows for path in shards)


def stream_loader(
    url: str,
    *,
    split: str,
    skeletons: dict[str, Skeleton],
    opts: StreamOptions,
    tokenizer,
    context_length: int,
    **views,
) -> StreamLoader:
    """A training run's stream: the split's shards at url, made into batches as BatchLoader's (views: the
    BatchViews options but the side, skeleton and stored heatmaps, which come from opts and the shards)."""
    source = StreamSource.open(url, split, with_heatmaps=opts.with_heatmaps)
    skeleton = source.skeleton(skeletons)
    batch_views = BatchViews(side=opts.side, skeleton=skeleton, stored_heatmaps=opts.with_heatmaps, **views)
    return StreamLoader(
        source, batch_views, opts, skeleton=skeleton, tokenizer=tokenizer, context_length=context_length
    )
