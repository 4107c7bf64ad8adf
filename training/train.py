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
training/export.py; training/inference.py load_model reads it all).
The run is staged aside and published when training ends; an interrupted or failed run keeps its staging
folder, so `--resume` continues from its last checkpoint, mid-epoch, with the very same batches (data order
and augmentation are functions of seed and step). A changed --lr (or other RESUME_APPLIES setting) takes
effect from the resume step and is recorded in the summary's `resumes`; a changed batch size, seed or model
(RESUME_REFUSES) is refused.

The step never waits on the device: metrics stay on the device and are fetched every `log_every` steps
in one transfer (which is also when a NaN/inf loss is noticed). A checkpoint is written only when the
weights it saves are finite, and last.json records its sha256, which --resume checks; meta.json records
model.pt's, which load_model checks.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from open_clip.model import set_model_preprocess_cfg
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.store import Store, file_sha256, verify_sha256
from training.config import FOCUS_VARIANT_DEFAULTS, RECIPES, TrainConfig
from training.data import (
    BatchLoader,
    cache_side,
    dataset_roi,
    dataset_skeletons,
    heatmap_source_for,
    load_train_data,
    node_cache,
    shard_paths,
)
from training.export import export_model_cfg, write_export
from training.live_metrics import LiveMetrics
from training.losses import clip_loss, focusclip_loss, gather_with_grad
from training.metrics_log import MetricsLog
from training.model import FocusCLIP
from training.preprocess import Preprocess
from training.stream import StreamOptions, choose_data_mode, split_rows, stream_loader
from training.towers import Towers, arch_config, create_clip, foreign_towers, has_schema, make_tokenizer

__all__ = ["RECIPES", "TrainConfig", "train"]

log = logging.getLogger(__name__)

TERMS = {
    "clip": ["loss_image_text"],
    "focusclip": ["loss_masked_image", "loss_masked_text", "loss_image_text"],
}


# What --resume takes from the command line from the resume step on: the optimizer's hyperparameters and the
# schedule are set anew (so "lower --lr and --resume" does what it says), and every change is recorded.
RESUME_APPLIES = (
    "lr", "momentum", "weight_decay", "betas", "eps", "grad_clip", "schedule", "warmup", "epochs",
    "max_steps", "precision",
)  # fmt: skip
# What it refuses to change: the data order (batch size, seed), the model and the optimizer's state layout.
RESUME_REFUSES = (
    "dataset", "split", "model_type", "arch", "image_size", "context_length", "batch_size", "seed",
    "optimizer", "loss", "temperature", "learn_temperature", "alpha_param", "learn_alpha",
    "normalize", "interpolation", "cache_scale",  # the pixels the model has learnt from
    "masked_view", "loss_weights", "focus_mode",  # the FocusCLIP variant
)  # fmt: skip


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _changes(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The keys whose value differs; a key an older checkpoint lacks had the variant's default then."""
    old = {**FOCUS_VARIANT_DEFAULTS, **old}
    return {
        k: {"from": old.get(k), "to": new.get(k)} for k in keys if _plain(old.get(k)) != _plain(new.get(k))
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


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup to 1, then constant or cosine to 0 at `total` (step counts completed steps)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress_frac = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac)))


def build_optimizer(model: FocusCLIP, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """open_clip_train's two groups over the open_clip model's parameters, in its order and with its rule (no
    weight decay on gains, biases, norms and the logit scale), so that a checkpoint's optimizer state loads
    in open_clip_train; FocusCLIP's alpha, which a plain CLIP has no place for, is a third group."""
    decay, no_decay = [], []
    for name, p in model.clip.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
        (no_decay if skip else decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": cfg.weight_decay}]
    own = [p for name, p in model.named_parameters() if not name.startswith("clip.") and p.requires_grad]
    if own:
        groups.append({"params": own, "weight_decay": 0.0})
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **fused)


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the first two groups, as open_clip_train's optimizer over a plain CLIP holds them; the rest)."""
    groups = state["param_groups"]
    ids = {i for g in groups[:2] for i in g["params"]}
    clip = {"state": {i: s for i, s in state["state"].items() if i in ids}, "param_groups": groups[:2]}
    own = {"state": {i: s for i, s in state["state"].items() if i not in ids}, "param_groups": groups[2:]}
    return clip, own


def join_optimizer_state(clip: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    groups = clip["param_groups"] + own["param_groups"]
    return {"state": {**clip["state"], **own["state"]}, "param_groups": groups}


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
        self.resumes: list[dict[str, Any]] = []  # {step, changed} per --resume, kept in the checkpoints

    # ---- set-up ---------------------------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.info.world > 1:
            dist.barrier()

    def setup(self) -> None:
        self._build_model()
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

    def _build_data(self) -> None:
        """The batches: from the node's decoded cache (one process per node decodes it, the others wait and
        map it), or streamed from the Parquet shards (--data stream; auto: when the cache would not fit)."""
        cfg, info = self.cfg, self.info
        views = {
            "image_size": cfg.image_size,
            "device": self.device,
            "seed": cfg.seed,
            "rank": info.rank,
            "crop_scale": cfg.crop_scale,
            "hflip": cfg.hflip,
            "focus": self.focus,
            "heatmap_parts": cfg.heatmap_parts,
            "uniform_heatmap": cfg.heatmap_source == "uniform",
            "channels_last": self.channels_last,
            "masked_view": cfg.masked_view,
        }
        text = {"sample_sentences": cfg.sentence_sampling, "all_descriptions": cfg.all_descriptions}
        self.data_mode = self._data_mode()
        if self.data_mode == "stream":
            opts = StreamOptions(
                batch_size=cfg.batch_size,
                world=info.world,
                rank=info.rank,
                seed=cfg.seed,
                workers=cfg.workers,
                side=cache_side(cfg.image_size, cfg.cache_scale),
                interpolation=cfg.interpolation,
                with_heatmaps=cfg.heatmap_source == "dataset",
                **text,
            )
            self.loader = stream_loader(
                cfg.data_url or str(self.store.path("datasets", cfg.dataset)),
                split=cfg.split,
                skeletons=dataset_skeletons(self.store.meta("datasets", cfg.dataset)),
                opts=opts,
                tokenizer=self.tokenizer,
                context_length=cfg.context_length,
                **views,
            )
            self.num_images = self.loader.source.num_usable
        else:
            self.data = self._load_data(self.tokenizer)
            self.loader = BatchLoader(self.data, batch_size=cfg.batch_size, world=info.world, **views, **text)
            self.num_images = len(self.data)
        self.spe = self.loader.steps_per_epoch
        self.total = cfg.max_steps or self.spe * cfg.epochs
        self.ckpt_every = cfg.checkpoint_every or self.spe

    def _build_optimizer(self) -> None:
        """Optimizer, the schedule sized to this run's steps, and the precision's autocast and scaler."""
        cfg, dev = self.cfg, self.device
        self.warmup = int(round(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * self.total))
        self.optimizer = build_optimizer(self.model, cfg, dev)
        total, wu, sched = self.total, self.warmup, cfg.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=total, warmup=wu, schedule=sched)
        )
        self.amp_dtype = _autocast_dtype(cfg, dev)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp_dtype == torch.float16)

    def _data_mode(self) -> str:
        """--data as this run uses it (training/stream.py choose_data_mode); with several processes, auto
        streams on every rank when any node's cache disk is short, so that all ranks read one order."""
        cfg = self.cfg
        if cfg.data_url:
            return "stream"
        with_heat = cfg.heatmap_source == "dataset"
        side = cache_side(cfg.image_size, cfg.cache_scale)
        cache = node_cache(
            self.store,
            cfg.dataset,
            split=cfg.split,
            side=side,
            interpolation=cfg.interpolation,
            with_heat=with_heat,
            cache_dir=cfg.cache_dir,
        )
        rows = split_rows(shard_paths(self.store.path("datasets", cfg.dataset), cfg.split))
        mode = choose_data_mode(cfg.data, cache, rows=rows, side=side, with_heatmaps=with_heat)
        if cfg.data == "auto" and self.info.world > 1:
            streams = torch.tensor([float(mode == "stream")], device=self.device)
            dist.all_reduce(streams, op=dist.ReduceOp.MAX)
            mode = "stream" if streams.item() > 0 else "cache"
        return mode

    def _load_data(self, tokenizer):
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
            interpolation=cfg.interpolation,
            cache_dir=cfg.cache_dir,
        )

    # ---- checkpoints ----------------------------------------------------------------------------------
    def _checkpoint_state(self, step: int) -> dict[str, Any]:
        """open_clip_train's checkpoint keys (epoch, name, state_dict, optimizer[, scaler]: its --resume and
        open_clip's --pretrained read them), plus what only FocusCLIP and an exact resume need."""
        clip_opt, own_opt = split_optimizer_state(self.optimizer.state_dict())
        scaler = self.scaler.state_dict()
        return {
            "epoch": step // self.spe,
            "name": self.cfg.name,
            "state_dict": self.model.clip.state_dict(),
            "optimizer": clip_opt,
            **({"scaler": scaler} if scaler else {}),  # open_clip_train loads a non-empty one only
            "focus_state": {k: v for k, v in self.model.state_dict().items() if not k.startswith("clip.")},
            "focus_optimizer": own_opt,
            "scheduler": self.scheduler.state_dict(),
            "step": step,
            "rng": _rng_state(),
            "config": self.cfg.to_dict(),
            "world": self.info.world,
            "resumes": self.resumes,
        }

    def _weights_finite(self) -> bool:
        floats = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        return bool(torch.stack([v.isfinite().all() for v in floats]).all())  # one sync

    def last_good(self) -> str:
        """Where the run can be resumed from, for error messages."""
        try:
            step = json.loads((self.ckpt_dir / "last.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            return "no checkpoint was saved yet"
        return f"the last good checkpoint is {self.ckpt_dir / 'last.pt'} (step {step})"

    def save_checkpoint(self, step: int, last_loss: float | None) -> None:
        # Checked here, on the weights being saved: the loss seen last was computed before this update.
        if not self._weights_finite():
            raise PipelineError(
                f"weights are not finite after step {step}: training stopped; {self.last_good()} "
                f"(lower --lr, or use --precision fp32, then --resume)"
            )
        if not self.info.main:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        _atomic_save(self._checkpoint_state(step), self.ckpt_dir / "last.pt")
        info = {
            "step": step,
            "epoch": step // self.spe,
            "loss": last_loss,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "sha256": file_sha256(self.ckpt_dir / "last.pt"),  # verified by --resume
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
        try:
            recorded = json.loads((self.ckpt_dir / "last.json").read_text()).get("sha256")
        except (OSError, ValueError):
            recorded = None
        verify_sha256(path, recorded, remedy="start the run again with --overwrite instead of --resume")
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt.get("world", 1) != self.info.world:
            raise PipelineError(
                f"{path} was written by a run with {ckpt.get('world')} processes; resume with the "
                f"same number (this one has {self.info.world}) so the data order stays the same"
            )
        new = self.cfg.to_dict()
        refused = _changes(ckpt["config"], new, RESUME_REFUSES)
        if refused:
            what = ", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in refused.items())
            raise PipelineError(
                f"--resume cannot change {what} (the data order, the model or the optimizer state depend "
                f"on it); resume with the run's values, or start a new run (--name, or --overwrite)"
            )
        clip_state = {f"clip.{k}": v for k, v in ckpt["state_dict"].items()}
        self.model.load_state_dict({**clip_state, **ckpt["focus_state"]})
        self.optimizer.load_state_dict(join_optimizer_state(ckpt["optimizer"], ckpt["focus_optimizer"]))
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):  # only an fp16 run has one: resuming with --precision fp16 starts a scaler
            self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        changed = _changes(ckpt["config"], new, RESUME_APPLIES)
        self.resumes = [*ckpt.get("resumes", []), {"step": step, "changed": changed}]
        self._apply_optimizer_settings()
        if self.info.main:
            log.info("resumed from %s at step %d (epoch %d)", path, step, step // self.spe)
            for k, v in changed.items():
                log.warning(
                    "--resume: %s changed from %s to %s, applied from step %d on", k, v["from"], v["to"], step
                )
        return step

    def _apply_optimizer_settings(self) -> None:
        """Put this config's hyperparameters into the loaded optimizer and schedule (the state dicts carry the
        old run's); the schedule's lambda is already built from this config's steps and warmup."""
        cfg = self.cfg
        groups = self.optimizer.param_groups  # build_optimizer's order: no decay, decay[, FocusCLIP's own]
        groups[1]["weight_decay"] = cfg.weight_decay
        for group in groups:
            group["initial_lr"] = cfg.lr
            if cfg.optimizer == "sgd":
                group["momentum"] = cfg.momentum
            else:
                group["betas"], group["eps"] = tuple(cfg.betas), cfg.eps
        self.scheduler.base_lrs = [cfg.lr] * len(groups)
        for group, fn in zip(groups, self.scheduler.lr_lambdas, strict=True):
            group["lr"] = cfg.lr * fn(self.scheduler.last_epoch)

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
            self.save_checkpoint(step, metrics.last_loss)
        summary = self._summary(step, metrics.summary(step - start))
        if self.info.main:
            self._write_model()
            plot_metrics(self.metrics_path, self.run_dir / "loss_curve.png", self.terms)
        return summary

    def _start_step(self) -> int:
        """0 for a new run (old checkpoints and metrics cleared), the checkpoint's step with --resume."""
        start = self.load_checkpoint() if self.cfg.resume else 0
        if self.info.main and not self.cfg.resume and self.ckpt_dir.exists():
            for f in self.ckpt_dir.glob("*"):
                f.unlink()
        if self.info.main:
            if start == 0:
                self.metrics_path.unlink(missing_ok=True)
            else:
                self._trim_metrics(start)
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
        cfg = self.cfg
        with _StopFlag() as flag:
            while step < self.total:
                epoch, i = divmod(step, self.spe)
                batch = self.loader.get(epoch, i)
                lr = self.optimizer.param_groups[0]["lr"]  # this step's lr, a host float
                values = self._step(net, batch)
                step += 1
                metrics.add(step, values, lr, batch.text_stats)
                stop = self._stop_requested(flag, step)
                if step % cfg.log_every == 0 or step == self.total or stop:
                    metrics.flush(self.last_good)
                if step % self.ckpt_every == 0 or stop:
                    metrics.flush(self.last_good)
                    self.save_checkpoint(step, metrics.last_loss)
                    metrics.restart_window()  # saving is not training time
                if stop:
                    raise KeyboardInterrupt
        metrics.flush(self.last_good)
        return step

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
        }
        if self.resumes:
            summary["resumes"] = self.resumes
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
    _resolve_shapes(cfg)
    run_cfg = _with_heatmap_source(cfg, store)
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
            ) as w:
                trainer = Trainer(run_cfg, store, info, device, w.dir)
                summary = trainer.run()
                w.extra["preprocess"] = record_run(trainer, w.dir)
                w.extra["checksums"] = {"model.pt": file_sha256(w.dir / "model.pt")}  # load_model verifies it
                w.counts.update({"steps": summary["steps"], "images": summary["images"]})
                w.extra["summary"] = summary
                w.extra["heatmap_source"] = run_cfg.heatmap_source  # the config's None, resolved
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
