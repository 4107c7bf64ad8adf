"""The training loop's metrics: one device tensor per step, fetched in one transfer per window, written to
metrics.jsonl (one line per optimizer step), shown on the progress bar, and summed up for the run's summary.

    clock = StepClock(device)
    log = MetricsLog.open(path, terms=["loss_image_text"], focus=False, steps_per_epoch=31, global_batch=32,
                          bar=progress(total=300, desc="train"))
    t0 = clock.now(); batch = loader.get(...); t1 = clock.now(); values = step(batch); t2 = clock.now()
    log.add(step, values, lr, batch.text_stats, clock.times(t0, t1, t2))
    log.add_eval(step, {"zeroshot/fer2013-emotion/acc@3": 0.41})   # joins that step's line
    log.flush(ckpt.last_good)                     # the window's one host sync; a NaN/inf loss stops the run

The step never waits on the device: nothing here touches a tensor until flush(). Per step the line holds the
data time (waiting for the batch) and the compute time (forward, backward, update): host clock seconds on
a CPU, CUDA event seconds on a GPU (read after the window's sync), so a user sees whether the loader keeps
up; samples/s is the window's (the host cannot time one asynchronous GPU step); on CUDA the step's peak of
allocated memory. Every record leaves through MetricsLog.emit: to metrics.jsonl and to the live backend
(--report-to).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
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
ZEROSHOT_PREFIX = "zeroshot/"  # metrics.jsonl keys zeroshot/<task>/acc@<k>


@dataclass(slots=True)
class StepTimes:
    """When a step asked for its batch, got it, and ended (host seconds, or CUDA events), and its peak of
    allocated CUDA memory in GiB (None on a CPU)."""

    start: Any
    data: Any
    end: Any
    peak_mem_gb: float | None

    def seconds(self) -> tuple[float, float]:
        """(data time, compute time); on CUDA only once the events have completed (after a sync)."""
        if isinstance(self.start, torch.cuda.Event):
            self.end.synchronize()
            return self.start.elapsed_time(self.data) / 1000, self.data.elapsed_time(self.end) / 1000
        return self.data - self.start, self.end - self.data


class StepClock:
    """Timestamps that cost the step no host sync: perf_counter on a CPU (where the step runs on the host),
    CUDA events on a GPU (recorded in the stream, so a GPU still busy with the last step hides the loader's
    time, as it should: the step did not wait for it)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def times(self, start: Any, data: Any, end: Any) -> StepTimes:
        """The step's times and its peak memory (the allocator's host-side counter, reset for the next)."""
        peak = None
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)
        return StepTimes(start, data, end, peak)


def max_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


@dataclass(slots=True)
class _Pending:
    step: int
    values: torch.Tensor
    lr: float
    text_stats: Any
    times: StepTimes


@dataclass(slots=True)
class MetricsLog:
    terms: list[str]
    focus: bool
    steps_per_epoch: int
    global_batch: int
    bar: Any  # a tqdm bar (disabled on the other ranks of a DDP run)
    file: IO[str] | None = None  # metrics.jsonl, opened for appending on the main process only
    live: LiveMetrics | None = None  # --report-to: TensorBoard / W&B get every record too
    pending: list[_Pending] = field(default_factory=list)
    evals: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> its zero-shot metrics
    text: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TEXT_STATS, 0))
    history: list[float] = field(default_factory=list)
    first_loss: float | None = None
    last_loss: float | None = None
    flushes: int = 0
    steady_steps: int = 0  # steps and seconds after the first window (compilation, allocator warm-up)
    steady_time: float = 0.0
    data_time: float = 0.0  # summed over the run's steps
    compute_time: float = 0.0
    peak_mem_gb: float | None = None  # CUDA: the run's peak of allocated memory
    t0: float = field(default_factory=time.perf_counter)
    t_window: float = field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, path: Path | None, **kwargs: Any) -> MetricsLog:
        return cls(file=open(path, "a") if path is not None else None, **kwargs)  # noqa: SIM115 (close())

    def add(self, step: int, values: torch.Tensor, lr: float, text_stats: Any, times: StepTimes) -> None:
        for key in TEXT_STATS:
            self.text[key] += getattr(text_stats, key)
        self.pending.append(_Pending(step, values, lr, text_stats, times))

    def add_eval(self, step: int, values: dict[str, float]) -> None:
        """Evaluation metrics of a step not yet flushed: they are written into that step's line."""
        self.evals[step] = values

    def exclude(self, seconds: float) -> None:
        """Time spent on something other than training (an evaluation) does not count towards samples/s."""
        self.t_window += seconds

    def flush(self, last_good: Callable[[], str]) -> None:
        """Fetch the window's values, write one line per step, update the bar; last_good() (where the run
        can be resumed from) goes into the error a non-finite loss raises."""
        if not self.pending:
            return
        values = torch.stack([p.values for p in self.pending]).cpu().tolist()  # the one sync per window
        now = time.perf_counter()
        elapsed = now - self.t_window
        rate = len(self.pending) * self.global_batch / max(elapsed, 1e-9)
        if self.flushes > 0:
            self.steady_steps += len(self.pending)
            self.steady_time += elapsed
        self.flushes += 1
        for p, vals in zip(self.pending, values, strict=True):
            if not math.isfinite(vals[0]):
                self.pending.clear()
                raise PipelineError(
                    f"loss is {vals[0]} at step {p.step}: training stopped; {last_good()} "
                    f"(lower --lr, or use --precision fp32, then --resume)"
                )
            rec = self._record(p, vals, rate, now)
        if self.file is not None:
            self.file.flush()
        self.bar.update(len(self.pending))
        self.bar.set_postfix(self._postfix(rec))
        self.pending.clear()
        self.restart_window()

    def _record(self, p: _Pending, vals: list[float], rate: float, now: float) -> dict[str, Any]:
        loss, k, st = vals[0], 1 + len(self.terms), p.text_stats
        data_s, compute_s = p.times.seconds()
        rec = {"step": p.step, "epoch": (p.step - 1) // self.steps_per_epoch, "loss": loss}
        rec.update({t: vals[1 + i] for i, t in enumerate(self.terms)})
        rec.update(
            alpha=vals[k] if self.focus else None,
            logit_scale=vals[k + 1],
            temperature=1.0 / vals[k + 1],
            grad_norm=vals[k + 2],
            lr=p.lr,
            samples_per_s=rate,
            data_s=data_s,
            compute_s=compute_s,
            peak_mem_gb=p.times.peak_mem_gb,
            truncated=st.truncated / max(st.captions, 1),
            sentences_kept=st.sentences_kept / max(st.sentences_total, 1),
            time_s=now - self.t0,
        )
        rec.update(self.evals.pop(p.step, {}))
        self.emit(rec)
        self.history.append(loss)
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.last_loss = loss
        self.data_time += data_s
        self.compute_time += compute_s
        if p.times.peak_mem_gb is not None:
            self.peak_mem_gb = max(self.peak_mem_gb or 0.0, p.times.peak_mem_gb)
        return rec

    def emit(self, rec: dict[str, Any]) -> None:
        """The one place a step's metrics leave the loop: metrics.jsonl and the live backend (--report-to)."""
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")
        if self.live is not None:
            self.live.log(rec)

    def _postfix(self, rec: dict[str, Any]) -> dict[str, str]:
        """The bar's view of the last step: loss, [alpha,] the logit scale (its drift on small data is the
        thing to watch), data and compute time per step, [peak memory]."""
        out = {"loss": f"{rec['loss']:.4f}"}
        if self.focus:
            out["alpha"] = f"{rec['alpha']:.3f}"
        out["scale"] = f"{rec['logit_scale']:.1f}"
        out["data"] = f"{1000 * rec['data_s']:.0f}ms"
        out["step"] = f"{1000 * rec['compute_s']:.0f}ms"
        if rec["peak_mem_gb"] is not None:
            out["mem"] = f"{rec['peak_mem_gb']:.1f}G"
        return out

    def restart_window(self) -> None:
        """Time from now on counts towards the next window's rate (checkpoint saving does not)."""
        self.t_window = time.perf_counter()

    def summary(self, steps_run: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        steady = self.steady_steps * self.global_batch / self.steady_time if self.steady_time > 0 else None
        tail = self.history[-max(1, len(self.history) // 10) :]
        steps = max(len(self.history), 1)
        return {
            "first_loss": self.first_loss,
            "final_loss": float(np.mean(tail)) if self.history else None,
            "samples_per_s": steady if steady is not None else steps_run * self.global_batch / wall,
            "data_s": self.data_time / steps,  # per step, averaged over this process's steps
            "compute_s": self.compute_time / steps,
            "peak_mem_gb": self.peak_mem_gb,
            "max_rss_gb": max_rss_gb(),
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


def trim_metrics(path: Path, step: int) -> None:
    """Keep metrics.jsonl lines up to the checkpoint's step, so the resumed curve continues it exactly."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def plot_metrics(metrics_path: Path, out: Path, terms: list[str]) -> None:
    """The run at a glance, one panel per question (matplotlib's Agg backend): the loss (and its terms); the
    zero-shot accuracy of every evaluation; the logit scale (1/temperature), whose drift on small data
    is the sign of overfitting; FocusCLIP's alpha; data vs compute time per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    evals = sorted({k for r in rows for k in r if k.startswith(ZEROSHOT_PREFIX)})
    focus = rows[0].get("alpha") is not None
    timed = "data_s" in rows[0]  # runs from before per-step times have none
    panels = ["loss", *(["zeroshot"] if evals else []), "scale", *(["alpha"] if focus else [])]
    panels += ["time"] if timed else []
    heights = {"loss": 3, "zeroshot": 2, "scale": 1.2, "alpha": 1, "time": 1.2}
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 1.6 + 1.3 * sum(heights[p] for p in panels)),
        sharex=True,
        height_ratios=[heights[p] for p in panels],
    )
    ax = dict(zip(panels, axes, strict=True))
    ax["loss"].plot(steps, [r["loss"] for r in rows], label="loss", color="black", lw=1.5)
    if len(terms) > 1:
        for t in terms:
            label = t.removeprefix("loss_").replace("_", "-")
            ax["loss"].plot(steps, [r[t] for r in rows], label=label, lw=0.8)
    ax["loss"].set_ylabel("loss")
    for key in evals:
        points = [(r["step"], 100 * r[key]) for r in rows if key in r]
        ax["zeroshot"].plot(
            *zip(*points, strict=True), marker="o", ms=3, label=key.removeprefix(ZEROSHOT_PREFIX)
        )
    if evals:
        ax["zeroshot"].set_ylabel("zero-shot (%)")
    ax["scale"].plot(steps, [r["logit_scale"] for r in rows], label="logit scale", color="tab:purple")
    ax["scale"].set_ylabel("1 / temperature")
    if focus:
        ax["alpha"].plot(steps, [r["alpha"] for r in rows], label="alpha", color="tab:green")
        ax["alpha"].set_ylabel("alpha")
    if timed:
        ax["time"].plot(
            steps, [1000 * r["compute_s"] for r in rows], label="compute", color="tab:blue", lw=0.8
        )
        ax["time"].plot(steps, [1000 * r["data_s"] for r in rows], label="data", color="tab:orange", lw=0.8)
        ax["time"].set_ylabel("ms / step")
    for a in axes:
        a.legend(loc="upper right", fontsize=7)
        a.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
