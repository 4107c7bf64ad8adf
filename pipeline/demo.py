"""The whole method end to end on the embedded synthetic sample, on a CPU, in minutes.

    focus-pipeline demo                          # = make demo
    focus-pipeline demo --fresh                  # start over (regenerate the sample, re-run every stage)
    focus-pipeline demo --images 300 --steps 20  # a quicker, weaker run

    from pipeline.demo import DemoConfig, demo
    result = demo(DemoConfig(), Store.from_env())
    print(result.table)

Stages, each through its own entry function and artifact: generate the sample (MPII .mat + JPEGs, and two
zero-shot sets in the Stanford 40 and FER2013 layouts) -> convert -> describe (rules backend) ->
build-dataset -> train CLIP and FocusCLIP (same data, seed and steps) -> evaluate both on the synthetic
tasks -> the Table-2-style comparison with the random baseline, written with the loss curves and the bar
chart to evals/<name>. A stage whose artifact is current (store.is_current: the same recorded config and
the same input fingerprints) is reused, so a re-run after a crash picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import evals, runs
from pipeline.artifacts.evals import TaskResult
from pipeline.artifacts.runs import RunMeta
from pipeline.errors import PipelineError
from pipeline.store import Recorded, Store, check_name, recorded, run_only
from pipeline.synthetic import BODY_STATES, SampleConfig, generate_sample

log = logging.getLogger(__name__)

MODEL_TYPES = ("clip", "focusclip")
ACTION_TASK = "synthetic-action"  # the sample's held-out sets' tasks (evaluation/tasks.py)
STATE_TASK = "synthetic-body-state"


def eval_paths(eval_root: Path) -> dict[str, str]:
    """EvalConfig.paths for eval_tasks(): each synthetic dataset's folder in the sample's eval layout."""
    return {t.dataset: str(eval_root / t.folder) for t in eval_tasks()}


@dataclass(slots=True)
class DemoConfig:
    images: int = 1000  # MPII-style training images
    steps: int = 300  # optimizer steps per model (both models: same data, seed and steps)
    batch_size: int = 32
    seed: int = 0  # the sample's and the training's seed
    arch: str = "focus-small"
    name: str = "demo"  # artifact names: annotations/<name>, runs/<name>-clip, evals/<name>, ...
    action_test_per_class: int = 30  # Stanford 40-style test images per activity
    state_test_per_class: int = 40  # FER2013-style crops per body state
    # The modern recipe's lr (1e-3). focus-small has a small ResNet image tower: from scratch, in a few
    # hundred CPU steps, a ViT of the same budget stayed at chance on this sample (its loss sat at ln(batch)).
    lr: float | None = None
    # 64 px and a 32-token context: the rules describer's first sentence (people count and activity) always
    # fits, sentence sampling fills the rest, and a step costs a fraction of 96 px / 77 tokens.
    image_size: int = 64
    context_length: int = 32
    threads: int | None = run_only(None)  # torch CPU threads (None: torch's default)
    fresh: bool = run_only(False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.images < 10:
            raise PipelineError(
                f"--images {self.images}: the demo needs at least 10 images (one per activity)"
            )
        if self.steps < 1 or self.batch_size < 2:
            raise PipelineError(
                "--steps must be >= 1 and --batch-size >= 2 (a contrastive batch needs pairs)"
            )
        if self.action_test_per_class < 1 or self.state_test_per_class < 1:
            raise PipelineError("the eval sets need at least one image per class")

    def recorded(self) -> Recorded:
        return recorded(self)

    @property
    def sample(self) -> SampleConfig:
        return SampleConfig(
            seed=self.seed,
            images=self.images,
            action_test_per_class=self.action_test_per_class,
            state_test_per_class=self.state_test_per_class,
        )


@dataclass(slots=True)
class DemoResult:
    table: str  # the Table-2-style comparison (Markdown)
    results: dict[str, list[TaskResult]]  # model type -> its eval results
    beats_random: dict[str, bool]  # model type -> acc@k above the simulated random on the action task
    report: Path  # evals/<name>/results.md
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    reused: list[str] = field(default_factory=list)  # artifacts taken from an earlier run


def eval_tasks():
    """The two zero-shot tasks the sample's eval sets are read with (the real Stanford 40 and FER2013
    readers; the classes are the generator's activities and body states)."""
    from evaluation.tasks import TASKS

    return TASKS[ACTION_TASK], TASKS[STATE_TASK]


class _Stages:
    """Runs the numbered stages with a visible header and a timer each; a stage whose artifact is current
    (the store's answer: same recorded config, same input fingerprints) is reused instead."""

    def __init__(self, store: Store, total: int):
        self.store, self.total, self.done = store, total, 0
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, title: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        log.info("[demo %d/%d] %s", self.done, self.total, title)
        started = time.perf_counter()
        out = fn()
        self.seconds[title] = round(time.perf_counter() - started, 1)
        return out

    def make(
        self,
        title: str,
        kind: str,
        name: str,
        config: Recorded | dict[str, Any],
        fn: Callable[[], Any],
        *,
        inputs: list[dict[str, str]] = (),
        files: list[Path] = (),
    ) -> Any:
        """fn() unless kind/name is current for `config`, `inputs` and `files` (store.is_current);
        returns fn's result, or None when the artifact was reused."""
        if self.store.is_current(kind, name, config=config, inputs=inputs, files=files):
            self.reused.append(f"{kind}/{name}")
            return self.run(f"{title} (reused)", lambda: None)
        return self.run(title, fn)


def _sample_dir(store: Store, cfg: DemoConfig) -> Path:
    key = hashlib.sha256(json.dumps(cfg.sample.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return store.cache_dir("demo-sample") / f"{cfg.name}-{key}"


def _forget(store: Store, cfg: DemoConfig) -> None:
    """--fresh: remove what an earlier demo of this name wrote (its artifacts and its samples)."""
    names = [("evals", cfg.name)] + [(k, f"{cfg.name}-{m}") for k in ("evals", "runs") for m in MODEL_TYPES]
    names += [(k, cfg.name) for k in ("datasets", "descriptions", "annotations")]
    for kind, name in names:
        if store.exists(kind, name):
            log.info("--fresh: deleting %s/%s", kind, name)
            store.delete(kind, name)
    for old in store.cache_dir("demo-sample").glob(f"{cfg.name}-*"):
        shutil.rmtree(old, ignore_errors=True)


def plot_loss_curves(run_dirs: dict[str, Path], out: Path) -> None:
    """Both runs' training loss (and FocusCLIP's three terms) on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model_type, run_dir in run_dirs.items():
        rows = runs.read_metrics(run_dir)
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss"] for r in rows], lw=1.6, label=f"{model_type}: loss")
        if model_type == "focusclip":
            for term in sorted(k for k in rows[0] if k.startswith("loss_")):
                ax.plot(steps, [r[term] for r in rows], lw=0.8, ls="--",
                        label=f"focusclip: {term.removeprefix('loss_').replace('_', '-')}")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.set_title("Training loss on the synthetic sample (same data, seed and steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def clearly_above_chance(hits: int, n: int, chance: float, alpha: float = 0.01) -> bool:
    """One-sided binomial test: is `hits` of `n` above what a classifier at `chance` accuracy gets?"""
    from scipy.stats import binomtest

    return n > 0 and binomtest(hits, n, chance, alternative="greater").pvalue < alpha


def _action_verdict(results: dict[str, list[TaskResult]]) -> dict[str, bool]:
    """Per model: acc@k on the action task significantly above random (k/C, binomial test, p < 0.01); a
    single simulated random run is too noisy to be the bar."""
    out = {}
    for model_type, rows in results.items():
        row = next((r for r in rows if r["task"] == ACTION_TASK and r.get("status") == "ok"), None)
        acc = None if row is None else row["metrics"][f"acc@{row['k']}"]
        if acc is None:
            out[model_type] = False
            continue
        n = row["n_samples"]
        out[model_type] = clearly_above_chance(round(acc * n), n, row["random"]["analytic"])
    return out


def _report(
    cfg: DemoConfig,
    table: str,
    results: dict[str, list[TaskResult]],
    beats: dict[str, bool],
    train: dict[str, dict[str, Any]],
    seconds: dict[str, float],
    counts: dict[str, int],
) -> str:
    import torch  # loaded by training already; not at the CLI's start-up

    lines = [
        f"# FocusCLIP demo: {cfg.name}",
        "",
        f"CLIP and FocusCLIP ({cfg.arch}, trained from scratch: {cfg.steps} steps of batch {cfg.batch_size}, "
        f"seed {cfg.seed}, the same data) on {counts['images']} synthetic MPII-style images "
        f"({counts['people']} people) described by the offline rules describer, then scored zero-shot on "
        f"held-out synthetic sets: {counts['stanford40_test']} images of {len(SampleConfig().activities)} "
        f"activities in the Stanford 40 layout and {counts['body_state_test']} person crops of "
        f"{len(BODY_STATES)} body states in the FER2013 image-folder layout.",
        "",
        table.rstrip(),
        "",
        f"One seed, one draw: this table shows whether each model learns (see the checks below), not whether "
        f"FocusCLIP beats CLIP. On {counts['stanford40_test']} test images a few points either way is within "
        "seed-to-seed noise; `benchmarks/focus_effect.py` measures the paired difference over seeds with "
        "confidence intervals (benchmarks/README.md).",
        "",
        f"Trained with {torch.get_num_threads()} torch CPU thread(s), torch {torch.__version__}: the same "
        "seed gives the same table with the same thread count and library, and another one otherwise (the "
        "order of floating-point sums changes, and the steps amplify it; `--threads` fixes the count).",
        "",
        "## Training",
        "",
        "| Model | Steps | First loss | Final loss | alpha | Samples/s |",
        "|---|---|---|---|---|---|",
    ]
    for model_type, s in train.items():
        alpha = s.get("alpha")
        cells = [
            model_type,
            str(s.get("steps")),
            f"{s.get('first_loss', float('nan')):.4f}",
            f"{s.get('final_loss', float('nan')):.4f}",
            "-" if alpha is None else f"{alpha:.3f}",
            f"{s.get('samples_per_s', float('nan')):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Checks", ""]
    for model_type, ok in beats.items():
        verdict = "significantly above" if ok else "NOT significantly above"
        lines.append(
            f"- {model_type}: {verdict} random (k/C) on {ACTION_TASK} (one-sided binomial test, p < 0.01)."
        )
    lines += ["", "## Wall time per stage (seconds)", ""]
    lines += [f"- {title}: {sec}" for title, sec in seconds.items()]
    lines += ["", f"Total: {round(sum(seconds.values()), 1)} s.", ""]
    return "\n".join(lines)


def _publish(
    cfg: DemoConfig,
    store: Store,
    results: dict[str, list[TaskResult]],
    train: dict[str, dict[str, Any]],
    stages: _Stages,
    counts: dict[str, int],
) -> tuple[str, Path]:
    """evals/<name>: the comparison table, loss curves, merged results and the report."""
    from evaluation.compare import compare

    names = [f"{cfg.name}-{m}" for m in MODEL_TYPES]
    inputs = [store.ref("runs", r) for r in names] + [store.ref("evals", r) for r in names]
    with store.create(
        "evals", cfg.name, stage="demo", config=cfg.recorded(), inputs=inputs, overwrite=True
    ) as w:
        # Row labels: the run names the comparison reads from the folders.
        table = compare([store.path("evals", r) for r in names], store, out_dir=w.dir)
        curves = {m: store.path("runs", r) for m, r in zip(MODEL_TYPES, names, strict=True)}
        plot_loss_curves(curves, w.dir / "loss_curves.png")
        evals.write_results(w.dir, [r for m in MODEL_TYPES for r in results[m]])
        beats = _action_verdict(results)
        report = _report(cfg, table.markdown, results, beats, train, stages.seconds, counts)
        (w.dir / evals.MARKDOWN_FILE).write_text(report)
        w.counts.update(models=len(MODEL_TYPES), tasks=len(eval_tasks()), reused=len(stages.reused))
        w.extra["beats_random"] = beats
    return table.markdown, store.path("evals", cfg.name) / evals.MARKDOWN_FILE


def demo(cfg: DemoConfig, store: Store) -> DemoResult:
    """Run (or resume) the whole demo; returns the comparison and where it was written."""
    from evaluation.config import EvalConfig
    from evaluation.stage import evaluate
    from pipeline.build_dataset import BuildConfig, build_dataset
    from pipeline.convert import ConvertConfig, convert
    from pipeline.describe import DescribeConfig, describe
    from pipeline.describe.stage import settle
    from training.config import TrainConfig
    from training.train import train

    if cfg.fresh:
        _forget(store, cfg)
    stages, name = _Stages(store, total=4 + 2 * len(MODEL_TYPES) + 1), cfg.name
    layout = stages.run(
        "generate the synthetic sample", lambda: generate_sample(cfg.sample, _sample_dir(store, cfg))
    )
    ref = store.ref

    conv = ConvertConfig(sources=[layout.mat], name=name, overwrite=True)
    stages.make("convert the MPII .mat", "annotations", name, conv.recorded(), lambda: convert(conv, store),
                files=[layout.mat])  # fmt: skip
    desc = DescribeConfig(annotations=name, backend="rules", name=name, overwrite=True)
    stages.make("describe with the rules backend", "descriptions", name, settle(desc).recorded(),
                lambda: describe(desc, store), inputs=[ref("annotations", name)])  # fmt: skip
    build = BuildConfig(annotations=name, descriptions=[name], images=layout.images, name=name,
                        overwrite=True, workers=2, origin="synthetic")  # fmt: skip
    stages.make("build the dataset", "datasets", name, build.recorded(), lambda: build_dataset(build, store),
                inputs=[ref("annotations", name), ref("descriptions", name)])  # fmt: skip

    train_summaries: dict[str, dict[str, Any]] = {}
    for model_type, run in ((m, f"{name}-{m}") for m in MODEL_TYPES):
        tcfg = TrainConfig(
            dataset=name, model_type=model_type, arch=cfg.arch, name=run, max_steps=cfg.steps,
            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, num_threads=cfg.threads,
            image_size=cfg.image_size, context_length=cfg.context_length, overwrite=True,
        )  # fmt: skip
        made = stages.make(f"train {model_type}", "runs", run, tcfg.resolved().recorded(),
                           lambda t=tcfg: train(t, store), inputs=[ref("datasets", name)])  # fmt: skip
        train_summaries[model_type] = made if made is not None else RunMeta.read(store, run).summary

    results: dict[str, list[TaskResult]] = {}
    paths = eval_paths(layout.eval_root)
    for model_type, run in ((m, f"{name}-{m}") for m in MODEL_TYPES):
        ecfg = EvalConfig(run=run, tasks=eval_tasks(), data_root=str(layout.eval_root), paths=paths, name=run,
                          workers=0, seed=cfg.seed, overwrite=True)  # fmt: skip
        made = stages.make(f"evaluate {model_type}", "evals", run, ecfg.recorded(),
                           lambda e=ecfg: evaluate(e, store), inputs=[ref("runs", run)])  # fmt: skip
        results[model_type] = made if made is not None else evals.read(store, run)

    table, report = stages.run(
        "compare", lambda: _publish(cfg, store, results, train_summaries, stages, layout.counts)
    )
    if stages.reused:
        log.info("reused from an earlier run: %s (pass --fresh to start over)", ", ".join(stages.reused))
    beats = _action_verdict(results)
    for model_type in (m for m, ok in beats.items() if not ok):
        log.warning("%s is not significantly above random on %s (try more --steps)", model_type, ACTION_TASK)
    log.info("demo finished in %.0f s; report: %s", sum(stages.seconds.values()), report)
    return DemoResult(table=table, results=results, beats_random=beats, report=report, seconds=stages.seconds,
                      reused=stages.reused)  # fmt: skip
