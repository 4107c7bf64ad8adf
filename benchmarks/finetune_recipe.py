"""Small-data fine-tuning, measured: continue a trained CLIP run with the image tower locked (LiT-style) vs
unlocked, over seeds, and compare throughput, memory and held-out zero-shot accuracy.

    focus-pipeline demo                                            # runs/demo-clip, the starting point
    .venv/bin/python benchmarks/finetune_recipe.py --threads 1     # the README's table (3 seeds, 100 steps)
    .venv/bin/python benchmarks/finetune_recipe.py --seeds 2 --steps 10       # a quick check

Protocol (printed first, before any training): the starting point is a finished run (default runs/demo-clip:
focus-small trained 300 steps from scratch on the demo's 1,000 synthetic images). Each arm continues it on
the same dataset with the same recipe for small data: `--pretrained <run>/model.pt`, lr 1e-4 (a tenth of
the run's), 10 warmup steps then cosine to 0, weight decay 0.1, the run's batch size, image size and
context; seed s in 0..N-1 sets the data order, crops and sampled sentences, identically in both arms. The
arms differ only in `--lock-image` (the image tower frozen, its BatchNorm statistics fixed). Measured per
run: samples/s over the steady windows (the first window, with warm-up, excluded), the process's peak
resident memory (CUDA: the peak of allocated memory too), trainable parameters, and the zero-shot accuracy
on the demo's held-out sets at the middle and the end (`--zeroshot-every`: the final one is what
`eval --run` reports). The unit of replication is the seed: per measure the paired difference locked -
unlocked, its mean and 95% t-interval over seeds. The starting point is scored on the same sets once.

Output: evals/<name>/ with results.md (the table), results.json (every run's figures) and curves.png
(accuracy vs step, per arm and seed).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.config import EvalConfig  # noqa: E402
from evaluation.stage import evaluate  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.log import setup_logging  # noqa: E402
from pipeline.store import Store, check_name  # noqa: E402
from training.config import TrainConfig  # noqa: E402

log = logging.getLogger("finetune_recipe")

TRAIN_ONE = """import json, sys
from pipeline.log import setup_logging
from pipeline.store import Store
from training.train import TrainConfig, train
setup_logging()
train(TrainConfig.from_dict(json.loads(sys.argv[1])), Store(sys.argv[2]))
"""

TASKS = ("synthetic-action", "synthetic-body-state")
ARMS = {"unlocked": False, "locked": True}  # arm -> --lock-image
TRAINING = ("samples_per_s", "max_rss_gb", "peak_mem_gb", "trainable_params")  # from the run's summary
MEASURES = (*TRAINING, *TASKS)


@dataclass(slots=True)
class RecipeConfig:
    base: str = "demo-clip"  # runs/<base>: the trained run every arm continues
    seeds: int = 3
    steps: int = 100
    lr: float = 1e-4
    warmup: int = 10
    weight_decay: float = 0.1
    data_root: str | None = None  # the held-out sets (default: the demo sample's eval/ folder)
    device: str = "cpu"
    threads: int | None = None
    name: str = "finetune-recipe"

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.seeds < 2 or self.steps < 2:
            raise PipelineError("--seeds >= 2 (an interval over seeds needs two) and --steps >= 2 are needed")

    def train_config(self, store: Store, arm: str, seed: int) -> TrainConfig:
        base = store.meta("runs", self.base)
        bcfg = base["config"]
        dataset = next(i["name"] for i in base["inputs"] if i["kind"] == "datasets")
        return TrainConfig(
            dataset=dataset, model_type=bcfg["model_type"], arch=bcfg["arch"],
            name=f"{self.name}-{arm}-s{seed}", pretrained=str(store.path("runs", self.base) / "model.pt"),
            max_steps=self.steps, batch_size=bcfg["batch_size"], image_size=bcfg["image_size"],
            context_length=bcfg["context_length"],
            lr=self.lr, warmup=self.warmup, weight_decay=self.weight_decay, seed=seed, lock_image=ARMS[arm],
            zeroshot_every=self.steps // 2, zeroshot_tasks=TASKS, data_root=self.eval_root(store),
            device=self.device, num_threads=self.threads, overwrite=True,
            extra={"continues": store.ref("runs", self.base)},  # so a re-run reuses only runs of this start
        )  # fmt: skip

    def eval_root(self, store: Store) -> str:
        if self.data_root:
            return self.data_root
        found = sorted(store.cache_dir("demo-sample").glob("*/eval"))
        if len(found) != 1:
            raise PipelineError(
                f"found {len(found)} demo samples under {store.cache_dir('demo-sample')}: pass --data-root "
                "(the sample's eval/ folder)"
            )
        return str(found[0])


def protocol(cfg: RecipeConfig) -> str:
    return (
        f"Protocol (fixed before any result): continue runs/{cfg.base} for {cfg.steps} steps, lr {cfg.lr}, "
        f"warmup {cfg.warmup}, weight decay {cfg.weight_decay}, seeds 0..{cfg.seeds - 1}; arms: "
        f"{', '.join(ARMS)} (--lock-image); zero-shot on {', '.join(TASKS)} at steps {cfg.steps // 2} and "
        f"{cfg.steps}; paired difference locked - unlocked per seed, mean and 95% t-interval."
    )


def run_arm(cfg: RecipeConfig, store: Store, arm: str, seed: int) -> dict[str, Any]:
    """Train one run in a process of its own, so its peak memory and throughput are its own (or reuse it when
    its recorded config and inputs are current); its figures."""
    tcfg = cfg.train_config(store, arm, seed)
    inputs = [store.ref("datasets", tcfg.dataset)]
    if store.is_current("runs", tcfg.name, config=tcfg.resolved().to_dict(), inputs=inputs):
        log.info("reusing runs/%s", tcfg.name)
    else:
        log.info("training runs/%s", tcfg.name)
        child = [sys.executable, "-c", TRAIN_ONE, json.dumps(tcfg.to_dict()), str(store.root)]
        if subprocess.run(child, cwd=ROOT).returncode != 0:
            raise PipelineError(f"training runs/{tcfg.name} failed (its error is above)")
    summary = store.meta("runs", tcfg.name)["summary"]
    rows = [
        json.loads(ln) for ln in (store.path("runs", tcfg.name) / "metrics.jsonl").read_text().splitlines()
    ]
    curve = {
        t: [(r["step"], v) for r in rows for k, v in r.items() if k.startswith(f"zeroshot/{t}/")]
        for t in TASKS
    }
    final = {t: 100 * curve[t][-1][1] for t in TASKS}
    return {"run": tcfg.name, **{m: summary.get(m) for m in TRAINING}, **final, "curve": curve}


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    return float(diffs.mean() - half), float(diffs.mean() + half)


def markdown(cfg: RecipeConfig, runs: dict[str, list[dict]], start: dict[str, float], wall: float) -> str:
    names = {"samples_per_s": "samples/s", "max_rss_gb": "peak RSS (GB)", "peak_mem_gb": "CUDA peak (GB)",
             "trainable_params": "trainable params", "synthetic-action": "actions acc@3 (%)",
             "synthetic-body-state": "body states acc@1 (%)"}  # fmt: skip
    shown = [m for m in MEASURES if all(r[m] is not None for arm in runs.values() for r in arm)]
    lines = [f"| arm | {' | '.join(names[m] for m in shown)} |", "|---" * (len(shown) + 1) + "|"]
    lines.append(f"| start (runs/{cfg.base}) | " + " | ".join(
        f"{start[m]:.2f}" if m in start else "-" for m in shown) + " |")  # fmt: skip
    for arm, rs in runs.items():
        cells = []
        for m in shown:
            v = np.array([r[m] for r in rs], dtype=float)
            cells.append(
                f"{v.mean():,.0f}" if m == "trainable_params" else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"
            )
        lines.append(f"| {arm} | {' | '.join(cells)} |")
    diff_cells = []
    for m in shown:
        d = np.array(
            [lo[m] - un[m] for lo, un in zip(runs["locked"], runs["unlocked"], strict=True)], dtype=float
        )
        lo_, hi_ = t_interval(d) if d.std() > 0 else (d.mean(), d.mean())
        diff_cells.append(
            f"{d.mean():+,.0f}" if m == "trainable_params" else f"{d.mean():+.2f} [{lo_:+.2f}, {hi_:+.2f}]"
        )
    lines.append(f"| locked - unlocked [95% CI] | {' | '.join(diff_cells)} |")
    per_seed = ["", "Per seed (actions / body states, %): " + "; ".join(
        f"{arm} s{s}: {r['synthetic-action']:.2f} / {r['synthetic-body-state']:.2f}"
        for arm, rs in runs.items() for s, r in enumerate(rs))]  # fmt: skip
    return "\n".join([protocol(cfg), "", *lines, *per_seed, "", f"Wall time: {wall:.0f} s.", ""])


def plot(runs: dict[str, list[dict]], start: dict[str, float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.5 * len(TASKS), 3.4))
    for ax, task in zip(axes, TASKS, strict=True):
        for arm, color in zip(runs, ("tab:blue", "tab:orange"), strict=False):
            for s, r in enumerate(runs[arm]):
                steps, acc = zip(*[(0, start[task] / 100), *r["curve"][task]], strict=True)
                ax.plot(steps, [100 * a for a in acc], color=color, marker="o", ms=3, lw=1,
                        label=arm if s == 0 else None)  # fmt: skip
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("zero-shot accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def finetune_recipe(cfg: RecipeConfig, store: Store) -> str:
    """Score the starting point, train every arm and seed, publish evals/<name>; returns the table."""
    print(protocol(cfg), flush=True)
    if not store.exists("runs", cfg.base):
        raise PipelineError(
            f"no runs/{cfg.base} in store {store.root} to continue: `focus-pipeline demo` trains "
            "runs/demo-clip (or pass --base RUN)"
        )
    started = time.perf_counter()
    ecfg = EvalConfig(run=cfg.base, tasks=TASKS, data_root=cfg.eval_root(store), workers=0, device=cfg.device,
                      name=f"{cfg.name}-start", overwrite=True)  # fmt: skip
    base_eval = evaluate(ecfg, store)
    start = {r["task"]: 100 * r["metrics"][f"acc@{r['k']}"] for r in base_eval}
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for seed in range(cfg.seeds):  # arms interleaved, so a change in the machine's load hits both alike
        for arm in ARMS:
            runs[arm].append(run_arm(cfg, store, arm, seed))
    wall = time.perf_counter() - started
    table = markdown(cfg, runs, start, wall)
    inputs = [store.ref("runs", cfg.base)] + [store.ref("runs", r["run"]) for rs in runs.values() for r in rs]
    with store.create("evals", cfg.name, stage="benchmark", config=asdict(cfg), inputs=inputs,
                      overwrite=True) as w:  # fmt: skip
        (w.dir / "results.md").write_text(table)
        (w.dir / "results.json").write_text(json.dumps({"start": start, "runs": runs}, indent=1) + "\n")
        plot(runs, start, w.dir / "curves.png")
    return table


def main(argv: list[str] | None = None) -> int:
    d = RecipeConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=d.base, help="runs/<name> to continue (default: the demo's CLIP run)")
    p.add_argument("--seeds", type=int, default=d.seeds)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--data-root", default=None, help="the held-out sets' folder (default: the demo sample's)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--name", default=d.name, help="evals/<name> in the store")
    p.add_argument("--store", default=None, help="artifact store (default: $FOCUS_STORE or ./artifacts)")
    args = vars(p.parse_args(argv))
    store = Store.from_env(args.pop("store"))
    setup_logging()
    try:
        print(finetune_recipe(RecipeConfig(**{k.replace("-", "_"): v for k, v in args.items()}), store))
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
