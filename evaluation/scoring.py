"""Scoring one model on one task: the loaded model, its class weights from the prompt templates, the
batched scorer and the per-task result (what `eval` and training's evaluations during a run share).

The model is loaded once; per task the class text embeddings are computed once, then images stream through
a DataLoader (workers decode, crop and preprocess; AMP on GPU). Every row a reader or loader drops is
counted by reason in `skipped`, so `n_samples` + the skipped counts is the whole split; a task whose files
are absent is reported as skipped with the paths it looked for, never a crash of the whole eval.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation import metrics, zeroshot
from evaluation.config import EvalConfig
from evaluation.data import EvalDataset, collate
from evaluation.data_check import dataset_hint
from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample
from evaluation.tasks import Task
from pipeline.artifacts.evals import TaskResult
from pipeline.log import progress

log = logging.getLogger(__name__)


@dataclass
class Model:
    """What every task needs from the loaded model, and how the results name it."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device
    name: str
    pretrained: str


def amp(device: torch.device):
    """fp16 autocast on GPU (inference only, so no loss scaling); plain fp32 on CPU."""
    return torch.autocast(device_type="cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


@torch.inference_mode()
def class_weights(m: Model, names: list[str], templates: tuple[str, ...], chunk: int = 256) -> torch.Tensor:
    """(C, D) unit class embeddings from every class x template prompt, encoded once per task."""
    prompts = zeroshot.class_prompts(names, templates)
    flat = [p for per_class in prompts for p in per_class]
    features = []
    for i in range(0, len(flat), chunk):
        tokens = m.tokenizer(flat[i : i + chunk]).to(m.device)
        with amp(m.device):
            features.append(m.model.encode_text(tokens).float())
    text = torch.cat(features).view(len(names), len(templates), -1)
    return zeroshot.class_embeddings(text)


@torch.inference_mode()
def score(
    m: Model, dataset: EvalDataset, weights: torch.Tensor, *, batch_size: int, workers: int, desc: str = ""
) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """-> (scores (N, C) float32, loaded mask (N,), load failures by reason) for every sample of dataset."""
    n = len(dataset)
    scores = np.zeros((n, weights.shape[0]), dtype=np.float32)
    loaded = np.zeros(n, dtype=bool)
    failures: Counter[str] = Counter()
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=m.device.type == "cuda",
        shuffle=False,
    )
    with progress(total=n, desc=desc, unit="img") as bar:
        for images, indices, failed in loader:
            for _, reason in failed:
                failures[reason] += 1
            if images is not None:
                with amp(m.device):
                    features = m.model.encode_image(images.to(m.device, non_blocking=True))
                scores[indices.numpy()] = zeroshot.logits(features, weights).cpu().numpy()
                loaded[indices.numpy()] = True
            bar.update(len(indices) + len(failed))
    return scores, loaded, failures


def dataset_roots(cfg: EvalConfig, tasks: list[Task]) -> dict[str, Path]:
    roots = {t.dataset: Path(cfg.data_root).expanduser() / (t.folder or t.dataset) for t in tasks}
    for name in ("fer2013",):  # FER+ can take its pixels from FER2013's CSV
        roots.setdefault(name, Path(cfg.data_root).expanduser() / name)
    roots.update({k: Path(v).expanduser() for k, v in cfg.paths.items()})
    return roots


def _fmt_float(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _inside(path: str, folders: list[str]) -> bool:
    """Lexically inside one of the folders: '..' and absolute names from a label file cannot leave them, while
    links the user put in a dataset folder (a symlinked image folder) still work."""
    p = os.path.normpath(os.path.abspath(path))
    return any(p == f or p.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _blank_result(task: Task, m: Model, cfg: EvalConfig, split: str, root: Path) -> TaskResult:
    return {
        "task": task.id,
        "dataset": task.dataset,
        "model": m.name,
        "pretrained": m.pretrained,
        "metrics": {f"acc@{task.k}": None, "acc1": None, "acc5": None, "mean_per_class_recall": None},
        "n_samples": 0,
        "skipped": {},
        "status": "ok",
        "group": task.group,
        "title": task.name,
        "k": task.k,
        "split": split,
        "templates": cfg.templates,
        "data_path": str(root),
    }


def _read(task: Task, cfg: EvalConfig, roots: dict[str, Path], result: TaskResult) -> ReadResult | TaskResult:
    """The reader's samples, or the task's result when its data is absent or unreadable."""
    root = roots[task.dataset]
    try:
        if not root.exists():
            raise DataAbsent(f"dataset folder {root} does not exist", [root])
        return task.read(
            ReaderInput(root=root, split=result["split"], options=cfg.options_for(task), paths=roots)
        )
    except DataAbsent as err:
        hint = dataset_hint(task)
        log.warning("%s: skipped, %s (looked for %s); %s", task.id, err, ", ".join(err.looked_for), hint)
        return result | {"status": "skipped", "message": str(err), "looked_for": err.looked_for, "hint": hint}
    except Exception as err:  # one task's bad files must not end the other tasks' evaluation
        log.error(
            "%s: cannot read the annotations: %s", task.id, err, exc_info=log.isEnabledFor(logging.DEBUG)
        )
        return result | {
            "status": "error",
            "message": f"cannot read the annotations: {type(err).__name__}: {err}",
        }


def _labelled(
    read: ReadResult, task: Task, classes: Sequence[str], roots: dict[str, Path], skipped: Counter[str]
) -> tuple[list[Sample], list[int], Counter[str]]:
    """Samples inside the dataset folders whose label is one of the classes, their class indices, and the
    labels that were not (counted in `skipped` with the other drops)."""
    index = {c: i for i, c in enumerate(classes)}
    folders = [os.path.normpath(os.path.abspath(r)) for r in roots.values()]
    samples, labels, unknown = [], [], Counter()
    for sample in read.samples:
        if isinstance(sample.source, str) and not _inside(sample.source, folders):
            skipped["path outside the dataset folders"] += 1
            continue
        label = sample.labels.get(task.label)
        if label is None or label not in index:
            unknown[str(label)] += 1
            continue
        samples.append(sample)
        labels.append(index[label])
    if unknown:
        skipped["unknown label"] += sum(unknown.values())
    return samples, labels, unknown


def evaluate_task(
    task: Task, m: Model, cfg: EvalConfig, roots: dict[str, Path], cache_dir: Path
) -> TaskResult:
    result = _blank_result(task, m, cfg, cfg.split_for(task), roots[task.dataset])
    started = time.perf_counter()
    read = _read(task, cfg, roots, result)
    if isinstance(read, dict):
        return read
    result["split"] = read.split or result["split"]
    if read.notes:
        result["notes"] = read.notes
    classes = task.classes or read.classes
    if not classes:
        return result | {"status": "error", "message": "neither the task nor the dataset lists the classes"}
    skipped: Counter[str] = Counter(read.skipped)
    samples, labels, unknown = _labelled(read, task, classes, roots, skipped)
    if unknown:
        result["unknown_labels"] = dict(unknown.most_common(10))  # what to add to the classes, if anything
    result["n_classes"], result["n_available"] = len(classes), len(samples)
    if cfg.limit is not None and len(samples) > cfg.limit:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(samples), cfg.limit, replace=False))
        samples, labels = [samples[i] for i in keep], [labels[i] for i in keep]
        result["limit"] = cfg.limit
    if not samples:
        return result | {
            "status": "empty",
            "skipped": dict(skipped),
            "message": "no sample left to score (see skipped)",
        }
    try:
        weights = class_weights(
            m, [task.prompt_name(c) for c in classes], task.select_templates(cfg.templates)
        )
        dataset = EvalDataset(samples, m.preprocess, cache_dir / task.dataset)
        scores, loaded, failures = score(
            m, dataset, weights, batch_size=cfg.batch_size, workers=cfg.workers, desc=task.id
        )
    except (RuntimeError, OSError) as err:  # e.g. out of GPU memory: report this task, go on with the next
        log.error("%s: scoring failed: %s", task.id, err)
        return result | {"status": "error", "skipped": dict(skipped), "message": f"scoring failed: {err}"}
    skipped.update(failures)
    y, s = np.asarray(labels)[loaded], scores[loaded]
    seconds = time.perf_counter() - started
    result.update(skipped=dict(skipped), n_samples=int(loaded.sum()), seconds=round(seconds, 3))
    if not loaded.any():
        return result | {"status": "empty", "message": "no sample could be loaded (see skipped)"}
    result["metrics"] = {k: _fmt_float(v) for k, v in metrics.summary(s, y, task.k).items()}
    result["random"] = {
        k: _fmt_float(v) for k, v in metrics.random_baseline(y, len(classes), task.k, cfg.seed).items()
    }
    acc = 100 * result["metrics"][f"acc@{task.k}"]
    log.info(
        "%s: acc@%d %.2f%% on %d samples (%s skipped)",
        task.id,
        task.k,
        acc,
        result["n_samples"],
        sum(skipped.values()),
    )
    return result
