"""Zero-shot evaluation while training (`train --zeroshot-every N --zeroshot-tasks ID,... --data-root DIR`):
every N steps and at the last, the model being trained is scored on the tasks by the evaluation package
itself (evaluation/scoring.py evaluate_task: the same readers, prompts, classifier and metrics as `eval`),
with the run's own preprocessing, so the last evaluation is what `eval --run` reports for the published run.

    zs = ZeroShotEval.create(cfg, model=model, preprocess=pp, tokenizer=tok, device=dev, store=store,
                             out=run_dir / "zeroshot")      # checks each task's data first
    metrics = zs.evaluate(step)    # {"zeroshot/<task>/acc@<k>": acc}; writes out/step-NNNNNN_<task>.json

Each evaluation writes one CLIP_benchmark result file per task (its schema plus "step"; "pretrained" is
runs/<name>@<step>), so `clip_benchmark build runs/<name>/zeroshot --output curve.csv` tabulates the run's
curve. An evaluation does not touch the training: the model goes back to training mode and every random
number generator to its state (a run with and without --zeroshot-every takes the very same steps). In a
torchrun job only rank 0 evaluates; the trainer holds the other ranks at a barrier meanwhile.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evaluation.config import EvalConfig
from evaluation.data_check import check_task, dataset_hint
from evaluation.scoring import Model, dataset_roots, evaluate_task
from evaluation.tasks import TASKS, Task
from pipeline.artifacts.evals import clip_benchmark_record
from pipeline.errors import PipelineError
from pipeline.store import Store
from training.checkpoint import rng_state, set_rng_state
from training.config import TrainConfig
from training.metrics_log import ZEROSHOT_PREFIX
from training.model import FocusCLIP
from training.preprocess import Preprocess

log = logging.getLogger(__name__)

ZEROSHOT_DIR = "zeroshot"  # runs/<name>/zeroshot/
STEP_FILE = "step-{step:06d}_{task}.json"


def zeroshot_tasks(ids: tuple[str, ...]) -> list[Task]:
    """The registry's tasks of these ids, or a one-line error naming the unknown ones."""
    unknown = [t for t in ids if t not in TASKS]
    if unknown:
        raise PipelineError(
            f"--zeroshot-tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}"
        )
    return [TASKS[t] for t in ids]


def due(step: int, *, every: int | None, total: int) -> bool:
    """Is there an evaluation after this step: every `every` steps, and at the run's last step."""
    return bool(every) and (step % every == 0 or step == total)


@dataclass
class ZeroShotEval:
    run: str
    trained: FocusCLIP  # switched to eval mode and back (it keeps a locked tower's norms fixed)
    model: Model  # its open_clip model, as evaluation/scoring.py scores one
    tasks: list[Task]
    eval_cfg: EvalConfig
    roots: dict[str, Path]
    cache_dir: Path
    out: Path

    @classmethod
    def create(
        cls,
        cfg: TrainConfig,
        *,
        model: FocusCLIP,
        preprocess: Preprocess,
        tokenizer: Any,
        device: torch.device,
        store: Store,
        out: Path,
    ) -> ZeroShotEval:
        """The evaluation `eval --run` would run (its defaults: the paper's prompts, batch 64), on the model
        being trained; every task's data is checked now, so a missing folder fails the run before step 1."""
        tasks = zeroshot_tasks(cfg.zeroshot_tasks)
        # workers=0: no DataLoader processes forked from a training process (and its process group)
        eval_cfg = EvalConfig(
            run=cfg.name, tasks=tuple(cfg.zeroshot_tasks), data_root=cfg.data_root, workers=0
        )
        roots = dataset_roots(eval_cfg, tasks)
        for task in tasks:
            found = check_task(
                task, roots[task.dataset], eval_cfg.split_for(task), roots, eval_cfg.options_for(task)
            )
            if found.status != "found":
                raise PipelineError(
                    f"--zeroshot-tasks {task.id}: {found.status}, {found.message or 'no samples'} "
                    f"(--data-root {cfg.data_root}); {dataset_hint(task)}"
                )
        scored = Model(model.clip, preprocess.transform(), tokenizer, device, cfg.arch, f"runs/{cfg.name}")
        return cls(cfg.name, model, scored, tasks, eval_cfg, roots, store.cache_dir("eval-frames"), out)

    def evaluate(self, step: int) -> dict[str, float]:
        """Score every task on the model as it is after `step`; returns metrics.jsonl's keys for them."""
        state = rng_state()
        was_training = self.trained.training
        self.trained.eval()
        try:
            results = [
                evaluate_task(t, self.model, self.eval_cfg, self.roots, self.cache_dir) for t in self.tasks
            ]
        finally:
            self.trained.train(was_training)
            set_rng_state(state)
        self.out.mkdir(parents=True, exist_ok=True)
        values = {}
        for r in results:
            # its data was checked at set-up, so this is a load or scoring failure (out of memory, say)
            if r["status"] != "ok":
                log.error("zero-shot at step %d: %s not scored: %s", step, r["task"], r.get("message", ""))
                continue
            record = {**clip_benchmark_record(r), "pretrained": f"runs/{self.run}@{step}", "step": step}
            path = self.out / STEP_FILE.format(step=step, task=r["task"])
            path.write_text(json.dumps(record, indent=2) + "\n")
            values[f"{ZEROSHOT_PREFIX}{r['task']}/acc@{r['k']}"] = r["metrics"][f"acc@{r['k']}"]
        log.info(
            "zero-shot at step %d: %s",
            step,
            ", ".join(f"{k.removeprefix(ZEROSHOT_PREFIX)} {100 * v:.2f}%" for k, v in values.items()),
        )
        return values


def drop_evaluations_after(out: Path, step: int) -> None:
    """--resume from `step`: the evaluations of later steps are redone, so their files go."""
    if not out.is_dir():
        return
    for path in out.glob("step-*_*.json"):
        if int(path.name.removeprefix("step-").split("_", 1)[0]) > step:
            path.unlink()
