"""Train CLIP or FocusCLIP on a datasets/<name> artifact and write runs/<name>.

    from training.train import TrainConfig, train
    summary = train(TrainConfig(dataset="mpii", model_type="focusclip", arch="focus-small"), store)

    focus-pipeline train --dataset mpii --model-type focusclip --arch ViT-B-16 --recipe modern
    torchrun --nproc_per_node 8 --no-python focus-pipeline train --dataset mpii --model-type focusclip

runs/<name>/: model.pt (the open_clip state dict: `open_clip.create_model(arch, pretrained=model.pt,
force_context_length=, force_image_size=)` loads it), checkpoints/last.pt (+ last.json), metrics.jsonl (one
line per optimizer step), loss_curve.png, meta.json (config with arch, model_type, context_length,
image_size; "preprocess", the pipeline eval must use; counts; summary), export/ (the run in open_clip's
Hub layout with a Hugging Face text tower's config and tokenizer, so the run loads offline, and SHA256SUMS;
training/export.py; training/inference.py load_model reads it all), and with --zeroshot-every, zeroshot/ (one
CLIP_benchmark file per task and evaluation; training/zeroshot_eval.py). --lock-image / --lock-text freeze
towers (training/locking.py); meta.json "locked" records what.
The run is staged aside and published when training ends; an interrupted or failed run keeps its staging
folder, so `--resume` continues from its last checkpoint, mid-epoch, with the very same batches (data order
and augmentation are functions of seed and step). A changed --lr (or other RESUME_APPLIES setting) takes
effect from the resume step and is recorded in the summary's `resumes`; a changed batch size, seed or model
(RESUME_REFUSES) is refused (training/checkpoint.py; the optimizer and its schedule: training/optim.py).

The step never waits on the device: metrics stay on the device and are fetched every `log_every` steps
in one transfer (which is also when a NaN/inf loss is noticed). A checkpoint is written only when the
weights it saves are finite, and last.json records its sha256, which --resume checks; meta.json records
model.pt's, which load_model checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from open_clip.model import set_model_preprocess_cfg
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.devices import torch_device
from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.store import Store, file_sha256
from training.batches import run_data
from training.checkpoint import Checkpointer
from training.config import RECIPES, TrainConfig
from training.data import (
    dataset_roi,
    heatmap_source_for,
)
from training.distributed import DistInfo, barrier, init_distributed, value_range
from training.export import export_model_cfg, write_export
from training.live_metrics import LiveMetrics
from training.locking import lock_towers
from training.losses import clip_loss, focusclip_loss, gather_with_grad
from training.metrics_log import MetricsLog, StepClock, plot_metrics, trim_metrics
from training.model import FocusCLIP
from training.optim import autocast_dtype, build_optimizer, build_schedule
from training.preprocess import Preprocess
from training.towers import Towers, arch_config, create_clip, foreign_towers, has_schema, make_tokenizer
from training.zeroshot_eval import ZEROSHOT_DIR, ZeroShotEval, drop_evaluations_after, due, zeroshot_tasks

__all__ = ["RECIPES", "TrainConfig", "train"]

log = logging.getLogger(__name__)

TERMS = {
    "clip": ["loss_image_text"],
    "focusclip": ["loss_masked_image", "loss_masked_text", "loss_image_text"],
}


def _resolve_shapes(cfg: TrainConfig) -> None:
    """Fill image_size and context_length from the architecture when the recipe leaves them open.
    --pretrained local-dir:/hf-hub: ids bring their own architecture, which the run records as its arch."""
    if has_schema(cfg.pretrained):
        cfg.arch = cfg.pretrained
    arch_cfg = arch_config(cfg.arch)
    if cfg.image_size is None:
        size = arch_cfg["vision_cfg"].get("image_size", 224)
        cfg.image_size = int(size[0] if isinstance(size, list | tuple) else size)
    if cfg.context_length is None:
        cfg.context_length = int(arch_cfg.get("text_cfg", {}).get("context_length", 77))


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


class Trainer:
    def __init__(self, cfg: TrainConfig, store: Store, info: DistInfo, device: torch.device, run_dir: Path):
        self.cfg, self.store, self.info, self.device = cfg, store, info, device
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.focus = cfg.model_type == "focusclip"
        self.terms = TERMS[cfg.model_type]
        self.last_zeroshot: dict[str, float] = {}  # the last zero-shot evaluation's metrics

    # ---- set-up ---------------------------------------------------------------------------------------
    def _barrier(self) -> None:
        barrier(self.info)

    def _resume(self) -> int:
        """The checkpoint's step, the same on every rank, and short of the run's end when it is published."""
        self._barrier()  # rank 0 has put a finished run's files in staging (train(): seed_from_existing)
        start = self.ckpt.load()
        lo, hi = value_range(start, self.info, self.device)
        if lo != hi:  # a rank without rank 0's checkpoint would train other steps, and hang the rest
            raise PipelineError(
                f"--resume: the processes found checkpoints of steps {lo} to {hi}: rank 0 saves them in its "
                f"run folder; on nodes without a shared filesystem, copy {self.ckpt.dir} to every node first"
            )
        if start >= self.total and self.store.exists("runs", self.cfg.name):
            raise PipelineError(
                f"--resume: runs/{self.cfg.name} already trained its {start} steps; raise --max-steps or "
                f"--epochs to train it further (or start again with --overwrite)"
            )
        return start

    def setup(self) -> None:
        self._build_model()
        self._lock_towers()
        self._build_zeroshot()
        self._build_data()
        self._build_optimizer()
        if self.info.main:
            cfg = self.cfg
            log.info(
                "%d training images (%s), %d steps/epoch, %d steps (warmup %d)",
                self.num_images,
                "streamed" if self.data_mode == "stream" else "decoded cache",
                self.spe,
                self.total,
                self.warmup,
            )
            if self.data_mode == "cache":  # streamed captions are counted per step (metrics.jsonl)
                log.info(
                    "%.1f%% of captions exceed the %d-token context%s",
                    100 * self.data.texts.truncation_rate(sample_sentences=False),
                    cfg.context_length,
                    " (sentence sampling on)" if cfg.sentence_sampling else " and are truncated",
                )

    def _build_model(self) -> None:
        """The open_clip model with its base weights, the run's preprocessing, FocusCLIP around it."""
        cfg, dev = self.cfg, self.device
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP broadcasts them too)
        towers = Towers(hub=cfg.pretrained_towers, image=cfg.image_tower, text=cfg.text_tower)
        clip = create_clip(
            cfg.arch,
            context_length=cfg.context_length,
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            towers=towers,
        )
        if self.info.main:
            _warn_random_init(cfg, towers)
        self.preprocess = Preprocess.for_run(
            size=cfg.image_size,
            context_length=cfg.context_length,
            normalize=cfg.normalize,
            clip=clip,
            interpolation=cfg.interpolation,
        )
        set_model_preprocess_cfg(clip, self.preprocess.open_clip_cfg())
        self.model = FocusCLIP(
            clip,
            focus=self.focus,
            alpha_init=cfg.alpha_init,
            alpha_param=cfg.alpha_param,
            learn_alpha=cfg.learn_alpha,
            temperature=cfg.temperature,
            learn_temperature=cfg.learn_temperature,
            mean=self.preprocess.mean,
            std=self.preprocess.std,
            focus_mode=cfg.focus_mode,
        ).to(dev)
        self.channels_last = dev.type == "cuda" if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.tokenizer = make_tokenizer(
            cfg.arch, context_length=cfg.context_length, text_tower=cfg.text_tower
        )

    def _lock_towers(self) -> None:
        """--lock-image / --lock-text (training/locking.py): frozen weights that the optimizer never sees, and
        norm statistics that stay fixed; refused when nothing would be left to train."""
        cfg = self.cfg
        self.locked = lock_towers(
            self.model.clip, image=cfg.lock_image, text=cfg.lock_text, unlock_last=cfg.unlock_last
        )
        self.model.fix_norm_stats(self.locked.fixed_norms)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise PipelineError(
                "nothing left to train: both towers are locked and the temperature (and alpha) fixed; "
                "unlock a tower, --unlock-last N, or learn the temperature"
            )
        if self.locked.towers and self.info.main:
            log.info("%s", self.locked.describe())
            if not (cfg.pretrained or cfg.pretrained_towers or cfg.image_tower or cfg.text_tower):
                log.warning("locking towers that start from random weights: pass --pretrained (CLIP weights)")

    def _build_zeroshot(self) -> None:
        """--zeroshot-every: rank 0's evaluator, its tasks' data checked now (training/zeroshot_eval.py)."""
        self.zeroshot = None
        if self.cfg.zeroshot_every and self.info.main:
            self.zeroshot = ZeroShotEval.create(
                self.cfg,
                model=self.model,
                preprocess=self.preprocess,
                tokenizer=self.tokenizer,
                device=self.device,
                store=self.store,
                out=self.run_dir / ZEROSHOT_DIR,
            )

    def _build_data(self) -> None:
        """The batches (training/batches.py): from the node's decoded cache, or streamed from the shards."""
        cfg = self.cfg
        data = run_data(cfg, self.store, self.info, self.device, self.tokenizer, focus=self.focus,
                        channels_last=self.channels_last)  # fmt: skip
        self.loader, self.data_mode, self.num_images, self.data = (
            data.loader,
            data.mode,
            data.images,
            data.cache,
        )
        self.data_order = data.order
        self.spe = self.loader.steps_per_epoch
        self.total = cfg.max_steps or self.spe * cfg.epochs
        self.ckpt_every = cfg.checkpoint_every or self.spe

    def _build_optimizer(self) -> None:
        """Optimizer, the schedule sized to this run's steps, the precision's autocast and scaler, and the
        checkpoints that save and restore them."""
        cfg, dev = self.cfg, self.device
        self.warmup = int(round(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * self.total))
        self.optimizer = build_optimizer(self.model, cfg, dev)
        self.scheduler = build_schedule(
            self.optimizer, total=self.total, warmup=self.warmup, schedule=cfg.schedule
        )
        self.amp_dtype = autocast_dtype(cfg, dev)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp_dtype == torch.float16)
        self.ckpt = Checkpointer(
            self.run_dir / "checkpoints",
            self.info,
            cfg,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.spe,
            dev,
            data_order=self.data_order,
        )

    # ---- the step -------------------------------------------------------------------------------------
    def _forward_loss(self, net, batch):
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            out = net(batch.images, batch.tokens, batch.heatmaps, batch.masked_images)
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
                weights=self.cfg.loss_weights,
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
        self.setup()
        start = self._start_step()
        net = self._wrapped()
        metrics = MetricsLog.open(
            self.metrics_path if self.info.main else None,
            terms=self.terms,
            focus=self.focus,
            steps_per_epoch=self.spe,
            global_batch=self.cfg.batch_size * self.info.world,
            bar=progress(total=self.total, initial=start, desc=f"train {self.cfg.name}", unit="step")
            if self.info.main
            else tqdm(disable=True),
            live=LiveMetrics.open(
                self.cfg.report_to, self.run_dir, name=self.cfg.name, config=self.cfg.to_dict()
            )
            if self.info.main and self.cfg.report_to
            else None,
        )
        try:
            step = self._loop(net, start, metrics)
        finally:
            metrics.close()
        if step % self.ckpt_every:
            self.ckpt.save(step, metrics.last_loss)
        summary = self._summary(step, metrics.summary(step - start))
        if self.info.main:
            self._write_model()
            plot_metrics(self.metrics_path, self.run_dir / "loss_curve.png", self.terms)
        return summary

    def _start_step(self) -> int:
        """0 for a new run (old checkpoints and metrics cleared), the checkpoint's step with --resume."""
        start = self._resume() if self.cfg.resume else 0
        if self.info.main and not self.cfg.resume:
            self.ckpt.clear()
        if self.info.main:
            drop_evaluations_after(self.run_dir / ZEROSHOT_DIR, start)
            if start == 0:
                self.metrics_path.unlink(missing_ok=True)
            else:
                trim_metrics(self.metrics_path, start)
        self._barrier()
        return start

    def _wrapped(self) -> torch.nn.Module:
        """The module the loop calls: DDP around the model with several processes, compiled on request."""
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        net: torch.nn.Module = self.model
        if self.info.world > 1:
            net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return torch.compile(net) if self.cfg.compile else net

    def _loop(self, net: torch.nn.Module, step: int, metrics: MetricsLog) -> int:
        """Step to the end of the run (Ctrl-C: save a checkpoint at this step and stop); returns the step."""
        cfg, clock = self.cfg, StepClock(self.device)
        with _StopFlag() as flag:
            while step < self.total:
                epoch, i = divmod(step, self.spe)
                asked = clock.now()
                batch = self.loader.get(epoch, i)
                got = clock.now()
                lr = self.optimizer.param_groups[0]["lr"]  # this step's lr, a host float
                values = self._step(net, batch)
                step += 1
                metrics.add(step, values, lr, batch.text_stats, clock.times(asked, got, clock.now()))
                if due(step, every=cfg.zeroshot_every, total=self.total):
                    self._evaluate(step, metrics)
                stop = self._stop_requested(flag, step)
                if step % cfg.log_every == 0 or step == self.total or stop:
                    metrics.flush(self.ckpt.last_good)
                if step % self.ckpt_every == 0 or stop:
                    metrics.flush(self.ckpt.last_good)
                    self.ckpt.save(step, metrics.last_loss)
                    metrics.restart_window()  # saving is not training time
                if stop:
                    raise KeyboardInterrupt
        metrics.flush(self.ckpt.last_good)
        return step

    def _evaluate(self, step: int, metrics: MetricsLog) -> None:
        """Zero-shot on rank 0 while the other ranks wait at a barrier (no collective runs meanwhile, so
        none can hang); the time it takes is not training time."""
        started = time.perf_counter()
        if self.zeroshot is not None:
            self.last_zeroshot = self.zeroshot.evaluate(step)
            metrics.add_eval(step, self.last_zeroshot)
        self._barrier()
        metrics.exclude(time.perf_counter() - started)

    def _stop_requested(self, flag: _StopFlag, step: int) -> bool:
        if self.info.world == 1:
            return flag.set
        # every rank must agree, or the next collective hangs: decided at log boundaries only
        if step % self.cfg.log_every:
            return False
        t = torch.tensor([1.0 if flag.set else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def _summary(self, step: int, loop: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        summary = {
            "run": cfg.name,
            "model_type": cfg.model_type,
            "arch": cfg.arch,
            "steps": step,
            "epochs": step / self.spe,
            "images": self.num_images,
            "data": self.data_mode,
            "global_batch": cfg.batch_size * self.info.world,
            **loop,
            "alpha": float(self.model.alpha().detach()) if self.focus else None,
            "temperature": float(1.0 / self.model.clip.logit_scale.detach().exp()),
            "params": sum(p.numel() for p in self.model.parameters()),
            "trainable_params": sum(p.numel() for p in self.params),
        }
        if self.last_zeroshot:
            summary["zeroshot"] = self.last_zeroshot
        if self.ckpt.resumes:
            summary["resumes"] = self.ckpt.resumes
        return summary

    def _write_model(self) -> None:
        """model.pt: the plain open_clip state dict in fp32 (inference needs no heatmap)."""
        state = self.model.clip.state_dict()
        torch.save(
            {
                k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
                for k, v in state.items()
            },
            self.run_dir / "model.pt",
        )


def _warn_random_init(cfg: TrainConfig, towers: Towers) -> None:
    """Loudly: the paper fine-tunes ImageNet/BERT weights; from random ones its recipe stays near chance."""
    if cfg.pretrained:
        return
    timm_name, hf_name = foreign_towers(arch_config(cfg.arch))
    if timm_name or hf_name:
        given = ((timm_name, towers.hub or towers.image), (hf_name, towers.hub or towers.text))
        random = [name for name, weights in given if name and not weights]
    else:  # open_clip's own towers: only CLIP weights (--pretrained) would do
        random = [cfg.arch] if cfg.recipe == "paper" else []
    if random:
        log.warning(
            "\n%s\nRANDOM INIT: %s start(s) from random weights; this run will NOT reproduce the paper, "
            "which fine-tunes pretrained towers. Pass --pretrained-towers (hub), --image-tower FILE / "
            "--text-tower DIR (offline), or --pretrained CLIP weights.\n%s",
            "!" * 100,
            " and ".join(random),
            "!" * 100,
        )


def record_run(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    """What eval needs beside model.pt: the preprocessing (meta.json "preprocess"); and export/, the run as
    open_clip's layout holds it, with a Hugging Face text tower's config and tokenizer (eval reads them from
    there, so the run loads offline) and the SHA256SUMS of it all (training/export.py)."""
    pp = trainer.preprocess
    model_cfg = export_model_cfg(trainer.cfg.arch, context_length=pp.context_length, image_size=pp.size)
    write_export(trainer.model.clip, model_cfg, pp, run_dir / "export", tokenizer=trainer.tokenizer)
    return pp.to_dict()


def _with_heatmap_source(cfg: TrainConfig, store: Store) -> TrainConfig:
    """The config the trainer runs: heatmap_source resolved from the dataset's ROI when unset. The run records
    the config as given (so that an unchanged command is the same run) and the resolved source beside it."""
    roi = dataset_roi(store.meta("datasets", cfg.dataset))
    source = heatmap_source_for(cfg.heatmap_source, roi, cfg.dataset)
    if cfg.heatmap_parts and roi != "keypoints":
        raise PipelineError(
            f"--heatmap-parts renders body parts from keypoints; datasets/{cfg.dataset} was built with "
            f"--roi {roi}"
        )
    if roi != "keypoints":
        log.info("heatmap source: %s (datasets/%s was built with --roi %s)", source, cfg.dataset, roi)
    return replace(cfg, heatmap_source=source)


def train(cfg: TrainConfig, store: Store) -> dict[str, Any]:
    """Train and publish runs/<cfg.name>; returns a summary (losses, alpha, throughput, truncation rate)."""
    cfg = cfg.resolved()
    if cfg.zeroshot_every:
        zeroshot_tasks(cfg.zeroshot_tasks)  # an unknown task id fails every rank before anything is built
    _resolve_shapes(cfg)
    run_cfg = _with_heatmap_source(cfg, store)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch_device(cfg.device, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    info = init_distributed(device)
    try:
        if cfg.batch_size * info.world < 2:
            raise PipelineError(
                f"--batch-size {cfg.batch_size} x {info.world} process(es): a contrastive loss needs at "
                f"least 2 pairs per step (each pair's negatives are the others); 1 learns nothing (loss nan)"
            )
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
                seed_from_existing=cfg.resume,  # --resume of a finished run trains it further
            ) as w:
                trainer = Trainer(run_cfg, store, info, device, w.dir)
                summary = trainer.run()
                w.extra["preprocess"] = record_run(trainer, w.dir)
                w.extra["checksums"] = {"model.pt": file_sha256(w.dir / "model.pt")}  # load_model verifies it
                w.counts.update({"steps": summary["steps"], "images": summary["images"]})
                w.extra["summary"] = summary
                w.extra["heatmap_source"] = run_cfg.heatmap_source  # the config's None, resolved
                if trainer.locked.towers:
                    w.extra["locked"] = trainer.locked.towers  # the model card says what was locked
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
            summary = Trainer(run_cfg, store, info, device, store.staging_dir("runs", cfg.name)).run()
        return summary
    finally:
        if info.started_here and dist.is_initialized():
            dist.destroy_process_group()
