"""The annotate stage: a folder of images -> annotations/<name>, keypoints from a pose model.

    focus-pipeline annotate --images photos/ --name photos                       # BlazePose, offline
    focus-pipeline annotate --images photos/ --name photos --model keypointrcnn --weights kprcnn.pth
    focus-pipeline annotate --images val2017/ --name val --ground-truth person_keypoints_val2017.json

    from pipeline.annotate.stage import AnnotateConfig, annotate
    summary = annotate(AnnotateConfig(images=Path("photos"), name="photos"), store)

Every image under --images (recursively; its name is its path below the folder) goes through the model; the
artifact is what convert writes (pipeline.records: one row per image, COCO-17 people with their box, mask
when the model gives one, detection score and per-joint scores), so describe, build-dataset, train and
analyze read it unchanged. Raw predictions go to predictions.jsonl in the artifact, one line per image keyed
by the model's identity and the file's sha256: a stopped run resumes where it stopped, a re-run of the same
name annotates only new or changed images, and other thresholds cost no model call. People under --min-score
are dropped, joints under --min-keypoint-score are unknown; images without people and unreadable images are
counted and listed in skipped.jsonl. --ground-truth measures the model against COCO-format keypoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.annotate.accuracy import GroundTruth, keypoint_accuracy
from pipeline.annotate.backends import PoseModel, load_model, model_identity
from pipeline.annotate.models import ModelInfo, ModelSettings, model_info
from pipeline.annotate.prediction import COCO17, Prediction, to_person
from pipeline.artifacts import annotations
from pipeline.errors import PipelineError
from pipeline.images import ImageError, ImageTooLarge, LinkOutside, find_image, load_rgb
from pipeline.log import progress
from pipeline.pool import ordered_map
from pipeline.records import SPLITS, ImageAnnotation, known
from pipeline.store import Recorded, Store, check_name, recorded, run_only

log = logging.getLogger(__name__)

# What PIL decodes and a camera, phone or scraper writes; other files under --images are not images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(slots=True)
class AnnotateConfig:
    images: Path
    name: str
    model: str = "blazepose"
    weights: Path | None = None  # a state dict file (keypointrcnn); None: the model's own weights
    min_score: float | None = None  # people under it are dropped; None: the model's default (MODELS)
    min_keypoint_score: float | None = None  # joints under it are unknown; None: the model's default
    split: str = "train"  # every image's split: a folder annotated for FocusCLIP is usually one to train on
    ground_truth: Path | None = None  # COCO-format keypoints of (some of) the images: measure the model
    input_size: int | None = None  # keypointrcnn: the shorter side it resizes to; None: the model's (800)
    max_people: int | None = None  # keypointrcnn: people per image at most; None: the model's (20)
    batch_size: int | None = None  # images per model call; None: the model's default
    workers: int | None = run_only(None)  # threads; None: the model's (2 for BlazePose, 0 for Keypoint R-CNN)
    device: str = run_only("auto")  # torch models: auto (CUDA when present), cpu, cuda, cuda:1
    overwrite: bool = run_only(False)

    def __post_init__(self) -> None:
        self.images = Path(self.images).expanduser()
        self.weights = None if self.weights is None else Path(self.weights).expanduser()
        self.ground_truth = None if self.ground_truth is None else Path(self.ground_truth).expanduser()
        check_name(self.name)
        info = model_info(self.model)
        self.min_score = info.min_score if self.min_score is None else float(self.min_score)
        if self.min_keypoint_score is None:
            self.min_keypoint_score = info.min_keypoint_score
        self.batch_size = info.batch_size if self.batch_size is None else self.batch_size
        self.workers = info.default_workers if self.workers is None else self.workers
        if self.split not in SPLITS:
            raise PipelineError(f"--split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.input_size is not None and self.input_size < 32:
            raise PipelineError(f"--input-size {self.input_size}: must be at least 32 pixels")
        settings = ModelSettings(self.model, self.weights, self.input_size, self.max_people).resolved()
        self.input_size, self.max_people = settings.input_size, settings.max_people
        if self.batch_size < 1:
            raise PipelineError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.workers < 0:
            raise PipelineError(f"--workers {self.workers}: must be 0 (in this thread) or more")
        if self.ground_truth is not None and not self.ground_truth.is_file():
            raise PipelineError(f"--ground-truth {self.ground_truth}: no such file")
        if info.torch:
            from pipeline.devices import torch_device  # torch only for a torch model

            torch_device(self.device)  # a name torch does not know, or a GPU that is not here: now, not later
        elif self.device not in ("auto", "cpu"):
            raise PipelineError(f"--device {self.device}: --model {self.model} runs on the CPU (MediaPipe)")

    @property
    def info(self) -> ModelInfo:
        return model_info(self.model)

    @property
    def settings(self) -> ModelSettings:
        return ModelSettings(self.model, self.weights, self.input_size, self.max_people)

    def recorded(self) -> Recorded:
        """The config as meta.json records it (paths resolved, defaults filled in)."""
        paths = {"images": self.images, "weights": self.weights, "ground_truth": self.ground_truth}
        return recorded(self).add({k: None if v is None else v.resolve() for k, v in paths.items()})


# ---- the journal of raw predictions ------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """One image's raw model output (a line of predictions.jsonl), or why it has none."""

    key: str  # sha256 of the model identity and the file's sha256: what determines the output
    image: str
    sha256: str
    width: int = 0
    height: int = 0
    people: list[Prediction] = field(default_factory=list)
    error: str | None = None  # "corrupt_image: ..." for a file that is not a readable image

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "image": self.image,
                "sha256": self.sha256,
                "width": self.width,
                "height": self.height,
                "people": [p.to_json() for p in self.people],
                "error": self.error,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> Record:
        d = json.loads(line)
        return cls(
            d["key"], d["image"], d["sha256"], d["width"], d["height"],
            [Prediction.from_json(p) for p in d["people"]], d["error"],
        )  # fmt: skip


def record_key(identity_hash: str, sha256: str) -> str:
    return hashlib.sha256(f"{identity_hash}:{sha256}".encode()).hexdigest()


def read_journal(path: Path) -> dict[str, Record]:
    """The journal's records by key; a line cut short by a crash (the last one) is skipped."""
    out: dict[str, Record] = {}
    if not path.is_file():
        return out
    for i, line in enumerate(path.read_text().splitlines()):
        try:
            rec = Record.from_json(line)
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s: line %d is not a whole record (a run stopped while writing it); ignored", path, i + 1
            )
            continue
        out[rec.key] = rec
    return out


# ---- listing and reading images ----------------------------------------------------------------------------


def list_images(root: Path) -> list[str]:
    """Image files under root, recursively, as sorted POSIX paths relative to it (hidden entries skipped)."""
    if not root.is_dir():
        raise PipelineError(f"--images {root}: not a folder")
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        names += [
            (rel / f).as_posix()
            for f in files
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not names:
        raise PipelineError(f"--images {root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or below")
    return sorted(names)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decode(data: bytes, name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the file's pixels as stored: no EXIF rotation, like build-dataset's rows.
    Read through pipeline.images: the pixel limit holds; a decode failure is an ImageError naming the file."""
    return np.array(load_rgb(data, name))  # a writable copy: torch.from_numpy warns on read-only ones


def read_image(root: Path, name: str, identity_hash: str) -> tuple[Record, np.ndarray | None]:
    """The image's record (keyed by its content) and pixels; no pixels, and the reason, when it has none.
    A link under --images that resolves outside it is refused, as in describe, build-dataset and analyze."""
    try:
        data = find_image(root, name).read_bytes()
    except LinkOutside as err:  # not journaled: the link may be replaced by the file itself
        return Record("", name, "", error=f"link_outside_images: {err}"), None
    except OSError as err:  # not journaled (no key): a file that cannot be read now is tried next run
        return Record("", name, "", error=f"unreadable_image: {err.strerror or err}"), None
    digest = hashlib.sha256(data).hexdigest()
    rec = Record(record_key(identity_hash, digest), name, digest)
    try:
        rgb = decode(data, name)
    except ImageTooLarge as err:
        rec.error = f"image_too_large: {err}"
        return rec, None
    except ImageError as err:
        rec.error = f"corrupt_image: {err}"
        return rec, None
    rec.height, rec.width = rgb.shape[:2]
    return rec, rgb


# ---- running the model (in the worker threads) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    identity_hash: str
    images: tuple[str, ...]  # names under --images


class Predictor:
    """A run's models, called by the worker threads on one batch at a time.

    Workers are threads, not forked processes: MediaPipe crashes building a graph in a process forked from
    one that had built one, and its graphs (like torch's kernels) compute without the GIL. A model whose
    instances serve one thread at a time (MediaPipe's graphs) gets one per thread; others are shared. They
    go when the run's Predictor does.
    """

    def __init__(self, cfg: AnnotateConfig, identity_hash: str):
        self.cfg, self.identity_hash = cfg, identity_hash
        self._local = threading.local()
        self._shared: PoseModel | None = None
        self._lock = threading.Lock()

    def model(self) -> PoseModel:
        def build() -> PoseModel:
            return load_model(self.cfg.settings, self.cfg.device)

        if self.cfg.info.one_per_thread:
            if not hasattr(self._local, "model"):
                self._local.model = build()
            return self._local.model
        with self._lock:
            if self._shared is None:
                self._shared = build()
            return self._shared

    def batches(self, todo: list[str]) -> Iterator[tuple[int, Batch]]:
        for start in range(0, len(todo), self.cfg.batch_size):
            names = todo[start : start + self.cfg.batch_size]
            yield len(names), Batch(self.identity_hash, tuple(names))

    def __call__(self, batch: Batch) -> tuple[list[Record], float]:
        """Read, hash and decode each image, then predict the decodable ones in one model call; (records,
        the seconds that call took: the model's own time, without loading it or decoding)."""
        read = [read_image(self.cfg.images, name, batch.identity_hash) for name in batch.images]
        pixels = [(rec, rgb) for rec, rgb in read if rgb is not None]
        seconds = 0.0
        if pixels:
            model = self.model()
            started = time.perf_counter()
            people = model.predict([rgb for _, rgb in pixels])
            seconds = time.perf_counter() - started
            for (rec, _), found in zip(pixels, people, strict=True):
                rec.people = found
        return [rec for rec, _ in read], seconds


def predict_missing(
    names: list[str], cfg: AnnotateConfig, identity_hash: str, journal_path: Path
) -> tuple[dict[str, Record], int, float]:
    """Every image's record: from the journal when its key is there, else from the model (appended to the
    journal batch by batch, so a stopped run keeps what it did). Returns (records by name, how many the
    model ran on, the seconds its predict calls took)."""
    done = read_journal(journal_path)
    by_name: dict[str, Record] = {}
    todo = names
    if done:  # only a resumed run needs every file's hash up front
        todo = []
        for name in progress(names, desc="hash", unit="img"):
            try:
                rec = done.get(record_key(identity_hash, file_digest(cfg.images / name)))
            except OSError:  # run_batch records why
                rec = None
            if rec is None:
                todo.append(name)
            else:
                by_name[name] = dataclasses.replace(rec, image=name)
    log.info("annotate: %d images, %d from the journal, %d to run through %s", len(names),
             len(by_name), len(todo), cfg.model)  # fmt: skip
    predictor, model_seconds = Predictor(cfg, identity_hash), 0.0
    results = ordered_map(
        predictor,
        predictor.batches(todo),
        workers=cfg.workers,
        executor="thread",
        window=max(2, 2 * cfg.workers),
    )
    with open(journal_path, "a") as journal, progress(total=len(todo), desc="annotate", unit="img") as bar:
        for size, (records, seconds) in results:
            model_seconds += seconds
            journal.write("".join(r.to_json() + "\n" for r in records if r.key))
            journal.flush()
            by_name.update((r.image, r) for r in records)
            bar.update(size)
    return by_name, len(todo), model_seconds


# ---- from predictions to the annotations table -------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    dropped: Counter = field(default_factory=Counter)  # reason -> images or people
    keypoints_under_threshold: int = 0
    skipped: list[dict] = field(default_factory=list)  # skipped.jsonl lines


def to_annotations(
    names: list[str], records: dict[str, Record], cfg: AnnotateConfig
) -> tuple[list[ImageAnnotation], Tally]:
    """Apply --min-score and --min-keypoint-score; images left without people and unreadable ones are
    counted and listed (people without a joint over the threshold are dropped, as convert drops them)."""
    tally, rows = Tally(), []
    for name in names:
        rec = records[name]
        if rec.error is not None:
            reason, _, detail = rec.error.partition(": ")
            tally.dropped[reason] += 1
            tally.skipped.append({"image": name, "reason": reason, "detail": detail})
            continue
        confident = [p for p in rec.people if p.score >= cfg.min_score]
        tally.dropped["person_under_min_score"] += len(rec.people) - len(confident)
        people = [to_person(p, cfg.min_keypoint_score) for p in confident]
        with_joints = [p for p in people if p.num_known > 0]
        tally.dropped["person_without_keypoints"] += len(people) - len(with_joints)
        tally.keypoints_under_threshold += sum(COCO17.num_joints - p.num_known for p in with_joints)
        if not with_joints:
            reason = "image_without_people" if not rec.people else "image_without_people_over_thresholds"
            tally.dropped[reason] += 1
            tally.skipped.append({"image": name, "reason": reason, "detail": f"{len(rec.people)} predicted"})
            continue
        rows.append(
            ImageAnnotation(
                image=name,
                split=cfg.split,
                people=with_joints,
                skeleton=COCO17,
                width=rec.width,
                height=rec.height,
            )
        )
    tally.dropped = Counter({k: v for k, v in tally.dropped.items() if v})
    return rows, tally


def _counts(names: list[str], rows: list[ImageAnnotation], records: dict[str, Record], tally: Tally) -> dict:
    kps = np.stack([p.keypoints for r in rows for p in r.people])
    return {
        "image_files": len(names),
        "images": len(rows),
        "people": len(kps),
        "keypoints": int(known(kps).sum()),
        "keypoints_under_min_keypoint_score": tally.keypoints_under_threshold,
        "predicted_people": sum(len(r.people) for r in records.values()),
        "people_per_image": dict(sorted(Counter(len(r.people) for r in rows).items())),
        "splits": dict(Counter(r.split for r in rows)),
        "dropped": dict(tally.dropped.most_common()),
    }


def annotate(cfg: AnnotateConfig, store: Store) -> dict[str, Any]:
    """Run the model over cfg.images into annotations/<cfg.name>; returns the counts written to meta.json."""
    names = list_images(cfg.images)
    identity = model_identity(cfg.settings)
    identity_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    truth = None if cfg.ground_truth is None else GroundTruth.read(cfg.ground_truth)
    with store.create(
        "annotations", cfg.name, stage="annotate", config=cfg.recorded(), overwrite=cfg.overwrite,
        resumable=True, seed_from_existing=not cfg.overwrite,
    ) as w:  # fmt: skip
        journal = w.dir / annotations.PREDICTIONS_FILE
        if cfg.overwrite:
            journal.unlink(missing_ok=True)
        started = time.perf_counter()
        records, ran, model_seconds = predict_missing(names, cfg, identity_hash, journal)
        seconds = time.perf_counter() - started
        rows, tally = to_annotations(names, records, cfg)
        accuracy = _accuracy(truth, records, cfg.min_score)
        skipped = w.dir / annotations.SKIPPED_FILE
        _write_skipped(skipped, tally)
        if not rows:
            raise PipelineError(
                f"--images {cfg.images}: no person found in its {len(names)} images ({dict(tally.dropped)}; "
                f"see {skipped}); the predictions are kept for a re-run with lower thresholds"
            )
        # the journal keeps this run's lines only (a resumed one may hold another model's or file's)
        tmp = journal.with_suffix(".tmp")
        tmp.write_text("".join(records[n].to_json() + "\n" for n in names if records[n].key))
        tmp.replace(journal)
        annotations.write(w.dir / annotations.FILE, rows)
        counts = _counts(names, rows, records, tally) | {
            "predicted_now": ran,
            "from_journal": len(names) - ran,
            "seconds": round(seconds, 3),  # reading, decoding, loading the model(s), predicting
            # the model's predict calls per image (summed over workers: the time one worker needs)
            "seconds_per_image": round(model_seconds / ran, 4) if ran else None,
        }
        if accuracy is not None:
            counts["accuracy"] = accuracy
        w.counts.update(counts)
        w.extra["model"] = identity
    log.info("annotations/%s: %d images, %d people, %d keypoints; dropped %s", cfg.name, counts["images"],
             counts["people"], counts["keypoints"], counts["dropped"] or "nothing")  # fmt: skip
    return counts


def _accuracy(
    truth: GroundTruth | None, records: dict[str, Record], min_score: float
) -> dict[str, Any] | None:
    if truth is None:
        return None
    predictions = {name: rec.people for name, rec in records.items() if rec.error is None}
    return keypoint_accuracy(truth, predictions, min_score=min_score)


def _write_skipped(path: Path, tally: Tally) -> None:
    path.write_text("".join(json.dumps(s) + "\n" for s in tally.skipped))
