"""A run's checkpoints: checkpoints/last.pt (+ last.json with its step, loss and sha256), written atomically
and only when the weights are finite, and read back by --resume, which checks the sha256 and what changed.

    ckpt = Checkpointer(run_dir / "checkpoints", info, cfg, model, optimizer, scheduler, scaler, spe, dev,
                        data_order=run_data.order)
    ckpt.save(step, last_loss)        # the main process writes; every rank checks its weights
    step = ckpt.load()                # --resume: model, optimizer, schedule, scaler and RNG, exactly
    ckpt.last_good()                  # "the last good checkpoint is ... (step N)", for error messages

last.pt carries open_clip_train's keys (epoch, name, state_dict, optimizer[, scaler]: its --resume and
open_clip's --pretrained read them), plus what only FocusCLIP and an exact resume need.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.store import file_sha256, verify_sha256
from training.config import TrainConfig, plain
from training.distributed import DistInfo
from training.model import FocusCLIP
from training.optim import apply_optimizer_settings, join_optimizer_state, split_optimizer_state

log = logging.getLogger(__name__)

# What --resume takes from the command line from the resume step on: the optimizer's hyperparameters and the
# schedule are set anew (so "lower --lr and --resume" does what it says), and so are the zero-shot
# evaluations; every change is recorded.
RESUME_APPLIES = (
    "lr", "momentum", "weight_decay", "betas", "eps", "grad_clip", "schedule", "warmup", "epochs",
    "max_steps", "precision", "zeroshot_every", "zeroshot_tasks", "data_root",
)  # fmt: skip
# What it refuses to change: the data order (batch size, seed), the model and the optimizer's state layout
# (a locked tower's parameters have no optimizer state: locking or unlocking one changes that layout), and
# what the first steps were trained on and from: a change would be recorded as if the whole run had it.
RESUME_REFUSES = (
    "dataset", "split", "model_type", "arch", "image_size", "context_length", "batch_size", "seed",
    "optimizer", "loss", "temperature", "learn_temperature", "alpha_param", "learn_alpha", "alpha_init",
    "normalize", "interpolation", "cache_scale",  # the pixels the model has learnt from
    "crop_scale", "hflip", "sentence_sampling", "all_descriptions", "heatmap_source", "heatmap_parts",
    "masked_view", "loss_weights", "focus_mode",  # the FocusCLIP variant
    "pretrained", "pretrained_towers", "image_tower", "text_tower",  # the weights it started from
    "lock_image", "lock_text", "unlock_last",
)  # fmt: skip
# A setting a checkpoint's config does not record (it was written before the setting existed) had its default.
_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING
}


def _changes(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The keys whose value differs; a key an older checkpoint lacks had its default then."""
    old = {**_DEFAULTS, **old}
    return {k: {"from": old.get(k), "to": new.get(k)} for k in keys if plain(old.get(k)) != plain(new.get(k))}


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
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


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(
        self,
        folder: Path,
        info: DistInfo,
        cfg: TrainConfig,
        model: FocusCLIP,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
        scaler: torch.amp.GradScaler,
        steps_per_epoch: int,
        device: torch.device,
        *,
        data_order: dict[str, Any],
    ):
        self.dir, self.info, self.cfg, self.device = folder, info, cfg, device
        self.data_order = data_order  # training/batches.py RunData.order
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.spe = steps_per_epoch
        self.resumes: list[dict[str, Any]] = []  # {step, changed} per --resume, kept in the checkpoints

    def _state(self, step: int) -> dict[str, Any]:
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
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "world": self.info.world,
            "data_order": self.data_order,
            "resumes": self.resumes,
        }

    def _weights_finite(self) -> bool:
        floats = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        return bool(torch.stack([v.isfinite().all() for v in floats]).all())  # one sync

    def last_good(self) -> str:
        """Where the run can be resumed from, for error messages."""
        try:
            step = json.loads((self.dir / "last.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            return "no checkpoint was saved yet"
        return f"the last good checkpoint is {self.dir / 'last.pt'} (step {step})"

    def clear(self) -> None:
        """A new run: an earlier attempt's checkpoints are not this run's."""
        if self.dir.exists():
            for f in self.dir.glob("*"):
                f.unlink()

    def save(self, step: int, last_loss: float | None) -> None:
        # Checked here, on the weights being saved: the loss seen last was computed before this update.
        if not self._weights_finite():
            raise PipelineError(
                f"weights are not finite after step {step}: training stopped; {self.last_good()} "
                f"(lower --lr, or use --precision fp32, then --resume)"
            )
        if not self.info.main:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_save(self._state(step), self.dir / "last.pt")
        info = {
            "step": step,
            "epoch": step // self.spe,
            "loss": last_loss,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "sha256": file_sha256(self.dir / "last.pt"),  # verified by --resume
        }
        tmp = self.dir / "last.json.tmp"
        tmp.write_text(json.dumps(info) + "\n")
        os.replace(tmp, self.dir / "last.json")

    def load(self) -> int:
        """The checkpoint's state into the model, optimizer, schedule, scaler and RNGs; returns its step
        (0, with a warning, when there is none)."""
        path = self.dir / "last.pt"
        if not path.is_file():
            if self.info.main:
                log.warning("--resume: no checkpoint at %s, starting from step 0", path)
            return 0
        try:
            recorded = json.loads((self.dir / "last.json").read_text()).get("sha256")
        except (OSError, ValueError):
            recorded = None
        verify_sha256(path, recorded, remedy="start the run again with --overwrite instead of --resume")
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt.get("world", 1) != self.info.world:
            raise PipelineError(
                f"{path} was written by a run with {ckpt.get('world')} processes; resume with the "
                f"same number (this one has {self.info.world}) so the data order stays the same"
            )
        # None: written before the order was recorded (the cache mode's, unless it streamed)
        was = ckpt.get("data_order")
        if was is not None and was != self.data_order:
            raise PipelineError(
                f"{path} was written by a run that read its batches as {_order(was)}; this one would read "
                f"them as {_order(self.data_order)}, a different order: resume with --data {was['data']}"
                + (f" --workers {was['workers']}" if "workers" in was else "")
            )
        new, old = self.cfg.to_dict(), ckpt["config"]
        refused = _changes(old, new, RESUME_REFUSES)
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
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        changed = _changes(old, new, RESUME_APPLIES)
        self.resumes = [*ckpt.get("resumes", []), {"step": step, "changed": changed}]
        apply_optimizer_settings(self.optimizer, self.scheduler, self.cfg)
        if self.info.main:
            log.info("resumed from %s at step %d (epoch %d)", path, step, step // self.spe)
            for k, v in changed.items():
                log.warning(
                    "--resume: %s changed from %s to %s, applied from step %d on", k, v["from"], v["to"], step
                )
        return step


def _order(order: dict[str, Any]) -> str:
    return "a stream over {workers} worker(s)".format(**order) if order["data"] == "stream" else "the cache"
