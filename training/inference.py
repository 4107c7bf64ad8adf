"""Load a trained model for inference: from a run folder of the store, or any open_clip arch + checkpoint.

    model, preprocess, tokenizer = load_model(run_dir=store.path("runs", "demo-focusclip"), device="cpu")
    model, preprocess, tokenizer = load_model(arch="ViT-B-16", checkpoint="model.pt")

A run folder holds model.pt (a state dict open_clip loads as `pretrained=`) and meta.json whose config
records arch, context_length and image_size. FocusCLIP needs nothing extra at inference: the heatmap view
exists only in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

from pipeline.errors import PipelineError
from pipeline.store import verify_sha256

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Make our own architectures (focus-tiny, focus-small) known to open_clip by name."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIGS)
        _registered = True


def load_model(
    *,
    run_dir: Path | None = None,
    arch: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
):
    """Returns (model in eval mode, preprocess transform, tokenizer)."""
    register_model_configs()
    context_length = image_size = None
    if run_dir is not None:
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
        cfg = meta["config"]
        arch = cfg["arch"]
        context_length = cfg.get("context_length")
        image_size = cfg.get("image_size")
        checkpoint = Path(run_dir) / "model.pt"
        if "model.pt" in meta.get("checksums", {}):  # runs published before checksums have none
            verify_sha256(checkpoint, meta["checksums"]["model.pt"], remedy="train the run again")
    if arch is None:
        raise PipelineError("give a run, or an architecture (--arch) and a checkpoint")
    if arch not in open_clip.list_models():
        raise PipelineError(f"unknown open_clip architecture {arch!r}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise PipelineError(f"checkpoint not found: {checkpoint}")
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch,
        pretrained=None if checkpoint is None else str(checkpoint),
        force_context_length=context_length,
        force_image_size=image_size,
        device=device,
        weights_only=True,
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch, context_length=context_length)
    return model, preprocess, tokenizer
