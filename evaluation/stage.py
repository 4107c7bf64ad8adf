"""Zero-shot evaluation of one model on many tasks, written to the store as evals/<name>.

    focus-pipeline eval --run demo-focusclip --data-root ~/eval-data
    focus-pipeline eval --arch ViT-B-16 --checkpoint model.pt --tasks fer2013-emotion utkface-age \
        --path fer2013=~/data/fer2013_images --split test

    from evaluation.stage import EvalConfig, evaluate
    results = evaluate(EvalConfig(run="demo-focusclip", data_root="eval-data"), store)

The typed config is evaluation/config.py; scoring one task (the model, class weights, the batched scorer,
the per-task result) is evaluation/scoring.py, which training's evaluations during a run share.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evaluation.config import EvalConfig
from evaluation.scoring import (
    Model,
    dataset_roots,
    evaluate_task,
)
from evaluation.tasks import GROUPS
from pipeline.artifacts import evals
from pipeline.artifacts.evals import TaskResult
from pipeline.artifacts.runs import RunMeta
from pipeline.devices import torch_device
from pipeline.errors import PipelineError
from pipeline.store import Store, check_name

log = logging.getLogger(__name__)


def load(cfg: EvalConfig, store: Store) -> Model:
    # open_clip (torchvision, timm, transformers) takes seconds to import; only scoring a model needs it
    from training.inference import load_model

    device = torch_device(cfg.device)
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
