"""Train CLIP or FocusCLIP on a datasets/<name> artifact and write runs/<name>.

    from training.train import TrainConfig, train
    summary = train(TrainConfig(dataset="mpii", model_type="focusclip", arch="focus-small"), store)

    focus-pipeline train --dataset mpii --model-type focusclip --arch ViT-B-16 --recipe modern
    torchrun --nproc_per_node 8 --no-python focus-pipeline train --dataset mpii --model-type focusclip

runs/<name>/: model.pt (the open_clip state dict: `open_clip.create_model(arch, pretrained=model.pt,
force_context_length=, force_image_size=)` loads it), checkpoints/last.pt (+ last.json), metrics.jsonl (one
line per optimizer step), loss_curve.png, meta.json (config with arch, model_type, context_length,
image_size; counts; summary). The run is staged aside and published when training ends; an interrupted or
failed run keeps its staging folder, so `--resume` continues from its last checkpoint, mid-epoch, with the
very same batches (data order and augmentation are functions of seed and step).

The step never waits on the device: metrics stay on the device and are fetched every `log_every` steps
in one transfer (which is also when a NaN/inf loss is noticed; a checkpoint is only written after such a
check, so the last checkpoint is always a finite one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.store import Store
from training.config import RECIPES, TrainConfig
from training.data import BatchLoader, load_train_data
from training.inference import register_model_configs
from training.losses import clip_loss, focusclip_loss, gather_with_grad
from training.model import FocusCLIP

__all__ = ["RECIPES", "TrainConfig", "train"]

log = logging.getLogger(__name__)

TERMS = {
    "clip": ["loss_image_text"],
    "focusclip": ["loss_masked_image", "loss_masked_text", "loss_image_text"],
}


@dataclass(slots=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", 0))
    )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        info.started_here = True
    return info


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PipelineError(f"device {cfg.device!r} asked for but CUDA is not available here")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    return torch.device(name)


def _resolve_shapes(cfg: TrainConfig) -> None:
    """Fill image_size and context_length from the architecture when the recipe leaves them open."""
    register_model_configs()
    arch_cfg = open_clip.get_model_config(cfg.arch)
    if arch_cfg is None:
        raise PipelineError(f"unknown open_clip architecture {cfg.arch!r} (see open_clip.list_models())")
    if cfg.image_size is None:
        size = arch_cfg["vision_cfg"].get("image_size", 224)
        cfg.image_size = int(size[0] if isinstance(size, list | tuple) else size)
    if cfg.context_length is None:
        cfg.context_length = int(arch_cfg.get("text_cfg", {}).get("context_length", 77))


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup to 1, then constant or cosine to 0 at `total` (step counts completed steps)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress_frac = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac)))


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """No weight decay on gains, biases, norms, the logit scale and alpha (open_clip's exclusion rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale", "alpha"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": cfg.weight_decay}]
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **fused)


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class _StopFlag:
    """Ctrl-C asks the loop to stop after the current step and save; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: keep Python's default behaviour
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        log.warning("interrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort now)")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v)
            for k, v in zip(
                ("kind", "keys", "pos", "has_gauss", "cached"), np.random.get_state(), strict=True
            )
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig, store: Store, info: DistInfo, device: torch.device, run_dir: Path):
        self.cfg, self.store, self.info, self.device = cfg, store, info, device
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.metrics_path = run_dir / "metrics.jsonl"
        self.focus = cfg.model_type == "focusclip"
        self.terms = TERMS[cfg.model_type]

    # ---- set-up ---------------------------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.info.world > 1:
            dist.barrier()

    def setup(self) -> None:
        cfg, dev = self.cfg, self.device
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP broadcasts them too)
        self.model = FocusCLIP.create(
            cfg.arch,
            focus=self.focus,
            context_length=cfg.context_length,
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            alpha_init=cfg.alpha_init,
            alpha_param=cfg.alpha_param,
            learn_alpha=cfg.learn_alpha,
            temperature=cfg.temperature,
            learn_temperature=cfg.learn_temperature,
        ).to(dev)
        self.channels_last = dev.type == "cuda" if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        tokenizer = open_clip.get_tokenizer(cfg.arch, context_length=cfg.context_length)
        if self.info.main:  # rank 0 decodes the cache; the others read it after the barrier
            data = self._load_data(tokenizer, build=True)
            self._barrier()
        else:
            self._barrier()
            data = self._load_data(tokenizer, build=False)
        self.data = data
        self.loader = BatchLoader(
            data,
            batch_size=cfg.batch_size,
            image_size=cfg.image_size,
            device=dev,
            seed=cfg.seed,
            rank=self.info.rank,
            world=self.info.world,
            crop_scale=cfg.crop_scale,
            hflip=cfg.hflip,
            focus=self.focus,
            heatmap_parts=cfg.heatmap_parts,
            uniform_heatmap=cfg.heatmap_source == "uniform",
            sample_sentences=cfg.sentence_sampling,
            all_descriptions=cfg.all_descriptions,
            channels_last=self.channels_last,
        )
        self.spe = self.loader.steps_per_epoch
        self.total = cfg.max_steps or self.spe * cfg.epochs
        warmup = cfg.warmup if cfg.warmup >= 1 else cfg.warmup * self.total
        self.warmup = int(round(warmup))
        self.optimizer = build_optimizer(self.model, cfg, dev)
        total, wu, sched = self.total, self.warmup, cfg.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=total, warmup=wu, schedule=sched)
        )
        self.amp_dtype = _autocast_dtype(cfg, dev)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp_dtype == torch.float16)
        self.ckpt_every = cfg.checkpoint_every or self.spe
        if self.info.main:
            rate = data.texts.truncation_rate(sample_sentences=False)
            log.info(
                "%d training images, %d steps/epoch, %d steps (warmup %d); %.1f%% of captions exceed "
                "the %d-token context%s",
                len(data),
                self.spe,
                self.total,
                self.warmup,
                100 * rate,
                cfg.context_length,
                " (sentence sampling on)" if cfg.sentence_sampling else " and are truncated",
            )

    def _load_data(self, tokenizer, *, build: bool):
        cfg = self.cfg
        return load_train_data(
            self.store,
            cfg.dataset,
            split=cfg.split,
            image_size=cfg.image_size,
            cache_scale=cfg.cache_scale,
            tokenizer=tokenizer,
            context_length=cfg.context_length,
            heatmap_source=cfg.heatmap_source,
            build_cache=build,
        )

    # ---- checkpoints ----------------------------------------------------------------------------------
    def _checkpoint_state(self, step: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": step,
            "epoch": step // self.spe,
            "rng": _rng_state(),
            "config": self.cfg.to_dict(),
            "world": self.info.world,
        }

    def save_checkpoint(self, step: int, last_loss: float | None) -> None:
        if not self.info.main:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        _atomic_save(self._checkpoint_state(step), self.ckpt_dir / "last.pt")
        info = {
            "step": step,
            "epoch": step // self.spe,
            "loss": last_loss,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        tmp = self.ckpt_dir / "last.json.tmp"
        tmp.write_text(json.dumps(info) + "\n")
        os.replace(tmp, self.ckpt_dir / "last.json")

    def load_checkpoint(self) -> int:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            if self.info.main:
                log.warning("--resume: no checkpoint at %s, starting from step 0", path)
            return 0
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt.get("world", 1) != self.info.world:
            raise PipelineError(
                f"{path} was written by a run with {ckpt.get('world')} processes; resume with the "
                f"same number (this one has {self.info.world}) so the data order stays the same"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        if self.info.main:
            log.info("resumed from %s at step %d (epoch %d)", path, step, step // self.spe)
        return step

    def _trim_metrics(self, step: int) -> None:
        """Keep metrics.jsonl lines up to the checkpoint's step, so the resumed curve continues it exactly."""
        if not self.metrics_path.is_file():
            return
        keep = [
            ln for ln in self.metrics_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step
        ]
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        os.replace(tmp, self.metrics_path)

    # ---- the step -------------------------------------------------------------------------------------
    def _forward_loss(self, net, batch):
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            out = net(batch.images, batch.tokens, batch.heatmaps)
        gather = gather_with_grad if self.info.world > 1 else None
        feats = {k: v.float() for k, v in out.items()}
        if self.focus:
            return focusclip_loss(
                feats["image"],
                feats["text"],
                feats["masked"],
                feats["logit_scale"],
                gather=gather,
                rank=self.info.rank,
                kind=self.cfg.loss,
            )
        return clip_loss(
            feats["image"],
            feats["text"],
            feats["logit_scale"],
            gather=gather,
            rank=self.info.rank,
            kind=self.cfg.loss,
        )

    def _step(self, net, batch) -> torch.Tensor:
        """One optimizer step; returns the step's metrics as ONE device tensor (no host sync here)."""
        loss, terms = self._forward_loss(net, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        else:
            grad_norm = torch.zeros((), device=self.device)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.model.clamp_()
        alpha = (
            self.model.alpha().detach() if self.focus else torch.full((), float("nan"), device=self.device)
        )
        return torch.stack(
            [
                loss.detach().float(),
                *(terms[t].float() for t in self.terms),
                alpha.float(),
                self.model.clip.logit_scale.detach().exp().float(),
                grad_norm.float(),
            ]
        )

    # ---- the loop -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.setup()
        start = 0
        if cfg.resume:
            start = self.load_checkpoint()
        elif self.info.main and self.ckpt_dir.exists():
            for f in self.ckpt_dir.glob("*"):
                f.unlink()
        if self.info.main:
            if start == 0:
                self.metrics_path.unlink(missing_ok=True)
            else:
                self._trim_metrics(start)
        self._barrier()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        net: torch.nn.Module = self.model
        if self.info.world > 1:
            net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net)
        gbatch = cfg.batch_size * self.info.world
        pending: list[tuple[int, torch.Tensor, float, Any]] = []
        stats = {"captions": 0, "truncated": 0, "sentences_total": 0, "sentences_kept": 0}
        history: list[float] = []
        steady = {"steps": 0, "time": 0.0}
        first_loss = last_loss = None
        t_window = t0 = time.perf_counter()
        step = start
        bar = (
            progress(total=self.total, initial=start, desc=f"train {cfg.name}", unit="step")
            if self.info.main
            else tqdm(disable=True)
        )
        metrics_fh = open(self.metrics_path, "a") if self.info.main else None  # noqa: SIM115 (closed below)
        flushes = 0

        def flush() -> None:
            nonlocal t_window, first_loss, last_loss, flushes
            if not pending:
                return
            values = torch.stack([v for _, v, _, _ in pending]).cpu().tolist()  # the one sync per window
            now = time.perf_counter()
            elapsed = now - t_window
            rate = len(pending) * gbatch / max(elapsed, 1e-9)
            if flushes > 0:  # the first window holds compilation and allocator warm-up
                steady["steps"] += len(pending)
                steady["time"] += elapsed
            flushes += 1
            for (s, _, lr, st), vals in zip(pending, values, strict=True):
                loss = vals[0]
                if not math.isfinite(loss):
                    pending.clear()
                    raise PipelineError(
                        f"loss is {loss} at step {s}: training stopped; the last good checkpoint is "
                        f"{self.ckpt_dir / 'last.pt'} (lower --lr, or use --precision fp32, then --resume)"
                    )
                rec = {"step": s, "epoch": (s - 1) // self.spe, "loss": loss}
                rec.update({t: vals[1 + i] for i, t in enumerate(self.terms)})
                k = 1 + len(self.terms)
                rec.update(
                    {
                        "alpha": vals[k] if self.focus else None,
                        "logit_scale": vals[k + 1],
                        "temperature": 1.0 / vals[k + 1],
                        "grad_norm": vals[k + 2],
                        "lr": lr,
                        "samples_per_s": rate,
                        "truncated": st.truncated / max(st.captions, 1),
                        "sentences_kept": st.sentences_kept / max(st.sentences_total, 1),
                        "time_s": now - t0,
                    }
                )
                if metrics_fh is not None:
                    metrics_fh.write(json.dumps(rec) + "\n")
                history.append(loss)
                first_loss = loss if first_loss is None else first_loss
                last_loss = loss
            if metrics_fh is not None:
                metrics_fh.flush()
            bar.update(len(pending))
            bar.set_postfix(
                loss=f"{last_loss:.4f}",
                **({"alpha": f"{values[-1][1 + len(self.terms)]:.3f}"} if self.focus else {}),
            )
            pending.clear()
            t_window = time.perf_counter()

        def stop_requested(flag: _StopFlag) -> bool:
            if self.info.world == 1:
                return flag.set
            # every rank must agree, or the next collective hangs: decided at log boundaries only
            if step % cfg.log_every:
                return False
            t = torch.tensor([1.0 if flag.set else 0.0], device=self.device)
            dist.all_reduce(t)
            return bool(t.item() > 0)

        status = "done"
        try:
            with _StopFlag() as flag:
                while step < self.total:
                    epoch, i = divmod(step, self.spe)
                    batch = self.loader.get(epoch, i)
                    lr = self.optimizer.param_groups[0]["lr"]  # this step's lr, a host float
                    values = self._step(net, batch)
                    step += 1
                    st = batch.text_stats
                    for key in stats:
                        stats[key] += getattr(st, key)
                    pending.append((step, values, lr, st))
                    stop = stop_requested(flag)
                    if step % cfg.log_every == 0 or step == self.total or stop:
                        flush()
                    if step % self.ckpt_every == 0 or stop:
                        flush()
                        self.save_checkpoint(step, last_loss)
                        t_window = time.perf_counter()  # saving is not training time
                    if stop:
                        status = "interrupted"
                        raise KeyboardInterrupt
                flush()
        finally:
            bar.close()
            if metrics_fh is not None:
                metrics_fh.close()
        if step % self.ckpt_every:
            self.save_checkpoint(step, last_loss)
        wall = time.perf_counter() - t0
        sps = (
            steady["steps"] * gbatch / steady["time"]
            if steady["time"] > 0
            else (step - start) * gbatch / wall
        )
        summary = {
            "run": cfg.name,
            "model_type": cfg.model_type,
            "arch": cfg.arch,
            "status": status,
            "steps": step,
            "epochs": step / self.spe,
            "images": len(self.data),
            "global_batch": gbatch,
            "first_loss": first_loss,
            "final_loss": float(np.mean(history[-max(1, len(history) // 10) :])) if history else None,
            "alpha": float(self.model.alpha().detach()) if self.focus else None,
            "temperature": float(1.0 / self.model.clip.logit_scale.detach().exp()),
            "samples_per_s": sps,
            "truncation_rate": stats["truncated"] / max(stats["captions"], 1),
            "sentences_kept": stats["sentences_kept"] / max(stats["sentences_total"], 1),
            "wall_s": wall,
        }
        if self.info.main:
            torch.save(
                {
                    k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
                    for k, v in self.model.clip.state_dict().items()
                },
                self.run_dir / "model.pt",
            )
            plot_metrics(self.metrics_path, self.run_dir / "loss_curve.png", self.terms)
        return summary


def plot_metrics(metrics_path: Path, out: Path, terms: list[str]) -> None:
    """Loss (and its terms) per step, with alpha and temperature below; matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax1.plot(steps, [r["loss"] for r in rows], label="loss", color="black", lw=1.5)
    if len(terms) > 1:
        for t in terms:
            ax1.plot(steps, [r[t] for r in rows], label=t.removeprefix("loss_").replace("_", "-"), lw=0.8)
    ax1.set_ylabel("loss")
    ax1.legend(loc="upper right")
    ax1.grid(alpha=0.3)
    if rows[0].get("alpha") is not None:
        ax2.plot(steps, [r["alpha"] for r in rows], label="alpha", color="tab:green")
    ax2.plot(steps, [r["temperature"] for r in rows], label="temperature", color="tab:purple")
    ax2.set_xlabel("step")
    ax2.legend(loc="upper right")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, store: Store) -> dict[str, Any]:
    """Train and publish runs/<cfg.name>; returns a summary (losses, alpha, throughput, truncation rate)."""
    cfg = cfg.resolved()
    _resolve_shapes(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    info = _init_distributed(device)
    try:
        if info.main:
            dataset_ref = store.ref("datasets", cfg.dataset)
            with store.create(
                "runs",
                cfg.name,
                stage="train",
                config=cfg.to_dict(),
                inputs=[dataset_ref],
                overwrite=cfg.overwrite,
                resumable=True,
            ) as w:
                summary = Trainer(cfg, store, info, device, w.dir).run()
                w.counts.update({"steps": summary["steps"], "images": summary["images"]})
                w.extra["summary"] = summary
            summary["run_dir"] = str(store.path("runs", cfg.name))
            log.info(
                "run %s: %d steps, loss %.4f -> %.4f, %.1f samples/s",
                cfg.name,
                summary["steps"],
                summary["first_loss"] or float("nan"),
                summary["final_loss"] or float("nan"),
                summary["samples_per_s"],
            )
        else:
            summary = Trainer(cfg, store, info, device, store.staging_dir("runs", cfg.name)).run()
        return summary
    finally:
        if info.started_here and dist.is_initialized():
            dist.destroy_process_group()
