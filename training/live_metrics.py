"""Live metrics for long runs: every metrics.jsonl record also goes to TensorBoard and/or Weights & Biases,
as open_clip_train's --report-to does. Both are optional (`pip install 'focus-pipeline[live]'`).

    live = LiveMetrics.open(["tensorboard", "wandb"], run_dir, name="mpii-focusclip", config=cfg.to_dict())
    live.log({"step": 10, "loss": 2.31, "lr": 1e-3, "zeroshot/fer2013-emotion/acc@3": 0.41})
    live.close()

    tensorboard --logdir artifacts/runs/mpii-focusclip/tensorboard

Scalars are logged at the record's step under train/<key> (keys that already have a prefix, such as
zeroshot/<task>/acc@k, keep it); None and non-numbers are left out. TensorBoard's event files go to
<run>/tensorboard/. W&B runs offline unless WANDB_MODE says otherwise or WANDB_API_KEY is set (no login
prompt, nothing leaves the machine unasked); its files go to <run>/wandb/, and
`wandb sync <run>/wandb/offline-*` uploads them later. A resumed run appends to the same W&B run (its id
is kept in <run>/wandb-id.txt); in TensorBoard the steps between the checkpoint and the interruption
appear twice, the later value shown. The config is redacted (pipeline.store.redact) before W&B gets it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.store import redact

log = logging.getLogger(__name__)

BACKENDS = ("tensorboard", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def parse_report_to(values: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """--report-to as given (repeated or comma-separated, open_clip_train's "wandb,tensorboard"), checked."""
    names = tuple(dict.fromkeys(v.strip() for value in values or () for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise PipelineError(f"--report-to {', '.join(unknown)}: one of {', '.join(BACKENDS)}")
    for name in names:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise PipelineError(
                f"--report-to {name} needs the {_PACKAGES[name]} package: pip install 'focus-pipeline[live]'"
            )
    return names


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers, keyed as the live backends show them."""
    out = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key if "/" in key else f"train/{key}"] = float(value)
    return out


@dataclass(slots=True)
class LiveMetrics:
    writers: list[Any] = field(default_factory=list)  # torch SummaryWriter(s)
    wandb_run: Any = None

    @classmethod
    def open(
        cls, report_to: tuple[str, ...], run_dir: Path, *, name: str, config: dict[str, Any]
    ) -> LiveMetrics:
        live = cls()
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            live.writers.append(SummaryWriter(log_dir=str(run_dir / "tensorboard")))
        if "wandb" in report_to:
            live.wandb_run = _wandb_run(run_dir, name, config)
        return live

    def log(self, record: dict[str, Any]) -> None:
        values, step = scalars(record), int(record["step"])
        for writer in self.writers:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _wandb_run(run_dir: Path, name: str, config: dict[str, Any]):
    import wandb  # the optional wandb package

    id_file = run_dir / "wandb-id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    log.info("W&B run %s (%s) in %s", run_id, mode, run_dir / "wandb")
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "focus-pipeline"),
        name=name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        mode=mode,
        config=redact(config),
    )
