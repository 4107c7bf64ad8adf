"""Load a trained model for inference: from a run folder of the store, or any open_clip arch + checkpoint.

    model, preprocess, tokenizer = load_model(run_dir=store.path("runs", "demo-focusclip"), device="cpu")
    model, preprocess, tokenizer = load_model(arch="ViT-B-16", checkpoint="model.pt")

A run folder holds model.pt (a state dict open_clip loads as `pretrained=`) and meta.json whose config
records arch, context_length and image_size, and whose "preprocess" is the image pipeline the run trained
with (training/preprocess.py): `preprocess` is built from it and set as the model's open_clip
preprocess_cfg, so a run is always scored on the pixels it trained on. Runs from before it was recorded
trained on squashed images with the architecture's mean/std, and get that. A Hugging Face text tower is
rebuilt from the run's text-tower/ folder (config and tokenizer), so no hub is needed. FocusCLIP needs
nothing extra at inference: the heatmap view exists only in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2

from pipeline.errors import PipelineError
from pipeline.store import verify_sha256

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Make our architectures (training/model_configs) and the reference text pooler known to open_clip."""
    global _registered
    if not _registered:
        import training.towers  # noqa: F401 (registers all_positions_mean_pooler)

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
    from training.preprocess import Preprocess
    from training.towers import Towers, create_clip, make_tokenizer

    register_model_configs()
    context_length = image_size = text_tower = recorded = None
    if run_dir is not None:
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
        cfg = meta["config"]
        arch = cfg["arch"]
        context_length = cfg.get("context_length")
        image_size = cfg.get("image_size")
        checkpoint = Path(run_dir) / "model.pt"
        if "model.pt" in meta.get("checksums", {}):  # runs published before checksums have none
            verify_sha256(checkpoint, meta["checksums"]["model.pt"], remedy="train the run again")
        recorded = meta.get("preprocess")
        if (Path(run_dir) / "text-tower").is_dir():
            text_tower = str(Path(run_dir) / "text-tower")
    if arch is None:
        raise PipelineError("give a run, or an architecture (--arch) and a checkpoint")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise PipelineError(f"checkpoint not found: {checkpoint}")
    # text=text_tower: the tower's config and tokenizer; its weights come with the checkpoint just after
    model = create_clip(
        arch,
        context_length=context_length,
        image_size=image_size,
        pretrained=checkpoint,
        towers=Towers(text=text_tower),
    )
    if recorded is not None:
        pp = Preprocess.from_dict(recorded)
    elif run_dir is not None:
        side = model.visual.image_size
        pp = Preprocess.for_run(
            size=side[0] if isinstance(side, tuple | list) else side,
            context_length=model.context_length,
            normalize="arch",
            clip=model,
        )
    else:  # a bare checkpoint: open_clip's own preprocessing for the architecture
        pp = None
    if pp is not None:
        set_model_preprocess_cfg(model, pp.open_clip_cfg())
        preprocess = pp.transform()
    else:
        preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    model.to(device).eval()
    context_length = context_length or model.context_length
    tokenizer = make_tokenizer(arch, context_length=context_length, text_tower=text_tower)
    return model, preprocess, tokenizer
