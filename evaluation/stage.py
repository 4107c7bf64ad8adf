"""Zero-shot evaluation of one model on many tasks, written to the store as evals/<name>.

    focus-pipeline eval --run demo-focusclip --data-root ~/eval-data
    focus-pipeline eval --arch ViT-B-16 --checkpoint model.pt --tasks fer2013-emotion utkface-age \
        --path fer2013=~/data/fer2013_images --split test

    from evaluation.stage import EvalConfig, evaluate
    results = evaluate(EvalConfig(run="demo-focusclip", data_root="eval-data"), store)

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation import metrics, zeroshot
from evaluation.data import EvalDataset, collate
from evaluation.data_check import dataset_hint
from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample
from evaluation.tasks import GROUPS, PAPER_TASKS, TASKS, Task
from pipeline.artifacts import evals
from pipeline.artifacts.evals import TaskResult
from pipeline.artifacts.runs import RunMeta
from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.store import Recorded, Store, check_name, recorded, run_only

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """run: a runs/<name> artifact of the store; or arch (+ checkpoint, a state dict open_clip loads).
    tasks: registry ids or Task values (ad-hoc tasks built in code). data_root/<dataset>/ holds each dataset
    unless paths[dataset] says otherwise. split overrides every task's default split; splits[task id or
    dataset] overrides one (and wins over split). limit: score at most
    this many samples per task (a seeded random subset; the result records it)."""

    run: str | None = None
    arch: str | None = None
    checkpoint: str | None = None
    tasks: tuple[str | Task, ...] = PAPER_TASKS
    data_root: str = "eval-data"
    paths: dict[str, str] = field(default_factory=dict)
    split: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    utk_split_list: str | None = None
    templates: str = "paper"
    batch_size: int = 64
    workers: int = run_only(2)
    device: str = run_only("auto")
    name: str | None = None
    limit: int | None = None
    seed: int = 0
    overwrite: bool = run_only(False)
    # Publish even when no task scored a sample; otherwise that is an error and nothing is written.
    allow_empty: bool = run_only(False)

    def __post_init__(self) -> None:
        if self.templates not in ("paper", "ensemble"):
            raise PipelineError(f"--templates must be paper or ensemble, not {self.templates!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise PipelineError("--batch-size must be >= 1 and --workers >= 0")
        if self.utk_split_list and not Path(self.utk_split_list).expanduser().is_file():
            raise PipelineError(
                f"--utk-split-list {self.utk_split_list}: no such file (a list of image names)"
            )

    def resolved_tasks(self) -> list[Task]:
        out = []
        for task in self.tasks:
            if isinstance(task, Task):
                out.append(task)
            elif task in TASKS:
                out.append(TASKS[task])
            else:
                raise PipelineError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        return out

    def options_for(self, task: Task) -> dict[str, str]:
        options = dict(task.options)
        if self.utk_split_list and task.dataset == "utkface":
            options["split_list"] = str(Path(self.utk_split_list).expanduser())
        return options

    def split_for(self, task: Task) -> str:
        return self.splits.get(task.id) or self.splits.get(task.dataset) or self.split or task.split

    def recorded(self) -> Recorded:
        """The config as meta.json records it: tasks by id, and what an ad hoc task (built in code) asks."""
        out = recorded(self).add({"tasks": [t.id if isinstance(t, Task) else t for t in self.tasks]})
        custom = [t for t in self.tasks if isinstance(t, Task) and t.id not in TASKS]
        if not custom:
            return out
        fields = ("id", "dataset", "label", "classes", "templates", "k", "split")
        return out.add({"custom_tasks": [{f: getattr(t, f) for f in fields} for t in custom]})


@dataclass
class Model:
    """What every task needs from the loaded model, and how the results name it."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device
    name: str
    pretrained: str


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def load(cfg: EvalConfig, store: Store) -> Model:
    # open_clip (torchvision, timm, transformers) takes seconds to import; only scoring a model needs it
    from training.inference import load_model

    device = pick_device(cfg.device)
    if cfg.run:
        run_dir = store.path("runs", cfg.run)
        model, preprocess, tokenizer = load_model(run_dir=run_dir, device=device)
        arch = RunMeta.read(store, cfg.run).arch
        return Model(model, preprocess, tokenizer, device, arch, f"runs/{cfg.run}")
    if not cfg.arch:
        raise PipelineError("give --run NAME, or --arch ARCH with --checkpoint FILE")
    if cfg.checkpoint is None:
        log.warning("no checkpoint given: %s is scored with random weights", cfg.arch)
    model, preprocess, tokenizer = load_model(arch=cfg.arch, checkpoint=cfg.checkpoint, device=device)
    return Model(model, preprocess, tokenizer, device, cfg.arch, str(cfg.checkpoint or "random-init"))


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
    roots = {t.dataset: Path(cfg.data_root).expanduser() / t.dataset for t in tasks}
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


def default_name(cfg: EvalConfig) -> str:
    if cfg.name:
        return check_name(cfg.name)
    base = cfg.run or f"{cfg.arch}-{Path(cfg.checkpoint).stem if cfg.checkpoint else 'random'}"
    return check_name("".join(c if c.isalnum() or c in "._-" else "-" for c in base))


def evaluate(cfg: EvalConfig, store: Store) -> list[TaskResult]:
    """Score the model on every task of cfg and publish evals/<name>; returns the per-task results."""
    tasks = cfg.resolved_tasks()
    name = default_name(cfg)
    store.check_replace("evals", name, cfg.overwrite)
    m = load(cfg, store)
    roots = dataset_roots(cfg, tasks)
    cache_dir = store.cache_dir("eval-frames")
    results = [evaluate_task(task, m, cfg, roots, cache_dir) for task in tasks]
    if not cfg.allow_empty and not any(r["status"] == "ok" for r in results):
        why = "; ".join(f"{r['task']}: {r['status']}, {r.get('message', '')}" for r in results[:3])
        more = f" (and {len(results) - 3} more)" if len(results) > 3 else ""
        raise PipelineError(
            f"no task scored anything ({why}{more}); check --data-root {cfg.data_root} / --path; "
            f"nothing was published (--allow-empty publishes such an eval)"
        )
    inputs = [store.ref("runs", cfg.run)] if cfg.run else []
    with store.create(
        "evals", name, stage="eval", config=cfg.recorded(), inputs=inputs, overwrite=cfg.overwrite
    ) as w:
        evals.write_results(w.dir, results)
        evals.write_clip_benchmark(w.dir, results)
        (w.dir / evals.MARKDOWN_FILE).write_text(results_markdown(results, name))
        if any(r["status"] == "ok" for r in results):
            plot_results(results, w.dir / evals.PLOT_FILE, title=f"{name}: zero-shot ({m.name})")
        w.counts.update(
            tasks=len(results),
            scored=sum(r["status"] == "ok" for r in results),
            samples=sum(r["n_samples"] for r in results),
            skipped_samples=sum(sum(r["skipped"].values()) for r in results),
        )
    return results


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def results_markdown(results: list[TaskResult], name: str) -> str:
    lines = [
        f"# Zero-shot results: {name}",
        "",
        "Accuracies in %. `acc@k` uses each task's k (3 for actions and emotions, 1 for age and race, "
        "as in the paper); acc5 is '-' for tasks of 5 classes or fewer; random = k/C and one seeded "
        "simulated random classifier.",
        "",
        "| Task | Group | Split | k | Scored | Skipped | acc@k | acc1 | acc5 | mean per-class recall | "
        "random k/C | sim. random |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["status"] != "ok":
            continue
        mt, rnd = r["metrics"], r.get("random", {})
        cells = [
            r["task"],
            r["group"],
            r["split"],
            r["k"],
            r["n_samples"],
            sum(r["skipped"].values()),
            _pct(mt[f"acc@{r['k']}"]),
            _pct(mt["acc1"]),
            _pct(mt["acc5"]),
            _pct(mt["mean_per_class_recall"]),
            _pct(rnd.get("analytic")),
            _pct(rnd.get("simulated")),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    notes = [(r["task"], n) for r in results for n in r.get("notes", [])]
    if notes:
        lines += ["", "## Notes", "", *(f"- {task}: {note}" for task, note in notes)]
    dropped = [r for r in results if r["skipped"]]
    if dropped:
        lines += ["", "## Rows not scored, by reason", ""]
        for r in dropped:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r["skipped"].items()))
            lines.append(f"- {r['task']}: {reasons}")
    others = [r for r in results if r["status"] != "ok"]
    if others:
        lines += ["", "## Tasks not scored", ""]
        for r in others:
            where = f" (looked for: {', '.join(r['looked_for'])})" if r.get("looked_for") else ""
            lines.append(f"- {r['task']} [{r['status']}]: {r.get('message', '')}{where}")
    return "\n".join(lines) + "\n"


def plot_results(results: list[TaskResult], path: Path, title: str) -> None:
    import matplotlib  # ~1-3 s to import; only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = sorted(
        (r for r in results if r["status"] == "ok"),
        key=lambda r: GROUPS.index(r["group"]) if r["group"] in GROUPS else len(GROUPS),
    )
    labels = [f"{r['title']}\n{r['group']} @{r['k']}" for r in ok]
    acc = [100 * r["metrics"][f"acc@{r['k']}"] for r in ok]
    rand = [100 * r["random"]["analytic"] for r in ok]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(ok) + 1.5), 3.8))
    x = np.arange(len(ok))
    ax.bar(x, acc, color="#4c72b0", label="model")
    ax.scatter(x, rand, color="#c44e52", marker="_", s=400, linewidths=2, label="random (k/C)", zorder=3)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
