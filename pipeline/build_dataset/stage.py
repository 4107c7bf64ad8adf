"""build-dataset: annotations + descriptions + images -> a Hugging Face dataset (Parquet shards + card).

    focus-pipeline build-dataset --annotations mpii --descriptions mpii-gpt4o --images ~/mpii/images
    focus-pipeline build-dataset --annotations mpii --descriptions a --descriptions b --images DIR \
        --max-side 512 --name mpii-pose-descriptions --push-to-hub me/mpii-pose-descriptions

    from pipeline.build_dataset import BuildConfig, build_dataset
    cfg = BuildConfig(annotations="mpii", descriptions=["mpii-gpt4o"], images=Path(DIR))
    summary = build_dataset(cfg, store)

Writes datasets/<name>/ (pipeline.artifacts.datasets): data/<split>-NNNNN-of-NNNNN.parquet, README.md (the
dataset card, YAML header with configs/splits/features so `datasets.load_dataset(path)` needs no loading
script), skipped.jsonl (every dropped image or description row with its reason) and meta.json (counts,
statistics).

One row per annotated image that has at least one usable description and a decodable image file
(pipeline.build_dataset.images: a file inside --images, links included only when they stay inside it, within
--max-image-pixels, and of the size the annotations record or that picture resized, whose annotations then
follow it). An instance whose box or mask lies far off its image is left out of its row
(pipeline.bounds).
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

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from pipeline import hub
from pipeline.artifacts import datasets, descriptions
from pipeline.artifacts.annotations import read as read_annotations
from pipeline.artifacts.datasets import SplitWriter
from pipeline.artifacts.descriptions import DescribeMeta
from pipeline.bounds import Problem
from pipeline.build_dataset.card import CardInputs, SplitInfo, TextStats, render_card, token_counter
from pipeline.build_dataset.config import ROI_FALLBACK, BuildConfig
from pipeline.build_dataset.images import ImageJob, ImageOptions, ImageResult, roi_choice, run_job
from pipeline.build_dataset.index import Description, DescriptionIndex, index_descriptions
from pipeline.build_dataset.shards import dataset_row
from pipeline.errors import PipelineError
from pipeline.images import ImageError, LinkOutside, find_image
from pipeline.log import progress
from pipeline.pool import ordered_map, single_threaded_blas
from pipeline.records import ImageAnnotation
from pipeline.skeletons import MPII, Skeleton

log = logging.getLogger(__name__)

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
    opts = ImageOptions(
        cfg.max_side, cfg.jpeg_quality, cfg.heatmap_parts, cfg.heatmap_png_level, cfg.heatmap_encoder
    )
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
        paths = [f"{datasets.DATA_DIR}/{f.name}" for f in files]
        splits.append(SplitInfo(split, wr.rows, wr.num_bytes, paths, size))
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
        # instances of kept images left out: a box or mask far off the image (pipeline.bounds)
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
    annotations = read_annotations(store, cfg.annotations)
    if cfg.origin is None:
        mpii_only = all(a.skeleton.name == MPII.name for a in annotations)
        cfg = replace(cfg, origin="mpii" if mpii_only else "coco")
    config = cfg.recorded()
    tables = [(d, descriptions.read(store, d, descriptions.PROVENANCE)) for d in cfg.descriptions]
    describe_meta = {d: DescribeMeta.read(store, d) for d in cfg.descriptions}
    inputs = [store.ref("annotations", cfg.annotations)] + [
        store.ref("descriptions", d) for d in cfg.descriptions
    ]

    with (
        store.create(
            "datasets", name, stage="build-dataset", config=config, inputs=inputs, overwrite=cfg.overwrite
        ) as w,
        open(w.dir / datasets.SKIPPED_FILE, "w") as skipped_file,
    ):
        tally = _Tally(skipped_file)
        index = index_descriptions(tables, {a.image for a in annotations}, cfg.include_status, tally.skip)
        writers = _write_shards(annotations, index, cfg, tally, w.dir / datasets.DATA_DIR)
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
            annotations=cfg.annotations, counts=counts, config=config.config, origin=cfg.origin,
            skeletons=skeletons,
        )  # fmt: skip
        (w.dir / datasets.CARD_FILE).write_text(render_card(card))

    path = store.path("datasets", name)
    skipped = dict(tally.skipped_images) or "none"
    log.info("datasets/%s: %d images (%s), skipped %s", name, kept, counts["splits"], skipped)
    summary = {"name": name, "path": str(path), **counts, "statistics": statistics}
    if cfg.push_to_hub:
        summary["hub_url"] = hub.push_dataset(path, cfg.push_to_hub, token=token, private=cfg.private)
    return summary
