"""The trained model as it leaves the store: runs/<name>/export/, which `push` uploads, `load_export` reads.

    from training.inference import load_export
    model, preprocess, tokenizer = load_export("runs/<name>/export")     # every architecture, offline

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:runs/<name>/export")
    tokenizer = open_clip.get_tokenizer("local-dir:runs/<name>/export")  # open_clip's own towers only

The layout is open_clip's `save_for_hf`, so the folder is also a Hub model repo: open_clip_config.json, whose
model_cfg carries every shape override the run used (context length, image size: without them open_clip
would rebuild the architecture's defaults and stretch the position tables silently) and whose preprocess_cfg
is the run's own pipeline; open_clip_model.safetensors (the weights, fp32); a Hugging Face text tower's
config.json and tokenizer files; and SHA256SUMS, the sha256 of every other file, written when the run is
exported (`sha256sum -c SHA256SUMS` checks it anywhere). push, eval and our loader check it before they read.

Plain open_clip cannot load an export with a Hugging Face text tower. It rebuilds the tower from
`hf_model_name`, a hub id or a path from the current folder, never the export's own files; and the paper's
tower (FocusCLIP-ViT-B-16-BERT) pools with the reference's mean over all positions, which no open_clip pooler
expresses (its mean_pooler averages the tokens the attention mask keeps, and BERT must get that mask). So
the exported hf_model_name is LOAD_WITH_FOCUS_PIPELINE, which plain open_clip fails on at once, offline, with
an error that shows it. Nor can it load a timm image tower at a size other than timm's default (it builds
the default and loads the weights before any resize). `load_export` loads both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

from pipeline.errors import PipelineError
from pipeline.store import file_sha256
from training.preprocess import Preprocess
from training.towers import arch_config, foreign_towers

CONFIG_NAME = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME
WEIGHTS_NAME = "open_clip_model.safetensors"  # open_clip.constants.HF_SAFE_WEIGHTS_NAME
MANIFEST_NAME = "SHA256SUMS"  # coreutils' name and line format: "<sha256>  <file name>"
MODEL_CARD_NAME = "README.md"  # added by push; not part of the export
# Not a hub id nor a path (spaces, ":"): transformers refuses it before any network access and quotes it.
LOAD_WITH_FOCUS_PIPELINE = (
    "focus-pipeline export, text tower in its folder: from training.inference import load_export"
)
_LINE = re.compile(r"([0-9a-f]{64})  ([^/\\]+)")


def export_model_cfg(arch: str, *, context_length: int, image_size: int) -> dict[str, Any]:
    """The architecture's open_clip config with the run's context length and image size written in, and a
    Hugging Face text tower named as the export's own (LOAD_WITH_FOCUS_PIPELINE), not by its hub id."""
    cfg = arch_config(arch)
    text_cfg = cfg.setdefault("text_cfg", {})
    text_cfg["context_length"] = int(context_length)
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = LOAD_WITH_FOCUS_PIPELINE
    cfg["vision_cfg"]["image_size"] = int(image_size)
    return cfg


def plain_open_clip_loads(model_cfg: dict[str, Any]) -> bool:
    """Can open_clip alone load an export of this config (see the module docstring)?"""
    timm_name, hf_name = foreign_towers(model_cfg)
    if hf_name:
        return False
    if timm_name:
        size = model_cfg["vision_cfg"].get("image_size", 224)
        size = tuple(size) if isinstance(size, list | tuple) else (size, size)
        default = timm.models.get_pretrained_cfg(timm_name)
        return default is not None and tuple(default.input_size[-2:]) == size
    return True


def write_export(
    clip: torch.nn.Module, model_cfg: dict[str, Any], preprocess: Preprocess, folder: Path, *, tokenizer=None
) -> None:
    """Weights, config, a Hugging Face text tower's config and tokenizer (`tokenizer`, its HFTokenizer), and
    the manifest of them all, last."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu()
               for k, v in clip.state_dict().items()}  # fmt: skip
    save_file(tensors, folder / WEIGHTS_NAME)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess.open_clip_cfg()}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    text = getattr(clip, "text", None)
    if hasattr(text, "config") and hasattr(text, "transformer"):  # open_clip's HFTextEncoder
        if tokenizer is None:
            raise ValueError("a Hugging Face text tower is exported with its tokenizer")
        text.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    write_manifest(folder)


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_NAME)
    (folder / MANIFEST_NAME).write_text("".join(f"{file_sha256(p)}  {p.name}\n" for p in files))


def read_manifest(folder: Path) -> dict[str, str] | None:
    """{file name: sha256} of the folder's SHA256SUMS; None when it has none."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):  # every line ends with one, the last too
        raise PipelineError(f"{path}: truncated (the manifest is damaged)")
    entries = {}
    for n, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise PipelineError(f"{path}, line {n}: not '<sha256>  <file name>' (the manifest is damaged)")
        entries[match[2]] = match[1]
    if not entries:
        raise PipelineError(f"{path}: lists no file (the manifest is damaged)")
    return entries


def verify_export(folder: Path, *, remedy: str, files: Iterable[str] | None = None) -> None:
    """Check `files` of an export (default: every file its SHA256SUMS lists) against it, and that it holds
    no file the manifest does not list; a one-line error names the first file missing, extra or different."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise PipelineError(
            f"{folder}: no {MANIFEST_NAME} (exported before checksums were recorded), so its files cannot be "
            f"checked; {remedy}"
        )
    unlisted = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in manifest)
    if extra := [name for name in unlisted if name not in (MANIFEST_NAME, MODEL_CARD_NAME)]:
        raise PipelineError(f"{folder / extra[0]}: not listed in {MANIFEST_NAME}; remove it or {remedy}")
    for name in manifest if files is None else list(files):
        path = folder / name
        if name not in manifest or not path.is_file():
            raise PipelineError(f"{path}: missing (it is part of the export); {remedy}")
        got = file_sha256(path)
        if got != manifest[name]:
            raise PipelineError(
                f"{path}: corrupt (sha256 {got[:12]}... differs from the {manifest[name][:12]}... that "
                f"{MANIFEST_NAME} recorded at export); {remedy}"
            )
