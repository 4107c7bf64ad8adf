"""Does FocusCLIP beat CLIP? A multi-seed, paired measurement on the synthetic MPII-style sample.

    .venv/bin/python benchmarks/focus_effect.py                          # the pre-registered default (CPU)
    .venv/bin/python benchmarks/focus_effect.py --seeds 2 --steps 30     # a quick check
    .venv/bin/python benchmarks/focus_effect.py --heatmap uniform        # ablation: all-ones "heatmap"
    .venv/bin/python benchmarks/focus_effect.py --loss ntxent --temperature 0.5   # the paper's loss
    .venv/bin/python benchmarks/focus_effect.py --fixed-alpha --alpha-init 0.5    # alpha not learnt
    .venv/bin/python benchmarks/focus_effect.py --clutter 20 32 --person-height 0.25 0.4   # harder scenes
    .venv/bin/python benchmarks/focus_effect.py --compare focus-effect fe-uniform   # a table of finished runs
    .venv/bin/python benchmarks/focus_effect.py --device cuda --arch ViT-B-16 --image-size 224 \
        --context-length 77 --steps 2000 --batch-size 128                # a GPU, a real architecture

Protocol (printed first, before any training): one synthetic sample (the demo's generator, sample seed 0)
is converted, described by the rules backend and built into a dataset ONCE; then for every seed s in
0..N-1 CLIP and FocusCLIP are trained with TrainConfig(seed=s): the same initial weights (the open_clip
model is created right after torch.manual_seed(s), before FocusCLIP's alpha), the same batches, crops and
sampled sentences (the loader is a pure function of seed, epoch and step). Both are scored zero-shot on
the same held-out images: the action set (Stanford 40 layout, Acc@3) and the body-state crops (FER2013
layout, Acc@1). The unit of replication is the seed: per task the paired difference FocusCLIP - CLIP per
seed, its mean and 95% t-interval over seeds, and an exact two-sided sign-flip permutation test over seeds
(with N seeds the smallest possible p is 2 / 2^N). Beside them, two image-level views that treat the test
set as a sample: a percentile bootstrap over images (each image's difference averaged over seeds, images
resampled) and an exact McNemar test on the pooled (seed, image) pairs (optimistic: the same images recur
in every seed). Runs are named by a hash of everything that determines them, so an ablation that changes
only FocusCLIP reuses the CLIP runs, and a re-run reuses everything it can.

Output: evals/<name>/ with results.md (the tables), results.json (per-seed accuracies, the statistics,
the loss-term and alpha curves), effect.png (difference per seed with the CI; loss terms; alpha and
temperature). The last lines printed are `FocusCLIP - CLIP: <task> mean <x> pts, 95% CI [<lo>, <hi>]`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.store import Store, check_name  # noqa: E402
from pipeline.synthetic import SampleConfig, generate_sample  # noqa: E402

log = logging.getLogger("focus_effect")

MODELS = ("clip", "focusclip")
TERMS = ("loss_masked_image", "loss_masked_text", "loss_image_text")


@dataclass(slots=True)
class EffectConfig:
    seeds: int = 6  # 6, not 5: the exact sign-flip test can then reach p < 0.05 (2 / 2^6 = 0.031)
    steps: int = 300  # optimizer steps per model and seed
    images: int = 1000  # synthetic MPII-style training images
    batch_size: int = 32
    arch: str = "focus-small"
    recipe: str = "modern"
    image_size: int = 64
    context_length: int = 32
    lr: float | None = None  # None: the recipe's
    loss: str = "infonce"
    temperature: float | None = None  # None: learnt (open_clip's init 1/0.07); a value: fixed
    alpha_init: float = 0.5
    learn_alpha: bool = True
    heatmap: str = "keypoints"  # "uniform": all ones, masked = image (the no-information control)
    clutter: tuple[int, int] = (8, 18)  # distractor shapes per image (the generator's default)
    person_height: tuple[float, float] | None = None  # fraction of the image height (None: by people count)
    action_test_per_class: int = 30
    state_test_per_class: int = 40
    bootstrap: int = 10_000  # image resamples
    device: str = "cpu"
    threads: int | None = None
    name: str = "focus-effect"

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.seeds < 2:
            raise PipelineError("--seeds must be >= 2 (a confidence interval over seeds needs two)")
        if self.steps < 1 or self.batch_size < 2 or self.images < 10:
            raise PipelineError("--steps >= 1, --batch-size >= 2 and --images >= 10 are needed")
        if self.heatmap not in ("keypoints", "uniform"):
            raise PipelineError(f"--heatmap must be keypoints or uniform, not {self.heatmap!r}")
        if self.loss not in ("infonce", "ntxent"):
            raise PipelineError(f"--loss must be infonce or ntxent, not {self.loss!r}")

    @property
    def sample(self) -> SampleConfig:
        return SampleConfig(
            seed=0,
            images=self.images,
            clutter=tuple(self.clutter),
            person_height=None if self.person_height is None else tuple(self.person_height),
            action_test_per_class=self.action_test_per_class,
            state_test_per_class=self.state_test_per_class,
        )

    def train_config(self, dataset: str, model_type: str, seed: int):
        from training.config import TrainConfig

        # heatmap_source given: runs are named by a hash of this config, made when "keypoints" was its default
        cfg = TrainConfig(
            dataset=dataset, model_type=model_type, arch=self.arch, recipe=self.recipe, max_steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, loss=self.loss, temperature=self.temperature,
            image_size=self.image_size, context_length=self.context_length, seed=seed, device=self.device,
            num_threads=self.threads, overwrite=True, heatmap_source="keypoints",
        )  # fmt: skip
        if model_type == "focusclip":  # CLIP keeps the defaults, so a FocusCLIP-only ablation reuses its runs
            cfg.alpha_init, cfg.learn_alpha, cfg.heatmap_source = (
                self.alpha_init,
                self.learn_alpha,
                self.heatmap,
            )
        return cfg


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def protocol(cfg: EffectConfig) -> str:
    t = "learnt (init 0.07)" if cfg.temperature is None else f"fixed {cfg.temperature}"
    alpha = f"{'learnt' if cfg.learn_alpha else 'fixed'}, init {cfg.alpha_init}"
    person = "by people count" if cfg.person_height is None else f"{cfg.person_height} of the image height"
    return "\n".join([
        "Protocol (fixed before any result):",
        f"  data      synthetic MPII-style sample, seed 0: {cfg.images} training images, clutter "
        f"{cfg.clutter[0]}-{cfg.clutter[1]} shapes, person height {person}; rules describer",
        f"  test      synthetic actions: {cfg.action_test_per_class}/class x 10 (Acc@3); synthetic body "
        f"states: {cfg.state_test_per_class}/class x 3 (Acc@1)",
        f"  models    CLIP and FocusCLIP, {cfg.arch} from scratch, {cfg.image_size} px, context "
        f"{cfg.context_length}, recipe {cfg.recipe}, lr {cfg.lr or 'of the recipe'}, batch {cfg.batch_size}, "
        f"{cfg.steps} steps, device {cfg.device}",
        f"  loss      {cfg.loss}, temperature {t}; FocusCLIP alpha {alpha}; heatmap {cfg.heatmap}",
        f"  seeds     0..{cfg.seeds - 1}: per seed the same init, batches and crops for both models",
        "  measure   per task: FocusCLIP - CLIP accuracy (points) per seed; mean, 95% t-CI over seeds, exact",
        "            sign-flip test over seeds; bootstrap CI over images and exact McNemar on pooled pairs",
    ])  # fmt: skip


# ---- the data -----------------------------------------------------------------------------------------
def prepare_dataset(cfg: EffectConfig, store: Store):
    """Sample -> annotations -> rules descriptions -> dataset, once per sample config (named by its hash)."""
    from pipeline.build_dataset import BuildConfig, build_dataset
    from pipeline.convert import ConvertConfig, convert
    from pipeline.describe import DescribeConfig, describe

    key = _key(cfg.sample.to_dict())
    name = f"fe-{key}"
    layout = generate_sample(cfg.sample, store.cache_dir("focus-effect-sample") / key)
    if not store.exists("annotations", name):
        convert(ConvertConfig(sources=[layout.mat], name=name, overwrite=True), store)
    if not store.exists("descriptions", name):
        describe(DescribeConfig(annotations=name, backend="rules", name=name, overwrite=True), store)
    if not store.exists("datasets", name):
        build = BuildConfig(annotations=name, descriptions=[name], images=layout.images, name=name,
                            overwrite=True, workers=2)  # fmt: skip
        build_dataset(build, store)
    return name, layout


# ---- training and per-image scoring ---------------------------------------------------------------------
def train_or_reuse(cfg: EffectConfig, store: Store, dataset: str, model_type: str, seed: int) -> str:
    """runs/fe-<model>-s<seed>-<hash of the train config and the dataset's fingerprint>."""
    from training.train import train

    tcfg = cfg.train_config(dataset, model_type, seed)
    fields = {k: v for k, v in tcfg.to_dict().items() if k not in ("name", "overwrite", "num_threads")}
    run = f"fe-{model_type}-s{seed}-{_key([fields, store.meta('datasets', dataset)['fingerprint']])}"
    if store.exists("runs", run):
        log.info("reusing runs/%s", run)
    else:
        tcfg.name = run
        train(tcfg, store)
    return run


def image_hits(store: Store, run: str, tasks, eval_root: Path, device: str) -> dict[str, np.ndarray]:
    """Per task, (N,) bool: each test image's top-k hit, with the eval stage's own reader, prompts and
    scorer (evaluation.stage), so the mean equals what `focus-pipeline eval` reports."""
    from evaluation import metrics
    from evaluation.data import EvalDataset
    from evaluation.readers.base import ReaderInput
    from evaluation.stage import EvalConfig, class_weights, load, score
    from pipeline.demo import eval_paths

    m = load(EvalConfig(run=run, device=device), store)
    out = {}
    for task in tasks:
        root = Path(eval_paths(eval_root)[task.dataset])  # the sample's folder in the layout the reader reads
        read = task.read(ReaderInput(root=root, split=task.split))
        classes = list(task.classes or read.classes)
        index = {c: i for i, c in enumerate(classes)}
        samples = [s for s in read.samples if s.labels.get(task.label) in index]
        labels = np.array([index[s.labels[task.label]] for s in samples])
        weights = class_weights(m, [task.prompt_name(c) for c in classes], task.select_templates("paper"))
        dataset = EvalDataset(samples, m.preprocess, store.cache_dir("eval-frames") / task.dataset)
        scores, loaded, _ = score(m, dataset, weights, batch_size=64, workers=0, desc=f"{run} {task.id}")
        if not loaded.all():
            raise PipelineError(f"{root}: {int((~loaded).sum())} test images unreadable")
        out[task.id] = metrics.topk_hits(scores, labels, task.k)
    return out


def curves(store: Store, run: str) -> dict[str, list[float]]:
    rows = [
        json.loads(ln) for ln in (store.path("runs", run) / "metrics.jsonl").read_text().splitlines() if ln
    ]
    keys = ["loss", *TERMS, "alpha", "temperature"]
    return {k: [r[k] for r in rows] for k in keys if k in rows[0] and rows[0][k] is not None}


# ---- statistics (pure) ----------------------------------------------------------------------------------
def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import t

    n = len(diffs)
    half = t.ppf(0.5 + level / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    return float(diffs.mean() - half), float(diffs.mean() + half)


def sign_flip_p(diffs: np.ndarray) -> float:
    """Exact two-sided paired permutation test: every sign pattern of the per-seed differences."""
    observed = abs(diffs.mean())
    flips = np.array(list(itertools.product((1, -1), repeat=len(diffs))))
    return float(np.mean(np.abs((flips * diffs).mean(axis=1)) >= observed - 1e-12))


def bootstrap_interval(
    hits_f: np.ndarray, hits_c: np.ndarray, n: int, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """(seeds, images) bool arrays -> percentile CI (points) of the mean difference, images resampled."""
    per_image = (hits_f.astype(float) - hits_c.astype(float)).mean(axis=0)
    rng = np.random.default_rng(seed)
    means = per_image[rng.integers(0, len(per_image), (n, len(per_image)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return 100 * float(lo), 100 * float(hi)


def mcnemar_p(hits_f: np.ndarray, hits_c: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar on pooled pairs: (FocusCLIP-only hits, CLIP-only hits, two-sided p)."""
    from scipy.stats import binomtest

    b = int((hits_f & ~hits_c).sum())
    c = int((~hits_f & hits_c).sum())
    return b, c, (1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue))


def loss_floor(kind: str, temperature: float, batch: int) -> float:
    """The smallest value a pair term can reach at this temperature: partners identical, the batch's B
    points on a regular simplex (cosine -1/(B-1)); InfoNCE has B-1 negatives per row, NT-Xent 2B-2."""
    negatives = batch - 1 if kind == "infonce" else 2 * batch - 2
    return math.log1p(negatives * math.exp((-1 / (batch - 1) - 1) / temperature))


def collapse(curve: list[float], threshold: float = 0.05) -> int | None:
    """First step (1-based) from which the term stays below `threshold` (None: it never does)."""
    below = np.asarray(curve) < threshold
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1] + 2) if len(above) else 1


def summarize(cfg: EffectConfig, hits: dict[str, dict[int, dict[str, np.ndarray]]], tasks) -> dict[str, Any]:
    out = {}
    for task in tasks:
        h = {m: np.stack([hits[m][s][task.id] for s in range(cfg.seeds)]) for m in MODELS}
        acc = {m: 100 * h[m].mean(axis=1) for m in MODELS}
        diffs = acc["focusclip"] - acc["clip"]
        lo, hi = t_interval(diffs)
        blo, bhi = bootstrap_interval(h["focusclip"], h["clip"], cfg.bootstrap)
        b, c, p_mc = mcnemar_p(h["focusclip"].ravel(), h["clip"].ravel())
        out[task.id] = {
            "title": task.name, "k": task.k, "n_images": int(h["clip"].shape[1]),
            "acc": {m: acc[m].tolist() for m in MODELS}, "diff": diffs.tolist(), "mean": float(diffs.mean()),
            "ci": [lo, hi], "sign_flip_p": sign_flip_p(diffs), "bootstrap_ci": [blo, bhi],
            "mcnemar": {"focus_only": b, "clip_only": c, "p": p_mc},
        }  # fmt: skip
    return out


# ---- report ---------------------------------------------------------------------------------------------
def _mean_curve(runs: list[dict[str, list[float]]], key: str) -> np.ndarray:
    n = min(len(r[key]) for r in runs)
    return np.mean([r[key][:n] for r in runs], axis=0)


def training_rows(cfg: EffectConfig, runs: dict[str, list[dict[str, list[float]]]]) -> list[dict[str, Any]]:
    """Per model, means over seeds: loss at the start and the end (last 10% of steps), each term's end
    value, the step from which L(masked,image) stays < 0.05, alpha and temperature at the end, and the
    term's floor at the final temperature."""
    rows = []
    for m in MODELS:
        tail = max(1, cfg.steps // 10)
        row: dict[str, Any] = {"model": m}
        row["first_loss"] = float(np.mean([r["loss"][0] for r in runs[m]]))
        for key in ("loss", *TERMS, "alpha", "temperature"):
            if key in runs[m][0]:
                row[f"final_{key}"] = float(np.mean([np.mean(r[key][-tail:]) for r in runs[m]]))
        if m == "focusclip":
            row["collapse_steps"] = [collapse(r["loss_masked_image"]) for r in runs[m]]
            row["alpha_start_end"] = [[r["alpha"][0], r["alpha"][-1]] for r in runs[m]]
            row["floor_final_T"] = loss_floor(cfg.loss, row["final_temperature"], cfg.batch_size)
        rows.append(row)
    return rows


def _fmt_ci(ci: list[float]) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def markdown(cfg: EffectConfig, stats: dict[str, Any], train_rows: list[dict[str, Any]], wall: float) -> str:
    lines = [f"# FocusCLIP vs CLIP: {cfg.name}", "", "```", protocol(cfg), "```", ""]
    lines += ["## Accuracy per seed (%)", ""]
    head = "| Seed | " + " | ".join(f"{t['title']} CLIP | FocusCLIP | diff" for t in stats.values()) + " |"
    lines += [head, "|" + "---|" * (1 + 3 * len(stats))]
    for s in range(cfg.seeds):
        cells = [str(s)]
        for t in stats.values():
            cells += [f"{t['acc']['clip'][s]:.2f}", f"{t['acc']['focusclip'][s]:.2f}", f"{t['diff'][s]:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Paired difference FocusCLIP - CLIP (points)", ""]
    lines += [
        "| Task | n images | CLIP mean | FocusCLIP mean | diff mean | 95% t-CI (seeds) | sign-flip p | "
        "95% bootstrap CI (images) | McNemar F-only / C-only, p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in stats.values():
        mc = t["mcnemar"]
        lines.append(
            f"| {t['title']} (Acc@{t['k']}) | {t['n_images']} | {np.mean(t['acc']['clip']):.2f} | "
            f"{np.mean(t['acc']['focusclip']):.2f} | {t['mean']:+.2f} | {_fmt_ci(t['ci'])} | "
            f"{t['sign_flip_p']:.3f} | {_fmt_ci(t['bootstrap_ci'])} | "
            f"{mc['focus_only']} / {mc['clip_only']}, {mc['p']:.3f} |"
        )
    lines += ["", "## Training (means over seeds; final = mean of the last 10% of steps)", ""]
    lines += [
        "| Model | first loss | final loss | L(masked,image) | L(masked,text) | L(image,text) | alpha | T | "
        "floor of L(m,i) at final T | L(m,i) < 0.05 from step (per seed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in train_rows:

        def g(key: str, fmt: str = ".4f", r=r) -> str:
            return "-" if key not in r else format(r[key], fmt)

        lines.append(
            f"| {r['model']} | {g('first_loss')} | {g('final_loss')} | {g('final_loss_masked_image')} | "
            f"{g('final_loss_masked_text')} | {g('final_loss_image_text')} | {g('final_alpha', '.3f')} | "
            f"{g('final_temperature')} | {g('floor_final_T')} | "
            f"{', '.join('never' if s is None else str(s) for s in r.get('collapse_steps', [])) or '-'} |"
        )
    lines += ["", f"Wall time: {wall:.0f} s.", ""]
    return "\n".join(lines)


def plot(cfg: EffectConfig, stats: dict[str, Any], runs: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, t in enumerate(stats.values()):
        ax1.scatter(np.full(cfg.seeds, i) + np.linspace(-0.12, 0.12, cfg.seeds), t["diff"], s=14, alpha=0.7)
        ax1.errorbar(i + 0.25, t["mean"], yerr=[[t["mean"] - t["ci"][0]], [t["ci"][1] - t["mean"]]],
                     fmt="o", color="black", capsize=4)  # fmt: skip
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set_xticks(range(len(stats)), [f"{t['title']}\n(Acc@{t['k']})" for t in stats.values()], fontsize=8)
    ax1.set_ylabel("FocusCLIP - CLIP (points)")
    ax1.set_title("per seed, mean and 95% t-CI", fontsize=9)
    steps = np.arange(1, cfg.steps + 1)
    ax2.plot(steps, _mean_curve(runs["clip"], "loss"), color="black", lw=1.4, label="CLIP loss")
    for term in TERMS:
        label = "FocusCLIP " + term.removeprefix("loss_").replace("_", "-")
        ax2.plot(steps, _mean_curve(runs["focusclip"], term), lw=1, label=label)
    ax2.set_xlabel("step")
    ax2.set_ylabel("loss (mean over seeds)")
    ax2.set_title("loss terms", fontsize=9)
    ax2.legend(fontsize=7)
    for r in runs["focusclip"]:
        ax3.plot(steps, r["alpha"], color="tab:green", lw=0.7, alpha=0.6)
        ax3.plot(steps, r["temperature"], color="tab:purple", lw=0.7, alpha=0.6)
    ax3.plot([], [], color="tab:green", label="alpha (per seed)")
    ax3.plot([], [], color="tab:purple", label="temperature (per seed)")
    ax3.set_xlabel("step")
    ax3.set_title("FocusCLIP alpha and temperature", fontsize=9)
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


_NOT_A_SETTING = ("seeds", "name", "threads", "device", "bootstrap")


def compare_table(store: Store, names: list[str]) -> str:
    """One row per finished evals/<name> of this script: the settings that differ from the defaults, the
    per-task means and paired difference with its t-CI, and FocusCLIP's end-of-run L(masked,image), its
    floor at the final temperature, alpha and the temperature."""
    defaults = json.loads(json.dumps(asdict(EffectConfig())))
    lines = []
    for name in names:
        config = store.meta("evals", name)["config"]
        result = json.loads((store.path("evals", name) / "results.json").read_text())
        changed = [f"{k}={v}" for k, v in config.items() if k not in _NOT_A_SETTING and v != defaults.get(k)]
        stats = result["stats"]
        if not lines:
            head = " | ".join(f"{t['title']} CLIP / FocusCLIP, diff [95% CI]" for t in stats.values())
            lines += [f"| Setting | Seeds | {head} | L(m,i) end (floor) | alpha | T |",
                      "|" + "---|" * (5 + len(stats))]  # fmt: skip
        cells = [", ".join(changed) or "default", str(config["seeds"])]
        for t in stats.values():
            clip, focus = np.mean(t["acc"]["clip"]), np.mean(t["acc"]["focusclip"])
            cells.append(f"{clip:.1f} / {focus:.1f}, {t['mean']:+.2f} {_fmt_ci(t['ci'])}")
        f = next(r for r in result["training"] if r["model"] == "focusclip")
        cells += [f"{f['final_loss_masked_image']:.3f} ({f['floor_final_T']:.3f})", f"{f['final_alpha']:.3f}",
                  f"{f['final_temperature']:.3f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ci_line(t: dict[str, Any], task_id: str) -> str:
    lo, hi = t["ci"]
    return f"FocusCLIP - CLIP: {task_id} mean {t['mean']:+.2f} pts, 95% CI [{lo:+.2f}, {hi:+.2f}]"


# ---- the entry function ---------------------------------------------------------------------------------
def focus_effect(cfg: EffectConfig, store: Store) -> dict[str, Any]:
    """Prepare the data, train and score both models per seed, publish evals/<name>; returns the stats."""
    from pipeline.demo import eval_tasks

    print(protocol(cfg), flush=True)
    started = time.perf_counter()
    dataset, layout = prepare_dataset(cfg, store)
    tasks = eval_tasks()
    hits: dict[str, dict[int, dict[str, np.ndarray]]] = {m: {} for m in MODELS}
    runs: dict[str, list[dict[str, list[float]]]] = {m: [] for m in MODELS}
    names: dict[str, list[str]] = {m: [] for m in MODELS}
    for seed in range(cfg.seeds):
        for m in MODELS:
            run = train_or_reuse(cfg, store, dataset, m, seed)
            names[m].append(run)
            hits[m][seed] = image_hits(store, run, tasks, layout.eval_root, cfg.device)
            runs[m].append(curves(store, run))
        log.info("seed %d done (%.0f s so far)", seed, time.perf_counter() - started)
    stats = summarize(cfg, hits, tasks)
    rows = training_rows(cfg, runs)
    wall = time.perf_counter() - started
    report = markdown(cfg, stats, rows, wall)
    inputs = [store.ref("datasets", dataset)] + [store.ref("runs", r) for m in MODELS for r in names[m]]
    with store.create("evals", cfg.name, stage="benchmark", config=asdict(cfg), inputs=inputs,
                      overwrite=True) as w:  # fmt: skip
        (w.dir / "results.md").write_text(report)
        mean_curves = {m: {k: _mean_curve(runs[m], k).tolist() for k in runs[m][0]} for m in MODELS}
        result = {"stats": stats, "training": rows, "runs": names, "wall_s": wall, "curves": mean_curves}
        (w.dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(cfg, stats, runs, w.dir / "effect.png")
        w.counts.update(seeds=cfg.seeds, runs=2 * cfg.seeds, tasks=len(stats))
    print(report, flush=True)
    print(f"report: {store.path('evals', cfg.name) / 'results.md'}")
    for task_id, t in stats.items():
        print(ci_line(t, task_id), flush=True)
    return result


def parse_args(argv: list[str] | None = None) -> tuple[EffectConfig, Store, list[str] | None]:
    d = EffectConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds 0..N-1, each trains both models")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--images", type=int, default=d.images, help="synthetic training images")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--arch", default=d.arch)
    p.add_argument("--recipe", default=d.recipe, choices=["modern", "paper"])
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--context-length", type=int, default=d.context_length)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--loss", default=d.loss, choices=["infonce", "ntxent"])
    p.add_argument("--temperature", type=float, default=d.temperature, help="fixed T (default: learnt)")
    p.add_argument("--alpha-init", type=float, default=d.alpha_init)
    p.add_argument("--fixed-alpha", action="store_true", help="alpha stays at --alpha-init")
    p.add_argument("--heatmap", default=d.heatmap, choices=["keypoints", "uniform"])
    p.add_argument("--clutter", type=int, nargs=2, default=d.clutter, metavar=("MIN", "MAX"))
    p.add_argument("--person-height", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    p.add_argument("--action-per-class", type=int, default=d.action_test_per_class)
    p.add_argument("--state-per-class", type=int, default=d.state_test_per_class)
    p.add_argument("--bootstrap", type=int, default=d.bootstrap)
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--name", default=d.name, help="evals/<name> in the store")
    p.add_argument("--store", default=None, help="artifact store (default: $FOCUS_STORE or ./artifacts)")
    p.add_argument("--compare", nargs="+", metavar="NAME", help="only print the table of finished evals/NAME")
    a = p.parse_args(argv)
    cfg = EffectConfig(
        seeds=a.seeds, steps=a.steps, images=a.images, batch_size=a.batch_size, arch=a.arch, recipe=a.recipe,
        image_size=a.image_size, context_length=a.context_length, lr=a.lr, loss=a.loss,
        temperature=a.temperature, alpha_init=a.alpha_init, learn_alpha=not a.fixed_alpha, heatmap=a.heatmap,
        clutter=tuple(a.clutter), person_height=None if a.person_height is None else tuple(a.person_height),
        action_test_per_class=a.action_per_class, state_test_per_class=a.state_per_class,
        bootstrap=a.bootstrap, device=a.device, threads=a.threads, name=a.name,
    )  # fmt: skip
    return cfg, Store.from_env(a.store), a.compare


def main(argv: list[str] | None = None) -> int:
    from pipeline.log import setup_logging

    setup_logging(verbose=False)
    try:
        cfg, store, compare = parse_args(argv)
        if compare:
            print(compare_table(store, compare))
        else:
            focus_effect(cfg, store)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
