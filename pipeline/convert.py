"""The convert stage: MPII annotations in any common form, or a COCO-format keypoints file (with its captions)
-> annotations/<name>/annotations.parquet.

    focus-pipeline convert mpii_human_pose_v1_u12_1.mat --name mpii
    focus-pipeline convert valid.h5 mpii_dataset.csv --name val  # people: h5, activity: CSV
    focus-pipeline convert test_mpii.json mpii_dataset.csv --join outer --name all
    focus-pipeline convert person_keypoints_val2017.json --captions captions_val2017.json --split val

    from pipeline.convert import ConvertConfig, convert
    summary = convert(ConvertConfig(sources=[Path("valid.h5")], name="val"), Store.from_env())

Each source's format is detected from its content (pipeline.sources.formats). Several MPII sources are joined
on the image name (pipeline.sources.merge): the first one named defines the images (or all of them with
join="outer"), later ones add what it lacks. A COCO-format file (pipeline.sources.coco_keypoints) is converted
on its own: it brings its own images, skeleton, boxes, masks and crowd regions; a COCO captions file joins it
on the image id. Kept and dropped images/people are counted with their reasons, logged, and stored in
meta.json `counts`; a bad input stops the stage with a one-line error before anything is written.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import annotations
from pipeline.errors import PipelineError
from pipeline.records import OCCLUDED, SPLITS, ImageAnnotation, known
from pipeline.sources.base import SourceData
from pipeline.sources.coco_captions import join_captions, read_captions
from pipeline.sources.formats import read_source, sniff_format
from pipeline.sources.merge import JOINS, merge_sources
from pipeline.store import Recorded, Store, check_name, file_sha256, recorded, run_only

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ConvertConfig:
    sources: list[Path]
    name: str = "mpii"
    overwrite: bool = run_only(False)
    join: str = "left"  # "left": the first source's images; "outer": every image of every source
    split: str | None = None  # split for sources that do not record one per image (all but the .mat)
    keep_people_without_keypoints: bool = False  # e.g. test-set rectangles, or COCO instances with a box only
    keep_images_without_people: bool = False
    keep_crowd: bool = False  # COCO iscrowd regions: no keypoints, a box and mask over several people
    captions: Path | None = None  # a COCO captions file, joined on the image id (COCO-format sources only)

    def __post_init__(self) -> None:
        self.sources = [Path(s) for s in self.sources]
        self.captions = None if self.captions is None else Path(self.captions)
        if not self.sources:
            raise PipelineError("convert needs at least one annotation file")
        if self.join not in JOINS:
            raise PipelineError(f"--join must be one of {', '.join(JOINS)}, not {self.join!r}")
        if self.split is not None and self.split not in SPLITS:
            raise PipelineError(f"--split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        seen = set()
        for s in self.sources:
            if s.resolve() in seen:
                raise PipelineError(f"{s}: given twice")
            seen.add(s.resolve())
        check_name(self.name)

    def recorded(self) -> Recorded:
        return recorded(self)


def _unique_people(ann: ImageAnnotation, dropped: Counter) -> list:
    """People of one image, without exact duplicates (the same person listed twice in a JSON or CSV)."""
    if len(ann.people) < 2:
        return list(ann.people)
    out, seen = [], set()
    for p in ann.people:
        key = (
            np.nan_to_num(p.keypoints, nan=-1.0).tobytes(),
            p.center,
            p.scale,
            p.source_box,
            p.segmentation,
        )
        if key in seen:
            dropped["duplicate_person"] += 1
            continue
        seen.add(key)
        out.append(p)
    return out


def select(images: list[ImageAnnotation], cfg: ConvertConfig) -> tuple[list[ImageAnnotation], Counter]:
    """Apply the keep/drop rules; returns the kept images (new records) and the drop counters by reason."""
    dropped: Counter = Counter()
    kept = []
    for ann in images:
        people = _unique_people(ann, dropped)
        if not cfg.keep_crowd:  # checked first: a crowd region never has keypoints
            single = [p for p in people if not p.crowd]
            if len(single) < len(people):
                dropped["crowd_region"] += len(people) - len(single)
            people = single
        if not cfg.keep_people_without_keypoints:
            # readers keep v > 0 finite; kept crowd regions stay (their ROI is their box or mask)
            with_kps = [p for p in people if p.crowd or (p.keypoints[:, 2] > 0).any()]
            if len(with_kps) < len(people):
                dropped["person_without_keypoints"] += len(people) - len(with_kps)
            people = with_kps
        if not people and not cfg.keep_images_without_people:
            dropped["image_without_people" if not ann.people else "image_without_people_with_keypoints"] += 1
            continue
        kept.append(dataclasses.replace(ann, people=people))
    return kept, dropped


def summarize(images: list[ImageAnnotation]) -> dict[str, Any]:
    kps = [p.keypoints for a in images for p in a.people]
    stacked = np.stack(kps) if kps else np.zeros((0, 16, 3), np.float32)
    counts = {
        "images": len(images),
        "people": len(kps),
        "keypoints": int(known(stacked).sum()),
        "images_with_activity": sum(a.activity is not None for a in images),
        "occluded_keypoints": int((stacked[..., 2] == OCCLUDED).sum()),
        "splits": dict(Counter(a.split for a in images).most_common()),
        "people_per_image": dict(sorted(Counter(len(a.people) for a in images).items())),
    }
    people = [p for a in images for p in a.people]
    if any(p.label is not None for p in people):  # COCO-format instances: what the ROI sources can use
        counts["skeletons"] = dict(Counter(a.skeleton.name for a in images).most_common())
        counts["labels"] = dict(Counter(p.label for p in people).most_common())
        counts["instances"] = {
            "with_keypoints": int((known(stacked).sum(axis=1) > 0).sum()),
            "with_box": sum(p.source_box is not None for p in people),
            "with_mask": sum(p.segmentation is not None for p in people),
            "crowd": sum(p.crowd for p in people),
        }
    return counts


def _source_summary(src: SourceData) -> dict[str, Any]:
    return {
        "file": str(src.path),
        "format": src.format,
        "images": len(src.images),
        "people": sum(len(a.people) for a in src.images.values()),
        "provides": [
            k
            for k, v in (
                ("people", src.has_people),
                ("activity", src.has_activity),
                ("occlusion", src.has_occlusion),
                ("split", src.split_per_image),
            )
            if v
        ],
        "read": dict(src.counts),
    }


def _by_prefix(counts: Counter, prefix: str) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith(prefix + ":")}


def _read_sources(cfg: ConvertConfig) -> list[SourceData]:
    formats = [sniff_format(path) for path in cfg.sources]  # every file checked before any is read
    if "coco" in formats and len(formats) > 1:
        raise PipelineError(
            f"{cfg.sources[formats.index('coco')]}: a COCO-format file brings its own images and skeleton "
            f"and is converted on its own; convert each file separately"
        )
    if cfg.captions is not None and formats != ["coco"]:
        raise PipelineError(
            f"--captions {cfg.captions}: captions join on COCO image ids; the source must be one "
            f"COCO-format keypoints file"
        )
    if cfg.split and "mat" in formats:
        log.warning(
            "--split %s does not apply to the .mat: its img_train gives each image's split", cfg.split
        )
    # The .mat's img_train is per image and always wins over --split.
    return [
        read_source(path, split=None if fmt == "mat" else cfg.split)
        for path, fmt in zip(cfg.sources, formats, strict=True)
    ]


def convert(cfg: ConvertConfig, store: Store) -> dict[str, Any]:
    """Read, join, filter and publish annotations/<cfg.name>; returns the counts written to meta.json."""
    store.check_replace("annotations", cfg.name, cfg.overwrite)
    started = time.perf_counter()
    sources = _read_sources(cfg)
    captions = read_captions(cfg.captions) if cfg.captions is not None else None
    merged, join_counts = merge_sources(sources, join=cfg.join)
    if captions is not None:
        merged, caption_join = join_captions(merged, sources[0].image_ids, captions[0])
        offered = sum(len(a.captions) for a in merged)
    images, dropped = select(merged, cfg)
    for src in sources:
        for what in ("image", "person", "point", "polygon"):
            for reason, n in _by_prefix(src.counts, f"dropped_{what}").items():
                dropped[f"{src.path.name}:{what}_{reason}"] += n
    counts = summarize(images)
    if captions is not None:
        counts["captions"] = {
            "file": str(cfg.captions),
            "images_with_captions": sum(bool(a.captions) for a in images),
            "captions": sum(len(a.captions) for a in images),
            "captions_of_dropped_images": offered - sum(len(a.captions) for a in images),
            **caption_join,
            "empty_captions_skipped": captions[1]["empty_caption"],
        }
    counts["conflicts"] = {k: join_counts.get(f"conflict:{k}", 0) for k in ("people", "activity", "split")}
    for file, n in _by_prefix(join_counts, "not_in_first_source").items():
        dropped[f"{file}:image_not_in_first_source"] += n  # left join; --join outer keeps them
    counts["dropped"] = dict(dropped.most_common())
    counts["joined"] = {
        k: v for k, v in join_counts.items() if not k.startswith(("conflict:", "not_in_first_source:"))
    }
    counts["sources"] = [_source_summary(s) for s in sources]
    if not images:
        raise PipelineError(
            f"no image left to write from {', '.join(str(s) for s in cfg.sources)} "
            f"(dropped: {dict(dropped) or 'none'}); see --keep-images-without-people"
        )

    with store.create(
        "annotations", cfg.name, stage="convert", config=cfg.recorded(), overwrite=cfg.overwrite
    ) as w:
        annotations.write(w.dir / annotations.FILE, images)
        w.counts.update(counts)
        files = [(s.path, s.format) for s in sources] + (
            [(cfg.captions, "coco-captions")] if captions else []
        )
        w.extra["source_files"] = [
            {"path": str(path), "format": fmt, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path, fmt in files
        ]
    counts["seconds"] = round(time.perf_counter() - started, 3)
    _log_summary(cfg, counts)
    return counts


def _log_summary(cfg: ConvertConfig, counts: dict[str, Any]) -> None:
    log.info(
        "annotations/%s: kept %d images, %d people, %d keypoints (%d occluded); %d images with activity; "
        "splits %s",
        cfg.name,
        counts["images"],
        counts["people"],
        counts["keypoints"],
        counts["occluded_keypoints"],
        counts["images_with_activity"],
        counts["splits"],
    )
    for reason, n in counts["dropped"].items():
        log.info("dropped %d: %s", n, reason)
    if any(counts["conflicts"].values()):
        log.warning("conflicts between sources (the earlier source won): %s", counts["conflicts"])
    for what, n in counts["joined"].items():
        log.info("joined %s: %d", what, n)
    log.info("converted in %.2f s", counts["seconds"])
