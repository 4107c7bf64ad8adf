"""Does FocusCLIP beat CLIP? A multi-seed, paired measurement on the synthetic MPII-style sample.

    .venv/bin/python benchmarks/focus_effect.py                          # the pre-registered default (CPU)
    .venv/bin/python benchmarks/focus_effect.py --seeds 2 --steps 30     # a quick check
    .venv/bin/python benchmarks/focus_effect.py --heatmap uniform        # ablation: all-ones "heatmap"
    .venv/bin/python benchmarks/focus_effect.py --heatmap shuffled       # ablation: another image's heatmap
    .venv/bin/python benchmarks/focus_effect.py --loss ntxent --temperature 0.5   # the paper's loss
    .venv/bin/python benchmarks/focus_effect.py --fixed-alpha --alpha-init 0.5    # alpha not learnt
    .venv/bin/python benchmarks/focus_effect.py --clutter 20 32 --person-height 0.25 0.4   # harder scenes
    .venv/bin/python benchmarks/focus_effect.py --variant independent-views --seeds 3   # a registered variant
    .venv/bin/python benchmarks/focus_effect.py --compare focus-effect fe-uniform   # a table of finished runs
    .venv/bin/python benchmarks/focus_effect.py --device cuda --arch ViT-B-16 --image-size 224 \
        --context-length 77 --steps 2000 --batch-size 128                # a GPU, a real architecture

Protocol (printed first, before any training): one synthetic sample (the demo's generator, sample seed 0)
is converted, described by the rules backend and built into a dataset ONCE; then for every seed s in
0..N-1 CLIP and FocusCLIP are trained with TrainConfig(seed=s): the same initial weights (the open_clip
model is created right after torch.manual_seed(s), before FocusCLIP's alpha), the same batches, crops and
sampled sentences (the loader is a pure function of seed, epoch and step). Both are scored zero-shot on
the same held-out images: the action set (Stanford 40 layout, Acc@3) and the body-state crops (FER2013
layout, Acc@1); and on a validation split drawn from the generator's streams that neither training nor
the test sets use (the layouts' train lists), which the study's screen reads instead of the test sets
(benchmarks/README.md). The unit of replication is the seed: per task the paired difference FocusCLIP -
CLIP per seed, its mean and 95% t-interval over seeds, and an exact two-sided sign-flip permutation test
over seeds (with N seeds the smallest possible p is 2 / 2^N). Beside them, two image-level views that treat
the test set as a sample: a percentile bootstrap over images (each image's difference averaged over seeds,
images resampled) and an exact McNemar test on the pooled (seed, image) pairs (optimistic: the same images
recur in every seed). Runs are named by a hash of everything that determines them, so an ablation that changes
only FocusCLIP reuses the CLIP runs, and a re-run reuses everything it can.

Variants (`--variant`, benchmarks/README.md has each one's hypothesis): independent-views (the masked
view gets its own crop, flip and colour jitter), no-masked-image (L(masked,image) weighted 0),
guided-pooling (the heatmap as a log-prior on the image tower's attention pooling instead of on the
pixels), large (3x the images and 3x the steps). Each changes FocusCLIP only, except large.

Output: evals/<name>/ with results.md (the tables, the verdict by the registered rule, the collapse of
L(masked,image)), results.json (per-seed accuracies, the statistics, the loss-term and alpha curves),
effect.png (difference per seed with the CI; loss terms; alpha and temperature). The last lines printed are
`FocusCLIP - CLIP: <task> mean <x> pts, 95% CI [<lo>, <hi>]`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.artifacts.runs import read_metrics  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.store import Recorded, Store, check_name  # noqa: E402
from pipeline.synthetic import SampleConfig, generate_sample  # noqa: E402
from pipeline.synthetic.sample import write_body_states, write_stanford40  # noqa: E402

log = logging.getLogger("focus_effect")

MODELS = ("clip", "focusclip")
TERMS = ("loss_masked_image", "loss_masked_text", "loss_image_text")
SCREEN_SEEDS = 3  # seeds 0..2: the registered screen (benchmarks/README.md)
TRAJECTORY_STEPS = (1, 10, 20, 50, 100, 200, 300, 600, 900)  # where the collapse table reads L(masked,image)


@dataclass(frozen=True, slots=True)
class Variant:
    """A pre-registered FocusCLIP variant: the EffectConfig settings it changes, and why."""

    hypothesis: str
    settings: dict[str, Any] = field(default_factory=dict)
    scale: int = 1  # training images and steps are multiplied by this


VARIANTS = {
    "default": Variant("the registered FocusCLIP: the masked view is the image with its background dimmed"),
    "independent-views": Variant(
        "L(masked,image) collapses because the masked view is the same picture, dimmed; with its own crop, "
        "flip and colour jitter it becomes an invariance task, and the features it teaches help both tasks",
        {"masked_view": "independent"},
    ),
    "no-masked-image": Variant(
        "the near-zero L(masked,image) term costs accuracy (the uniform control was below CLIP); without it "
        "(weight 0) the masked view is a second view for the text loss only, and the heatmap's gain remains",
        {"loss_weights": (0.0, 1.0, 1.0)},
    ),
    "guided-pooling": Variant(
        "the pixel mask teaches a brightness cue, not where to look; as a log-prior on the attention pooling "
        "(training only) the heatmap teaches the pooling query to weight the person, which eval then uses",
        {"focus_mode": "pooling"},
    ),
    "large": Variant(
        "the default's difference grows with data: the heatmap's gain grows while the extra objective's "
        "cost does not, at 3x the images and 3x the steps",
        scale=3,
    ),
}


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
    # "uniform": all ones, masked = image (the no-information control); "shuffled": the next image's in the
    # batch, so the masked view is dimmed in the wrong place (the no-location control)
    heatmap: str = "keypoints"
    masked_view: str = "shared"  # "independent": the masked view's own crop, flip and jitter
    loss_weights: tuple[float, float, float] = (
        1.0,
        1.0,
        1.0,
    )  # L(masked,image), L(masked,text), L(image,text)
    focus_mode: str = "pixels"  # "pooling": the heatmap as a log-prior on the image tower's attention pooling
    variant: str = "default"  # the VARIANTS entry these settings came from
    clutter: tuple[int, int] = (8, 18)  # distractor shapes per image (the generator's default)
    person_height: tuple[float, float] | None = None  # fraction of the image height (None: by people count)
    action_test_per_class: int = 30
    state_test_per_class: int = 40
    val_action_per_class: int = 30  # the validation split: the action layout's train list
    val_state_per_class: int = 40  # and the body-state layout's train folders
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
        if self.heatmap not in ("keypoints", "uniform", "shuffled"):
            raise PipelineError(f"--heatmap must be keypoints, uniform or shuffled, not {self.heatmap!r}")
        if self.loss not in ("infonce", "ntxent"):
            raise PipelineError(f"--loss must be infonce or ntxent, not {self.loss!r}")
        if self.variant not in VARIANTS:
            raise PipelineError(f"--variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}")

    def with_variant(self, name: str) -> EffectConfig:
        """These settings with the variant's applied (large: images and steps times its scale)."""
        if name not in VARIANTS:
            raise PipelineError(f"--variant must be one of {', '.join(VARIANTS)}, not {name!r}")
        v = VARIANTS[name]
        return replace(
            self, variant=name, images=self.images * v.scale, steps=self.steps * v.scale, **v.settings
        )

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

    @property
    def validation(self) -> SampleConfig:
        """The validation sets: the eval layouts' train lists, streams that training and the test sets never
        draw from (pipeline/synthetic/sample.py); no training images and no test images are rendered."""
        return replace(
            self.sample, images=1, action_train_per_class=self.val_action_per_class, action_test_per_class=0,
            state_train_per_class=self.val_state_per_class, state_test_per_class=0,
        )  # fmt: skip

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
            cfg.masked_view, cfg.loss_weights, cfg.focus_mode = (
                self.masked_view,
                tuple(self.loss_weights),
                self.focus_mode,
            )
        return cfg


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def protocol(cfg: EffectConfig) -> str:
    t = "learnt (init 0.07)" if cfg.temperature is None else f"fixed {cfg.temperature}"
    alpha = f"{'learnt' if cfg.learn_alpha else 'fixed'}, init {cfg.alpha_init}"
    person = "by people count" if cfg.person_height is None else f"{cfg.person_height} of the image height"
    weights = ", ".join(f"{w:g}" for w in cfg.loss_weights)
    return "\n".join([
        "Protocol (fixed before any result):",
        f"  variant   {cfg.variant}: {VARIANTS[cfg.variant].hypothesis}",
        f"  data      synthetic MPII-style sample, seed 0: {cfg.images} training images, clutter "
        f"{cfg.clutter[0]}-{cfg.clutter[1]} shapes, person height {person}; rules describer",
        f"  test      synthetic actions: {cfg.action_test_per_class}/class x 10 (Acc@3); synthetic body "
        f"states: {cfg.state_test_per_class}/class x 3 (Acc@1)",
        f"  models    CLIP and FocusCLIP, {cfg.arch} from scratch, {cfg.image_size} px, context "
        f"{cfg.context_length}, recipe {cfg.recipe}, lr {cfg.lr or 'of the recipe'}, batch {cfg.batch_size}, "
        f"{cfg.steps} steps, device {cfg.device}",
        f"  loss      {cfg.loss}, temperature {t}; FocusCLIP alpha {alpha}; heatmap {cfg.heatmap}; masked "
        f"view {cfg.masked_view}; focus via {cfg.focus_mode}; weights of L(m,i), L(m,t), L(i,t) {weights}",
        f"  validate  the generator's unused streams: actions {cfg.val_action_per_class}/class, body states "
        f"{cfg.val_state_per_class}/class (the screen reads these, never the test sets)",
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


def prepare_validation(cfg: EffectConfig, store: Store) -> Path:
    """The validation sets in the eval layout (stanford40/, fer2013/; their train split), once per config."""
    val = cfg.validation
    root = store.cache_dir("focus-effect-validation") / _key(val.to_dict())
    if not (root / "done.json").is_file():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        counts = {"actions": write_stanford40(val, tmp / "stanford40"),
                  "body_states": write_body_states(val, tmp / "fer2013")}  # fmt: skip
        (tmp / "done.json").write_text(json.dumps({"config": val.to_dict(), "counts": counts}, default=str))
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root


def validation_tasks(tasks) -> tuple:
    """The test tasks read from the layouts' train lists."""
    return tuple(replace(t, split="train") for t in tasks)


# ---- training and per-image scoring ---------------------------------------------------------------------
def train_or_reuse(cfg: EffectConfig, store: Store, dataset: str, model_type: str, seed: int) -> str:
    """runs/fe-<model>-s<seed>-<hash of the train config and the dataset's fingerprint>."""
    from training.config import FOCUS_VARIANT_DEFAULTS
    from training.train import train

    tcfg = cfg.train_config(dataset, model_type, seed)
    fields = {k: v for k, v in tcfg.to_dict().items() if k not in ("name", "overwrite", "num_threads")}
    for k, default in FOCUS_VARIANT_DEFAULTS.items():  # settings added later: at their default, the name
        if json.dumps(fields[k]) == json.dumps(default):  # (and the run) are those made before they existed
            del fields[k]
    run = f"fe-{model_type}-s{seed}-{_key([fields, store.meta('datasets', dataset)['fingerprint']])}"
    if store.exists("runs", run):
        log.info("reusing runs/%s", run)
    else:
        tcfg.name = run
        train(tcfg, store)
    return run


def image_hits(
    store: Store, run: str, sets: dict[str, tuple[Sequence, Path]], device: str
) -> dict[str, dict[str, np.ndarray]]:
    """Per set (test, validation) and task, (N,) bool: each image's top-k hit, with the eval stage's own
    reader, prompts and scorer (evaluation.scoring), so the mean equals what `focus-pipeline eval` reports."""
    from evaluation.config import EvalConfig
    from evaluation.stage import load

    m = load(EvalConfig(run=run, device=device), store)
    return {name: _set_hits(store, m, run, tasks, root) for name, (tasks, root) in sets.items()}


def _set_hits(store: Store, m, run: str, tasks, eval_root: Path) -> dict[str, np.ndarray]:
    from evaluation import metrics
    from evaluation.data import EvalDataset
    from evaluation.readers.base import ReaderInput
    from evaluation.scoring import class_weights, score
    from pipeline.demo import eval_paths

    out = {}
    for task in tasks:
        root = Path(eval_paths(eval_root)[task.dataset])  # the set's folder in the layout the reader reads
        read = task.read(ReaderInput(root=root, split=task.split))
        classes = list(task.classes or read.classes)
        index = {c: i for i, c in enumerate(classes)}
        samples = [s for s in read.samples if s.labels.get(task.label) in index]
        labels = np.array([index[s.labels[task.label]] for s in samples])
        weights = class_weights(m, [task.prompt_name(c) for c in classes], task.select_templates("paper"))
        dataset = EvalDataset(samples, m.preprocess, store.cache_dir("eval-frames") / task.dataset)
        desc = f"{run} {task.id}" + ("" if task.split == "test" else f" ({task.split})")
        scores, loaded, _ = score(m, dataset, weights, batch_size=64, workers=0, desc=desc)
        if not loaded.all():
            raise PipelineError(f"{root}: {int((~loaded).sum())} test images unreadable")
        out[task.id] = metrics.topk_hits(scores, labels, task.k)
    return out


def curves(store: Store, run: str) -> dict[str, list[float]]:
    rows = read_metrics(store.path("runs", run))
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


def summarize(
    cfg: EffectConfig, hits: dict[str, dict[int, dict[str, np.ndarray]]], tasks, seeds: Sequence[int]
) -> dict[str, Any]:
    """Per task, over `seeds` (at least two): per-seed accuracies and differences, the t-CI and sign-flip p
    over seeds, the image-level bootstrap and McNemar, and the verdict by the registered rule."""
    out = {}
    for task in tasks:
        h = {m: np.stack([hits[m][s][task.id] for s in seeds]) for m in MODELS}
        acc = {m: 100 * h[m].mean(axis=1) for m in MODELS}
        diffs = acc["focusclip"] - acc["clip"]
        lo, hi = t_interval(diffs)
        blo, bhi = bootstrap_interval(h["focusclip"], h["clip"], cfg.bootstrap)
        b, c, p_mc = mcnemar_p(h["focusclip"].ravel(), h["clip"].ravel())
        out[task.id] = {
            "title": task.name, "k": task.k, "n_images": int(h["clip"].shape[1]),
            "acc": {m: acc[m].tolist() for m in MODELS}, "diff": diffs.tolist(), "mean": float(diffs.mean()),
            "ci": [lo, hi], "sign_flip_p": sign_flip_p(diffs), "bootstrap_ci": [blo, bhi],
            "mcnemar": {"focus_only": b, "clip_only": c, "p": p_mc}, "seeds": list(seeds),
        }  # fmt: skip
        out[task.id]["verdict"] = verdict(out[task.id])
    return out


def verdict(t: dict[str, Any]) -> str:
    """The registered decision rule: better only if the 95% t-CI over seeds lies above 0 and the sign-flip
    p < 0.05; worse if the interval lies below 0; otherwise no difference detected."""
    if t["ci"][0] > 0 and t["sign_flip_p"] < 0.05:
        return "beats CLIP"
    if t["ci"][1] < 0:
        return "worse than CLIP"
    return "no difference detected"


def survives_screen(validation: dict[str, Any]) -> bool:
    """The registered screen (seeds 0..2, validation split): go on to 12 seeds if the mean difference
    FocusCLIP - CLIP is above 0 on at least one task."""
    return any(t["mean"] > 0 for t in validation.values())


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = np.argsort(ps)
    adjusted = np.empty(len(ps))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted.tolist()


# ---- report ---------------------------------------------------------------------------------------------
def _mean_curve(runs: list[dict[str, list[float]]], key: str) -> np.ndarray:
    n = min(len(r[key]) for r in runs)
    return np.mean([r[key][:n] for r in runs], axis=0)


def collapse_row(cfg: EffectConfig, runs: list[dict[str, list[float]]]) -> dict[str, Any]:
    """FocusCLIP's L(masked,image) over training: its mean (min, max) over seeds at TRAJECTORY_STEPS and at
    the end (last 10% of steps), its floor at the final temperature, the term's weight, alpha at the start
    and end, the final temperature, and the step from which it stays below 0.05, per seed."""
    mi = [r["loss_masked_image"] for r in runs]
    steps = [s for s in TRAJECTORY_STEPS if s <= cfg.steps]
    tail = max(1, cfg.steps // 10)
    final_t = float(np.mean([np.mean(r["temperature"][-tail:]) for r in runs]))
    return {
        "trajectory": {s: [float(np.mean([c[s - 1] for c in mi])), float(min(c[s - 1] for c in mi)),
                           float(max(c[s - 1] for c in mi))] for s in steps},
        "end": float(np.mean([np.mean(c[-tail:]) for c in mi])),
        "floor": loss_floor(cfg.loss, final_t, cfg.batch_size),
        "weight": float(cfg.loss_weights[0]),
        "alpha": [float(np.mean([r["alpha"][i] for r in runs])) for i in (0, -1)],
        "temperature": final_t,
        "collapse_steps": [collapse(c) for c in mi],
    }  # fmt: skip


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


def _paired_table(stats: dict[str, Any]) -> list[str]:
    lines = [
        "| Task | n images | CLIP mean | FocusCLIP mean | diff mean | 95% t-CI (seeds) | sign-flip p | "
        "95% bootstrap CI (images) | McNemar F-only / C-only, p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in stats.values():
        mc = t["mcnemar"]
        lines.append(
            f"| {t['title']} (Acc@{t['k']}) | {t['n_images']} | {np.mean(t['acc']['clip']):.2f} | "
            f"{np.mean(t['acc']['focusclip']):.2f} | {t['mean']:+.2f} | {_fmt_ci(t['ci'])} | "
            f"{t['sign_flip_p']:.3f} | {_fmt_ci(t['bootstrap_ci'])} | "
            f"{mc['focus_only']} / {mc['clip_only']}, {mc['p']:.3f} | {t['verdict']} |"
        )
    return lines


def _seed_table(stats: dict[str, Any]) -> list[str]:
    seeds = next(iter(stats.values()))["seeds"]
    head = "| Seed | " + " | ".join(f"{t['title']} CLIP | FocusCLIP | diff" for t in stats.values()) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(stats))]
    for i, s in enumerate(seeds):
        cells = [str(s)]
        for t in stats.values():
            cells += [f"{t['acc']['clip'][i]:.2f}", f"{t['acc']['focusclip'][i]:.2f}", f"{t['diff'][i]:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _collapse_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One row per (label, collapse_row); the trajectory columns are the steps every row reached."""
    steps = sorted(set.intersection(*(set(map(int, r["trajectory"])) for _, r in rows)))
    lines = [
        "| Setting | " + " | ".join(f"L(m,i) step {s}" for s in steps) + " | end | floor at final T | "
        "weight | alpha start -> end | T | < 0.05 from step (per seed) |",
        "|" + "---|" * (len(steps) + 7),
    ]
    for label, r in rows:
        traj = {int(k): v for k, v in r["trajectory"].items()}
        cells = [label] + [f"{traj[s][0]:.3f} ({traj[s][1]:.3f}-{traj[s][2]:.3f})" for s in steps]
        cells += [f"{r['end']:.3f}", f"{r['floor']:.4f}", f"{r['weight']:g}",
                  f"{r['alpha'][0]:.3f} -> {r['alpha'][1]:.3f}", f"{r['temperature']:.4f}",
                  ", ".join("never" if s is None else str(s) for s in r["collapse_steps"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(cfg: EffectConfig, result: dict[str, Any], wall: float) -> str:
    stats, train_rows = result["stats"], result["training"]
    lines = [f"# FocusCLIP vs CLIP: {cfg.name}", "", "```", protocol(cfg), "```", ""]
    lines += ["## Accuracy per seed (%)", "", *_seed_table(stats)]
    lines += ["", "## Paired difference FocusCLIP - CLIP (points)", "", *_paired_table(stats)]
    lines += [
        "",
        "Verdict: the registered rule (benchmarks/README.md) on the 95% t-CI over seeds and the sign-flip p.",
    ]
    if "unscreened" in result:
        seeds = result["unscreened"][next(iter(stats))]["seeds"]
        lines += ["", f"## Seeds {seeds[0]}..{seeds[-1]} only (the seeds the 3-seed screen did not see)", ""]
        lines += _paired_table(result["unscreened"])
    val = result["validation"]
    lines += ["", "## Validation split (what the screen reads; not the test sets)", "", *_paired_table(val)]
    screen = result["screen"]
    means = ", ".join(f"{t}: {m:+.2f}" for t, m in screen["mean"].items())
    lines += ["", f"Screen (seeds {screen['seeds'][0]}..{screen['seeds'][-1]}, validation): mean difference "
              f"{means}; survives: {'yes' if screen['survives'] else 'no'}."]  # fmt: skip
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
    lines += ["", "## Collapse of L(masked,image): mean (min-max) over seeds", ""]
    lines += _collapse_table([(cfg.variant, result["collapse"])])
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
    ax2.set_yscale("log")  # L(masked,image) ends two orders of magnitude below the others
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
    fig.suptitle(f"{cfg.name}: variant {cfg.variant}, {cfg.seeds} seeds, {cfg.steps} steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


_NOT_A_SETTING = ("seeds", "name", "threads", "device", "bootstrap")


def compare_table(store: Store, names: list[str]) -> str:
    """For finished evals/<name> of this script: one row per eval with the settings that differ from the
    defaults, the per-task means, paired difference, t-CI, sign-flip p and verdict, and FocusCLIP's end-of-run
    L(masked,image) (its floor at the final temperature), alpha and T; Holm-adjusted p over the table's tests;
    each eval's FocusCLIP against the first eval's, paired by seed; then the screen (validation, seeds 0..2)
    and the collapse of L(masked,image), for evals that have them."""
    defaults = json.loads(json.dumps(asdict(EffectConfig())))
    lines, ps, screens, collapses, versus = [], [], [], [], []
    first: dict[str, Any] | None = None
    for name in names:
        config = store.meta("evals", name)["config"]
        result = json.loads((store.path("evals", name) / "results.json").read_text())
        changed = [f"{k}={v}" for k, v in config.items() if k not in _NOT_A_SETTING and v != defaults.get(k)]
        label = ", ".join(changed) or "default"
        stats = result["stats"]
        if not lines:
            head = " | ".join(f"{t['title']} CLIP / FocusCLIP, diff [95% CI], p" for t in stats.values())
            lines += [f"| Setting | Seeds | {head} | Verdicts | L(m,i) end (floor) | alpha | T |",
                      "|" + "---|" * (6 + len(stats))]  # fmt: skip
        cells = [label, str(config["seeds"])]
        for t in stats.values():
            clip, focus = np.mean(t["acc"]["clip"]), np.mean(t["acc"]["focusclip"])
            cells.append(
                f"{clip:.1f} / {focus:.1f}, {t['mean']:+.2f} {_fmt_ci(t['ci'])}, {t['sign_flip_p']:.3f}"
            )
            ps.append(t["sign_flip_p"])
        cells.append("; ".join(t.get("verdict") or verdict(t) for t in stats.values()))
        f = next(r for r in result["training"] if r["model"] == "focusclip")
        cells += [f"{f['final_loss_masked_image']:.3f} ({f['floor_final_T']:.3f})", f"{f['final_alpha']:.3f}",
                  f"{f['final_temperature']:.3f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
        if first is None:
            first = stats
        else:
            versus.append((name, label, _versus(first, stats)))
        if "screen" in result:
            screens.append((name, label, result["screen"]))
        if "collapse" in result:
            collapses.append((name, result["collapse"]))
    adjusted = ", ".join(f"{p:.3f}" for p in holm(ps))
    lines += ["", f"Holm-adjusted sign-flip p over the {len(ps)} tests above, row by row: {adjusted}"]
    if versus:
        lines += ["", f"FocusCLIP minus {names[0]}'s FocusCLIP, paired by seed (seeds both have):", ""]
        head = " | ".join(f"{t['title']} diff [95% CI], p" for t in first.values())
        lines += [f"| Eval | Setting | Seeds | {head} |", "|" + "---|" * (3 + len(first))]
        for name, label, rows in versus:
            cells = [f"{r['mean']:+.2f} {_fmt_ci(r['ci'])}, {r['p']:.3f}" for r in rows.values()]
            lines.append(
                f"| {name} | {label} | {next(iter(rows.values()))['n']} | " + " | ".join(cells) + " |"
            )
    if screens:
        lines += ["", "Screen (validation split):", ""]
        lines += ["| Eval | Setting | Seeds | mean difference per task | survives |", "|---|---|---|---|---|"]
        for name, label, sc in screens:
            means = ", ".join(f"{t} {m:+.2f}" for t, m in sc["mean"].items())
            seeds = f"{sc['seeds'][0]}..{sc['seeds'][-1]}"
            lines.append(f"| {name} | {label} | {seeds} | {means} | {'yes' if sc['survives'] else 'no'} |")
    if collapses:
        lines += [
            "",
            "Collapse of L(masked,image), mean (min-max) over seeds:",
            "",
            *_collapse_table(collapses),
        ]
    return "\n".join(lines)


def _versus(first: dict[str, Any], other: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: other's FocusCLIP accuracy minus first's, seed by seed over the seeds both have."""
    out = {}
    for task, t in first.items():
        n = min(len(t["acc"]["focusclip"]), len(other[task]["acc"]["focusclip"]))
        diffs = np.array(other[task]["acc"]["focusclip"][:n]) - np.array(t["acc"]["focusclip"][:n])
        out[task] = {"mean": float(diffs.mean()), "ci": t_interval(diffs), "p": sign_flip_p(diffs), "n": n}
    return out


def ci_line(t: dict[str, Any], task_id: str) -> str:
    lo, hi = t["ci"]
    return f"FocusCLIP - CLIP: {task_id} mean {t['mean']:+.2f} pts, 95% CI [{lo:+.2f}, {hi:+.2f}]"


# ---- the entry function ---------------------------------------------------------------------------------
def focus_effect(cfg: EffectConfig, store: Store) -> dict[str, Any]:
    """Prepare the data, train and score both models per seed, publish evals/<name>; returns the results."""
    from pipeline.demo import eval_tasks

    print(protocol(cfg), flush=True)
    started = time.perf_counter()
    dataset, layout = prepare_dataset(cfg, store)
    tasks = eval_tasks()
    sets = {
        "test": (tasks, layout.eval_root),
        "validation": (validation_tasks(tasks), prepare_validation(cfg, store)),
    }
    hits: dict[str, dict[str, dict[int, dict[str, np.ndarray]]]] = {k: {m: {} for m in MODELS} for k in sets}
    runs: dict[str, list[dict[str, list[float]]]] = {m: [] for m in MODELS}
    names: dict[str, list[str]] = {m: [] for m in MODELS}
    for seed in range(cfg.seeds):
        for m in MODELS:
            run = train_or_reuse(cfg, store, dataset, m, seed)
            names[m].append(run)
            for split, by_task in image_hits(store, run, sets, cfg.device).items():
                hits[split][m][seed] = by_task
            runs[m].append(curves(store, run))
        log.info("seed %d done (%.0f s so far)", seed, time.perf_counter() - started)
    result = analyse(cfg, hits, runs, tasks)
    result.update(runs=names, wall_s=time.perf_counter() - started)
    report = markdown(cfg, result, result["wall_s"])
    inputs = [store.ref("datasets", dataset)] + [store.ref("runs", r) for m in MODELS for r in names[m]]
    with store.create("evals", cfg.name, stage="benchmark", config=Recorded.plain(asdict(cfg)), inputs=inputs,
                      overwrite=True) as w:  # fmt: skip
        (w.dir / "results.md").write_text(report)
        (w.dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(cfg, result["stats"], runs, w.dir / "effect.png")
        w.counts.update(seeds=cfg.seeds, runs=2 * cfg.seeds, tasks=len(result["stats"]))
    print(report, flush=True)
    print(f"report: {store.path('evals', cfg.name) / 'results.md'}")
    for task_id, t in result["stats"].items():
        print(ci_line(t, task_id), flush=True)
    return result


def analyse(cfg: EffectConfig, hits, runs: dict[str, list[dict[str, list[float]]]], tasks) -> dict[str, Any]:
    """The statistics of the test sets over all seeds (and over the seeds after the screen's, when there
    are at least two), of the validation split, the screen's verdict, the training rows and the collapse."""
    seeds = list(range(cfg.seeds))
    screen_seeds = seeds[:SCREEN_SEEDS]
    validation = summarize(cfg, hits["validation"], validation_tasks(tasks), seeds)
    screened = summarize(cfg, hits["validation"], validation_tasks(tasks), screen_seeds)
    result: dict[str, Any] = {
        "stats": summarize(cfg, hits["test"], tasks, seeds),
        "validation": validation,
        "screen": {"seeds": screen_seeds, "mean": {t: v["mean"] for t, v in screened.items()},
                   "survives": survives_screen(screened)},
        "training": training_rows(cfg, runs),
        "collapse": collapse_row(cfg, runs["focusclip"]),
        "curves": {m: {k: _mean_curve(runs[m], k).tolist() for k in runs[m][0]} for m in MODELS},
    }  # fmt: skip
    if len(seeds) - SCREEN_SEEDS >= 2:
        result["unscreened"] = summarize(cfg, hits["test"], tasks, seeds[SCREEN_SEEDS:])
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
    p.add_argument("--heatmap", default=d.heatmap, choices=["keypoints", "uniform", "shuffled"])
    p.add_argument(
        "--variant",
        default=d.variant,
        choices=list(VARIANTS),
        help="a pre-registered FocusCLIP variant (benchmarks/README.md); default name fe-<variant>",
    )
    p.add_argument("--masked-view", default=d.masked_view, choices=["shared", "independent"])
    p.add_argument("--loss-weights", type=float, nargs=3, default=d.loss_weights, metavar=("MI", "MT", "IT"))
    p.add_argument("--focus-mode", default=d.focus_mode, choices=["pixels", "pooling"])
    p.add_argument("--clutter", type=int, nargs=2, default=d.clutter, metavar=("MIN", "MAX"))
    p.add_argument("--person-height", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    p.add_argument("--action-per-class", type=int, default=d.action_test_per_class)
    p.add_argument("--state-per-class", type=int, default=d.state_test_per_class)
    p.add_argument("--val-action-per-class", type=int, default=d.val_action_per_class)
    p.add_argument("--val-state-per-class", type=int, default=d.val_state_per_class)
    p.add_argument("--bootstrap", type=int, default=d.bootstrap)
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--name", default=None, help=f"evals/<name> in the store (default {d.name})")
    p.add_argument("--store", default=None, help="artifact store (default: $FOCUS_STORE or ./artifacts)")
    p.add_argument("--compare", nargs="+", metavar="NAME", help="only print the table of finished evals/NAME")
    a = p.parse_args(argv)
    cfg = EffectConfig(
        seeds=a.seeds, steps=a.steps, images=a.images, batch_size=a.batch_size, arch=a.arch, recipe=a.recipe,
        image_size=a.image_size, context_length=a.context_length, lr=a.lr, loss=a.loss,
        temperature=a.temperature, alpha_init=a.alpha_init, learn_alpha=not a.fixed_alpha, heatmap=a.heatmap,
        clutter=tuple(a.clutter), person_height=None if a.person_height is None else tuple(a.person_height),
        masked_view=a.masked_view, loss_weights=tuple(a.loss_weights), focus_mode=a.focus_mode,
        action_test_per_class=a.action_per_class, state_test_per_class=a.state_per_class,
        val_action_per_class=a.val_action_per_class, val_state_per_class=a.val_state_per_class,
        bootstrap=a.bootstrap, device=a.device, threads=a.threads,
        name=a.name or (d.name if a.variant == "default" else f"fe-{a.variant}"),
    ).with_variant(a.variant)  # fmt: skip
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
