"""The training loop's metrics: one device tensor per step, fetched in one transfer per window, written to
metrics.jsonl (one line per optimizer step), shown on the progress bar, and summed up for the run's summary.

    log = MetricsLog.open(path, terms=["loss_image_text"], focus=False, steps_per_epoch=31, global_batch=32,
                          bar=progress(total=300, desc="train"))
    log.add(step, values, lr, batch.text_stats)   # values: loss, its terms, [alpha,] logit scale, grad norm
    log.flush(trainer.last_good)                  # the window's one host sync; a NaN/inf loss stops the run

The step never waits on the device: nothing here touches a tensor until flush().
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from pipeline.errors import PipelineError
from training.live_metrics import LiveMetrics

TEXT_STATS = ("captions", "truncated", "sentences_total", "sentences_kept")


@dataclass(slots=True)
class MetricsLog:
    terms: list[str]
    focus: bool
    steps_per_epoch: int
    global_batch: int
    bar: Any  # a tqdm bar (disabled on the other ranks of a DDP run)
    file: IO[str] | None = None  # metrics.jsonl, opened for appending on the main process only
    live: LiveMetrics | None = None  # --report-to: TensorBoard / W&B get every record too
    pending: list[tuple[int, torch.Tensor, float, Any]] = field(default_factory=list)
    text: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TEXT_STATS, 0))
    history: list[float] = field(default_factory=list)
    first_loss: float | None = None
    last_loss: float | None = None
    flushes: int = 0
    steady_steps: int = 0  # steps and seconds after the first window (compilation, allocator warm-up)
    steady_time: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    t_window: float = field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, path: Path | None, **kwargs: Any) -> MetricsLog:
        return cls(file=open(path, "a") if path is not None else None, **kwargs)  # noqa: SIM115 (close())

    def add(self, step: int, values: torch.Tensor, lr: float, text_stats: Any) -> None:
        for key in TEXT_STATS:
            self.text[key] += getattr(text_stats, key)
        self.pending.append((step, values, lr, text_stats))

    def flush(self, last_good: Callable[[], str]) -> None:
        """Fetch the window's values, write one line per step, update the bar; last_good() (where the run
        can be resumed from) goes into the error a non-finite loss raises."""
        if not self.pending:
            return
        values = torch.stack([v for _, v, _, _ in self.pending]).cpu().tolist()  # the one sync per window
        now = time.perf_counter()
        elapsed = now - self.t_window
        rate = len(self.pending) * self.global_batch / max(elapsed, 1e-9)
        if self.flushes > 0:
            self.steady_steps += len(self.pending)
            self.steady_time += elapsed
        self.flushes += 1
        for (step, _, lr, st), vals in zip(self.pending, values, strict=True):
            if not math.isfinite(vals[0]):
                self.pending.clear()
                raise PipelineError(
                    f"loss is {vals[0]} at step {step}: training stopped; {last_good()} "
                    f"(lower --lr, or use --precision fp32, then --resume)"
                )
            self._record(step, vals, lr, st, rate, now)
        if self.file is not None:
            self.file.flush()
        self.bar.update(len(self.pending))
        alpha = {"alpha": f"{values[-1][1 + len(self.terms)]:.3f}"} if self.focus else {}
        self.bar.set_postfix(loss=f"{self.last_loss:.4f}", **alpha)
        self.pending.clear()
        self.restart_window()

    def _record(self, step: int, vals: list[float], lr: float, st: Any, rate: float, now: float) -> None:
        loss, k = vals[0], 1 + len(self.terms)
        rec = {"step": step, "epoch": (step - 1) // self.steps_per_epoch, "loss": loss}
        rec.update({t: vals[1 + i] for i, t in enumerate(self.terms)})
        rec.update(
            alpha=vals[k] if self.focus else None,
            logit_scale=vals[k + 1],
            temperature=1.0 / vals[k + 1],
            grad_norm=vals[k + 2],
            lr=lr,
            samples_per_s=rate,
            truncated=st.truncated / max(st.captions, 1),
            sentences_kept=st.sentences_kept / max(st.sentences_total, 1),
            time_s=now - self.t0,
        )
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")
        if self.live is not None:
            self.live.log(rec)
        self.history.append(loss)
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.last_loss = loss

    def restart_window(self) -> None:
        """Time from now on counts towards the next window's rate (checkpoint saving does not)."""
        self.t_window = time.perf_counter()

    def summary(self, steps_run: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        steady = self.steady_steps * self.global_batch / self.steady_time if self.steady_time > 0 else None
        tail = self.history[-max(1, len(self.history) // 10) :]
        return {
            "first_loss": self.first_loss,
            "final_loss": float(np.mean(tail)) if self.history else None,
            "samples_per_s": steady if steady is not None else steps_run * self.global_batch / wall,
            "truncation_rate": self.text["truncated"] / max(self.text["captions"], 1),
            "sentences_kept": self.text["sentences_kept"] / max(self.text["sentences_total"], 1),
            "wall_s": wall,
        }

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.live is not None:
            self.live.close()
