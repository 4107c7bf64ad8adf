"""build-dataset: annotations + descriptions + images -> a Hugging Face dataset (Parquet shards + card).

    focus-pipeline build-dataset --annotations mpii --descriptions mpii-gpt4o --images ~/mpii/images
    focus-pipeline build-dataset --annotations mpii --descriptions a --descriptions b --images DIR \
        --max-side 512 --name mpii-pose-descriptions --push-to-hub me/mpii-pose-descriptions

    from pipeline.build_dataset import BuildConfig, build_dataset
    cfg = BuildConfig(annotations="mpii", descriptions=["mpii-gpt4o"], images=Path(DIR))
    summary = build_dataset(cfg, store)

Writes datasets/<name>/: data/<split>-NNNNN-of-NNNNN.parquet (features in `FEATURES`), README.md (the dataset
card, YAML header with configs/splits/features so `datasets.load_dataset(path)` needs no loading script),
skipped.jsonl (every dropped image or description row with its reason) and meta.json (counts, statistics).

One row per annotated image that has at least one usable description and a decodable image file
(pipeline.build_images: a file inside --images, links included only when they stay inside it, within
--max-image-pixels, and of the size the annotations record or that picture resized, whose annotations then
follow it). An instance whose box or mask lies far off its image is left out of its row
(pipeline.coco.bounds).
`description` is the first usable description (descriptions artifacts in the order given, then source, then
sample); `descriptions` holds all of them as {source, model, text}. Images are stored as their original bytes
unless --max-side shrinks them; keypoints, centers, scales and boxes are then rescaled to the stored pixels.

The heatmap's region of interest (--roi) comes from the keypoints (the paper's blob), the instance box (the
same blob rule on the source's bbox) or the instance mask (the COCO segmentation); an instance without a mask
falls back to its box, one without a box to its keypoints (ROI_FALLBACK), and the card counts each source.

Memory stays flat: rows stream through a bounded window of in-flight image jobs into one ParquetWriter per
split, flushed every row group and rolled over at a size bound; nothing holds more than a row group of images.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from pipeline import hub
from pipeline.artifacts.annotations import FILE as ANNOTATIONS_FILE
from pipeline.artifacts.annotations import read_file as read_annotations
from pipeline.artifacts.descriptions import FILE as DESCRIPTIONS_FILE
from pipeline.artifacts.descriptions import STATUSES
from pipeline.artifacts.descriptions import read_file as read_descriptions
from pipeline.build_images import ImageJob, ImageOptions, ImageResult, run_job
from pipeline.coco.bounds import Problem
from pipeline.dataset_card import (
    SCHEMA,
    CardInputs,
    SplitInfo,
    TextStats,
    render_card,
    token_counter,
)
from pipeline.errors import PipelineError
from pipeline.images import ImageError, LinkOutside, find_image, max_pixels
from pipeline.log import progress
from pipeline.records import ImageAnnotation, Person
from pipeline.skeletons import MPII, Skeleton

log = logging.getLogger(__name__)

ROI_SOURCES = ("keypoints", "box", "mask")
# What an instance's region comes from when it lacks the chosen source: a mask's outline is best approximated
# by the box around it, a box by the box of the keypoints (which the keypoint blob is).
ROI_FALLBACK = {
    "mask": ("mask", "box", "keypoints"),
    "box": ("box", "keypoints"),
    "keypoints": ("keypoints",),
}
DESCRIPTION_COLUMNS = [
    "image", "source", "sample", "description", "status", "model", "template", "template_hash",
    "prompt_tokens", "completion_tokens", "cost_usd",
]  # fmt: skip


@dataclass(slots=True)
class BuildConfig:
    annotations: str
    descriptions: list[str]
    images: Path
    name: str | None = None  # default: the first descriptions artifact's name
    max_side: int | None = None  # shrink images whose longer side exceeds this (pixels); None keeps the bytes
    jpeg_quality: int = 95  # for re-encoded (resized) JPEGs
    max_shard_bytes: int = 500 * 2**20  # roll to a new shard past this many bytes of row payload
    max_shard_rows: int | None = None
    row_group_rows: int = 100  # what datasets itself writes for image data; keeps the Hub viewer fast
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    executor: Literal["process", "thread"] = "process"
    include_status: tuple[str, ...] = ("ok",)
    roi: Literal["keypoints", "box", "mask"] = "keypoints"  # where the heatmap's region comes from
    heatmap_parts: bool = False  # the body-part variant of the ROI heatmap (keypoints only)
    heatmap_png_level: int = 1  # zlib level of the heatmap PNGs: 1 is fast, and small enough
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False
    # where the images and annotations come from; decides the card's licence: "mpii" (MPII's terms),
    # "synthetic" (the embedded sample focus-pipeline generates, under the project's own licence) or "coco"
    # (a COCO-format source: COCO, CrowdPose, AP-10K, ... under their own terms); None: "mpii" when every
    # image has the MPII skeleton, else "coco"
    origin: Literal["mpii", "synthetic", "coco"] | None = None

    def __post_init__(self) -> None:
        self.images = Path(self.images).expanduser()
        self.descriptions = list(self.descriptions)
        self.include_status = tuple(self.include_status)
        if not self.descriptions:
            raise PipelineError("build-dataset needs at least one --descriptions artifact")
        bad = sorted(set(self.include_status) - set(STATUSES))
        if bad:
            raise PipelineError(
                f"--include-status {', '.join(bad)}: not a description status (one of {', '.join(STATUSES)})"
            )
        if self.max_side is not None and self.max_side < 8:
            raise PipelineError(f"--max-side {self.max_side}: must be at least 8 pixels")
        if self.max_shard_rows is not None and self.max_shard_rows < 1:
            raise PipelineError(f"--max-shard-rows {self.max_shard_rows}: must be at least 1")
        if self.max_shard_bytes < 1:
            raise PipelineError("--shard-size must be positive")
        if self.workers < 0:
            raise PipelineError(f"--workers {self.workers}: must be 0 (in-process) or more")
        if self.origin not in ("mpii", "synthetic", "coco", None):
            raise PipelineError(f"--origin {self.origin!r}: one of mpii, synthetic, coco")
        if self.roi not in ROI_SOURCES:
            raise PipelineError(f"--roi {self.roi!r}: one of {', '.join(ROI_SOURCES)}")
        if self.heatmap_parts and self.roi != "keypoints":
            raise PipelineError(
                f"--heatmap-parts draws body parts from keypoints; it does not go with --roi {self.roi}"
            )
        if self.executor not in ("process", "thread"):
            raise PipelineError(f"--executor {self.executor!r}: one of process, thread")

    @property
    def dataset_name(self) -> str:
        return self.name or self.descriptions[0]

    def to_meta(self) -> dict[str, Any]:
        """The config as meta.json records it (the images folder resolved, the name filled in, and the pixel
        limit the images were read under: --max-image-pixels)."""
        return {**asdict(self), "images": str(self.images.resolve()), "name": self.dataset_name,
                "max_image_pixels": max_pixels()}  # fmt: skip


# ---- descriptions ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Description:
    source: str
    model: str
    text: str


@dataclass(slots=True)
class SourceSummary:
    """What one description source cost and produced (from the descriptions rows themselves)."""

    artifact: str
    source: str
    models: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)  # "name (hash)" -> rows
    status: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "source": self.source,
            "models": dict(self.models),
            "templates": dict(self.templates),
            "status": dict(self.status),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(slots=True)
class DescriptionIndex:
    by_image: dict[str, list[Description]]
    rows: int
    fate: Counter  # "used" or "skipped:<reason>" -> rows
    sources: list[SourceSummary]


def index_descriptions(
    tables: list[tuple[str, pa.Table]],
    known_images: set[str],
    include_status: tuple[str, ...],
    on_skip: Callable[[dict], None],
) -> DescriptionIndex:
    """Group usable description rows by image; every other row gets a reason (pure, no I/O but `on_skip`).

    An image's descriptions come in the order of the tables, then source, then sample (a stable sort, so
    rows with the same key keep their file order). Each row ends up either used or skipped for exactly one
    reason: unknown_image (no such image in the annotations), status:<s> (a status outside include_status),
    empty_text, duplicate (its (image, source, sample) is already used: the first usable row wins, failed
    attempts before it are counted by their status) or duplicate_text (same text already used for the image).
    """
    by_image: dict[str, list[Description]] = {}
    taken: set[tuple[str, str, int]] = set()
    fate: Counter = Counter()
    sources: dict[tuple[str, str], SourceSummary] = {}
    rows = 0
    for artifact, table in tables:
        table = table.sort_by([("source", "ascending"), ("sample", "ascending")])
        cols = {c: table.column(c).to_pylist() for c in DESCRIPTION_COLUMNS}
        for i in range(table.num_rows):
            rows += 1
            image, source, sample = cols["image"][i], cols["source"][i], cols["sample"][i]
            status, text, model = cols["status"][i], cols["description"][i], cols["model"][i] or ""
            summary = sources.get((artifact, source))
            if summary is None:
                summary = sources[artifact, source] = SourceSummary(artifact, source)
            summary.models[model] += 1
            summary.templates[f"{cols['template'][i]} ({cols['template_hash'][i]})"] += 1
            summary.status[status] += 1
            summary.prompt_tokens += cols["prompt_tokens"][i] or 0
            summary.completion_tokens += cols["completion_tokens"][i] or 0
            summary.cost_usd += cols["cost_usd"][i] or 0.0
            if image not in known_images:
                reason = "unknown_image"
            elif status not in include_status:
                reason = f"status:{status}"
            elif text is None or not text.strip():
                reason = "empty_text"
            elif (image, source, sample) in taken:
                reason = "duplicate"
            elif any(d.text.strip() == text.strip() for d in by_image.get(image, ())):
                reason = "duplicate_text"
            else:
                taken.add((image, source, sample))
                by_image.setdefault(image, []).append(Description(source, model, text.strip()))
                fate["used"] += 1
                continue
            fate[f"skipped:{reason}"] += 1
            on_skip(
                {
                    "kind": "description",
                    "reason": reason,
                    "image": image,
                    "artifact": artifact,
                    "source": source,
                    "sample": sample,
                    "status": status,
                }
            )
    return DescriptionIndex(by_image, rows, fate, [s for s in sources.values()])


# ---- the worker pool (the per-image work is pipeline.build_images) ---------------------------------------


def single_threaded_blas() -> None:
    """One BLAS thread per worker: the heatmap's small matmul is ~30x slower when OpenBLAS spreads it over
    threads on a busy 2-core machine (35 ms vs 1.2 ms per 640x480 map); the pool is the parallelism."""
    threadpool_limits(limits=1, user_api="blas")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(parent: int) -> None:
    """Pool worker setup: die with the parent, one BLAS thread.

    A process pool's workers outlive a parent killed with -9 (each holds ~500 MB: torch, the tokenizer),
    blocked forever on their task queue. Linux sends PDEATHSIG to a child when the thread that forked it
    exits, which for a pool forked from this (main) thread means the process. The getppid check covers a
    parent that died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    single_threaded_blas()


def ordered_map(
    fn: Callable[[Any], Any], items: Iterable[tuple[Any, Any]], *, workers: int, executor: str, window: int
) -> Iterator[tuple[Any, Any]]:
    """Yield (ctx, fn(arg)) for (ctx, arg) in items, in order, with at most `window` calls in flight.

    The window is what keeps memory flat: results wait in the deque only until everything before them is
    written, and no more than `window` of them exist at once.
    """
    if workers <= 0:
        for ctx, arg in items:
            yield ctx, fn(arg)
        return
    pool: Executor
    if executor == "process":
        # fork: workers inherit the imported modules and the loaded tokenizer instead of re-importing torch.
        fork = mp.get_context("fork")
        pool = ProcessPoolExecutor(
            workers, mp_context=fork, initializer=_init_worker, initargs=(os.getpid(),)
        )
    else:
        pool = ThreadPoolExecutor(workers)
    with pool:
        pending: deque = deque()
        for ctx, arg in items:
            pending.append((ctx, pool.submit(fn, arg)))
            if len(pending) >= window:
                ctx0, fut = pending.popleft()
                yield ctx0, fut.result()
        while pending:
            ctx0, fut = pending.popleft()
            yield ctx0, fut.result()


# ---- writing -----------------------------------------------------------------------------------------------


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


def roi_choice(people: list[Person], roi: str) -> list[str | None]:
    """Per instance, where its part of the heatmap comes from under --roi: the first of ROI_FALLBACK[roi] it
    has (keypoints: any known joint), None when it has none (a crowd region under --roi keypoints)."""
    out = []
    for p in people:
        has = {
            "mask": p.segmentation is not None,
            "box": p.source_box is not None,
            "keypoints": p.num_known > 0,
        }
        out.append(next((s for s in ROI_FALLBACK[roi] if has[s]), None))
    return out


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


# ---- the stage ---------------------------------------------------------------------------------------------

SPLIT_ORDER = {"train": 0, "val": 1, "validation": 1, "test": 2}


@dataclass(slots=True)
class _Tally:
    """What build-dataset counts while it writes: skipped images (each also a line of skipped.jsonl, like
    every skipped description row) and the kept images' text, people and activity statistics."""

    skipped_file: IO[str]
    skipped_images: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> up to 3 image names
    primary: TextStats = field(default_factory=TextStats)
    by_source: dict[str, TextStats] = field(default_factory=dict)
    people: Counter = field(default_factory=Counter)
    activities: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # instances by category name (COCO-format sources)
    roi: Counter = field(default_factory=Counter)  # instances by the source of their region ("none": nothing)
    skipped_instances: Counter = field(default_factory=Counter)  # of kept images, by bounds.Problem reason
    rescaled: int = 0  # kept images whose file is the recorded picture at another size
    skeletons: dict[str, Skeleton] = field(default_factory=dict)  # of the kept images, by name

    def skip(self, record: dict) -> None:
        self.skipped_file.write(json.dumps(record) + "\n")

    def skip_image(self, ann: ImageAnnotation, reason: str, detail: str = "") -> None:
        self.skipped_images[reason] += 1
        names = self.examples.setdefault(reason, [])
        if len(names) < 3:
            names.append(ann.image)
        self.skip(
            {"kind": "image", "reason": reason, "image": ann.image, "split": ann.split, "detail": detail}
        )

    def skip_instances(
        self, ann: ImageAnnotation, sources: list[str | None], dropped: dict[int, Problem]
    ) -> tuple[ImageAnnotation, list[str | None]]:
        """The image without the instances its worker dropped (each counted and listed), and their sources."""
        for i, problem in dropped.items():
            self.skipped_instances[problem.reason] += 1
            self.skip({"kind": "instance", "reason": problem.reason, "image": ann.image, "instance": i,
                       "split": ann.split, "detail": problem.detail})  # fmt: skip
        keep = [i for i in range(len(ann.people)) if i not in dropped]
        return replace(ann, people=[ann.people[i] for i in keep]), [sources[i] for i in keep]

    def add(
        self, ann: ImageAnnotation, descs: list[Description], res: ImageResult, sources: list[str | None]
    ) -> None:
        self.primary.add(res.words[0], res.tokens[0])
        for d, nw, nt in zip(descs, res.words, res.tokens, strict=True):
            self.by_source.setdefault(d.source, TextStats()).add(nw, nt)
        self.people[len(ann.people)] += 1
        self.activities[ann.activity or "(none)"] += 1
        self.categories[ann.category or "(none)"] += 1
        self.labels.update(p.label for p in ann.people if p.label is not None)
        self.roi.update(s or "none" for s in sources)
        self.skeletons.setdefault(ann.skeleton.name, ann.skeleton)

    def statistics(self, kept: int) -> dict[str, Any]:
        return {
            "description": self.primary.summary(),
            "descriptions_by_source": {s: t.summary() for s, t in sorted(self.by_source.items())},
            "people_per_image": {str(k): v for k, v in sorted(self.people.items())},
            "people_mean": round(sum(k * v for k, v in self.people.items()) / kept, 3),
            "distinct_activities": len(self.activities),
            "categories": dict(self.categories.most_common()),
            "top_activities": dict(self.activities.most_common(20)),
            "activities": dict(self.activities.most_common()),
            "labels": dict(self.labels.most_common()),
        }


def _jobs(
    annotations: list[ImageAnnotation], index: DescriptionIndex, cfg: BuildConfig, tally: _Tally
) -> Iterator[tuple[tuple[ImageAnnotation, list[Description], list], tuple[ImageJob, ImageOptions]]]:
    """One job per annotated image with descriptions and a file inside --images (others skipped)."""
    opts = ImageOptions(cfg.max_side, cfg.jpeg_quality, cfg.heatmap_parts, cfg.heatmap_png_level)
    seen: set[str] = set()
    for ann in annotations:
        if ann.image in seen:
            tally.skip_image(ann, "duplicate_annotation")
            continue
        seen.add(ann.image)
        descs = index.by_image.get(ann.image)
        if not descs:
            tally.skip_image(ann, "no_description")
            continue
        try:
            path = find_image(cfg.images, ann.image)
        except LinkOutside as err:
            tally.skip_image(ann, "link_outside_images", str(err))
            continue
        except ImageError:
            tally.skip_image(ann, "path_outside_images", f"{ann.image!r} is not a name inside --images")
            continue
        sources = roi_choice(ann.people, cfg.roi)
        recorded = (ann.width, ann.height) if ann.width and ann.height else None
        job = ImageJob(str(path), ann.people, sources, [d.text for d in descs], ann.skeleton, recorded)
        yield (ann, descs, sources), (job, opts)


def _write_shards(
    annotations: list[ImageAnnotation],
    index: DescriptionIndex,
    cfg: BuildConfig,
    tally: _Tally,
    data_dir: Path,
) -> dict[str, SplitWriter]:
    """Render every image in the worker pool and write its row to its split's shards, in annotation order."""
    data_dir.mkdir()
    writers: dict[str, SplitWriter] = {}
    token_counter()  # load the tokenizer once, before the pool forks
    single_threaded_blas()  # this process renders too (workers=0, thread pool)
    jobs = _jobs(annotations, index, cfg, tally)
    results = ordered_map(
        run_job, jobs, workers=cfg.workers, executor=cfg.executor, window=max(4, 4 * cfg.workers)
    )
    for (ann, descs, sources), res in progress(
        results, total=len(index.by_image), desc="build-dataset", unit="img"
    ):
        if res.reason is not None:
            tally.skip_image(ann, res.reason, res.detail)
            index.fate["used"] -= len(descs)
            index.fate["skipped:image_skipped"] += len(descs)
            continue
        ann, sources = tally.skip_instances(ann, sources, res.dropped)
        tally.rescaled += res.rescaled
        writer = writers.get(ann.split)
        if writer is None:
            writer = writers[ann.split] = SplitWriter(
                data_dir, ann.split, max_bytes=cfg.max_shard_bytes, max_rows=cfg.max_shard_rows,
                group_rows=cfg.row_group_rows,
            )  # fmt: skip
        row = dataset_row(ann, descs, res, sources)
        writer.add(row, len(res.image) + len(res.heatmap) + sum(len(d.text) for d in descs))
        tally.add(ann, descs, res, sources)
    return writers


def _finish_splits(writers: dict[str, SplitWriter]) -> list[SplitInfo]:
    splits = []
    for split in sorted(writers, key=lambda s: (SPLIT_ORDER.get(s, 9), s)):
        files = writers[split].finish()
        size = sum(f.stat().st_size for f in files)
        wr = writers[split]
        splits.append(SplitInfo(split, wr.rows, wr.num_bytes, [f"data/{f.name}" for f in files], size))
    return splits


def _counts(
    annotations: list[ImageAnnotation],
    index: DescriptionIndex,
    splits: list[SplitInfo],
    tally: _Tally,
    roi: str,
) -> dict[str, Any]:
    fate = index.fate
    return {
        # every kept instance by the source its region came from (a fallback when not `roi`; none: nothing)
        "roi": {"source": roi, "instances": {s: tally.roi[s] for s in (*ROI_FALLBACK[roi], "none")}},
        "annotated_images": len(annotations),
        "images": sum(s.rows for s in splits),
        "splits": {s.name: s.rows for s in splits},
        "skipped_images": dict(tally.skipped_images),
        # instances of kept images left out: a box or mask far off the image (pipeline.coco.bounds)
        "skipped_instances": dict(tally.skipped_instances),
        # kept images whose file is the recorded picture at another size: their annotations were rescaled
        "rescaled_images": tally.rescaled,
        "description_rows": index.rows,
        "descriptions_used": fate["used"],
        "skipped_descriptions": {
            k.removeprefix("skipped:"): v for k, v in sorted(fate.items()) if k.startswith("skipped:") and v
        },
        "shards": sum(len(s.files) for s in splits),
    }


def build_dataset(cfg: BuildConfig, store) -> dict[str, Any]:
    """Build datasets/<name> from annotations, descriptions and images; returns a summary like meta.json."""
    name = cfg.dataset_name
    store.check_replace("datasets", name, cfg.overwrite)
    token = hub.hub_token(cfg.push_to_hub, flag="--push-to-hub") if cfg.push_to_hub else None
    if not cfg.images.is_dir():
        raise PipelineError(f"--images {cfg.images}: not a folder")
    annotations = read_annotations(store.path("annotations", cfg.annotations) / ANNOTATIONS_FILE)
    if cfg.origin is None:
        mpii_only = all(a.skeleton.name == MPII.name for a in annotations)
        cfg = replace(cfg, origin="mpii" if mpii_only else "coco")
    config = cfg.to_meta()
    tables = [
        (d, read_descriptions(store.path("descriptions", d) / DESCRIPTIONS_FILE, DESCRIPTION_COLUMNS))
        for d in cfg.descriptions
    ]
    describe_meta = {d: store.meta("descriptions", d) for d in cfg.descriptions}
    inputs = [store.ref("annotations", cfg.annotations)] + [
        store.ref("descriptions", d) for d in cfg.descriptions
    ]

    with (
        store.create(
            "datasets", name, stage="build-dataset", config=config, inputs=inputs, overwrite=cfg.overwrite
        ) as w,
        open(w.dir / "skipped.jsonl", "w") as skipped_file,
    ):
        tally = _Tally(skipped_file)
        index = index_descriptions(tables, {a.image for a in annotations}, cfg.include_status, tally.skip)
        writers = _write_shards(annotations, index, cfg, tally, w.dir / "data")
        kept = sum(wr.rows for wr in writers.values())
        for reason, n in sorted(tally.skipped_images.items()):
            log.warning("skipped %d image(s): %s (e.g. %s)", n, reason, ", ".join(tally.examples[reason]))
        if kept == 0:
            raise PipelineError(
                f"no image has both a usable description and a readable image file under {cfg.images} "
                f"(skipped: {dict(tally.skipped_images) or 'none'}; description rows: {dict(index.fate)}); "
                f"nothing was written"
            )
        splits = _finish_splits(writers)
        statistics, counts = tally.statistics(kept), _counts(annotations, index, splits, tally, cfg.roi)
        sources = [s.as_dict() for s in index.sources]
        skeletons = [s.to_dict() for s in tally.skeletons.values()]
        w.counts.update(counts)
        # the rows name their skeleton; its definition (a custom one's joints and parts) travels here
        w.extra["statistics"], w.extra["sources"], w.extra["skeletons"] = statistics, sources, skeletons
        card = CardInputs(
            name=name, splits=splits, statistics=statistics, sources=sources, describe_meta=describe_meta,
            annotations=cfg.annotations, counts=counts, config=config, origin=cfg.origin, skeletons=skeletons,
        )  # fmt: skip
        (w.dir / "README.md").write_text(render_card(card))

    path = store.path("datasets", name)
    skipped = dict(tally.skipped_images) or "none"
    log.info("datasets/%s: %d images (%s), skipped %s", name, kept, counts["splits"], skipped)
    summary = {"name": name, "path": str(path), **counts, "statistics": statistics}
    if cfg.push_to_hub:
        summary["hub_url"] = push_to_hub(path, cfg.push_to_hub, token=token, private=cfg.private)
    return summary


# ---- publishing --------------------------------------------------------------------------------------------


def push_to_hub(path: Path, repo_id: str, *, token: str, private: bool = False) -> str:
    """Upload README.md and data/ of a built dataset to a Hub dataset repo; returns its URL. Shards the repo
    holds from an earlier push that are not part of this build are deleted in the same commit."""
    hint = (
        f"`hf upload {repo_id} {path} . --repo-type dataset --exclude meta.json --exclude skipped.jsonl "
        f"--delete 'data/*.parquet'`"
    )
    return hub.upload(
        path,
        repo_id,
        kind="dataset",
        token=token,
        files=["README.md", "data/*.parquet"],
        replace=["data/*.parquet"],
        resume_hint=hint,
        private=private,
    )
