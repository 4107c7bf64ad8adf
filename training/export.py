"""A run as open_clip itself loads it, with nothing of focus-pipeline installed.

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:runs/<name>/export")
    tokenizer = open_clip.get_tokenizer("local-dir:runs/<name>/export")

runs/<name>/export/ holds open_clip_config.json, whose model_cfg carries every shape override the run used
(context length, image size: without them open_clip would rebuild the architecture's defaults and stretch
the position tables silently) and whose preprocess_cfg is the run's own pipeline (squash or shortest side,
size, interpolation, mean/std), and open_clip_model.safetensors (the weights, fp32). The layout is
open_clip's `save_for_hf`, so the folder is also what `push` uploads to a Hub model repo.

An architecture with our all-positions mean pooler (FocusCLIP-ViT-B-16-BERT) needs `import training.towers`
(which registers the pooler with open_clip) before loading; every other architecture loads in plain open_clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from training.preprocess import Preprocess
from training.towers import arch_config

CONFIG_NAME = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME
WEIGHTS_NAME = "open_clip_model.safetensors"  # open_clip.constants.HF_SAFE_WEIGHTS_NAME


def export_model_cfg(arch: str, *, context_length: int, image_size: int) -> dict[str, Any]:
    """The architecture's open_clip config with the run's context length and image size written in."""
    cfg = arch_config(arch)
    cfg.setdefault("text_cfg", {})["context_length"] = int(context_length)
    cfg["vision_cfg"]["image_size"] = int(image_size)
    return cfg


def write_export(
    clip: torch.nn.Module, model_cfg: dict[str, Any], preprocess: Preprocess, folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu()
               for k, v in clip.state_dict().items()}  # fmt: skip
    save_file(tensors, folder / WEIGHTS_NAME)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess.open_clip_cfg()}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
