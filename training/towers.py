"""Build the open_clip model a run trains, with the base weights it starts from, and its tokenizer.

    clip = create_clip("FocusCLIP-ViT-B-16-BERT", towers=Towers(hub=True))           # timm + HF weights
    clip = create_clip("FocusCLIP-ViT-B-16-BERT", towers=Towers(image="vit_b16.safetensors",
                                                                text="~/models/bert-base-uncased"))
    clip = create_clip("ViT-B-16", pretrained="laion2b_s34b_b88k")  # or a file, local-dir:DIR, hf-hub:ID
    tokenizer = make_tokenizer("FocusCLIP-ViT-B-16-BERT", context_length=512, text_tower=None)

Architectures are open_clip model configs (training/model_configs/*.json). Those with a timm image tower
(`timm_model_name`) or a Hugging Face text tower (`hf_model_name`) can start from the towers' own base
weights: from the hub (`Towers(hub=True)`), or offline from a timm state-dict file (or a folder holding
one) and a Hugging Face model folder (`save_pretrained` / a hub snapshot: config, tokenizer, weights).
A Hugging Face text tower needs its config and tokenizer even at random init, so offline it needs the
folder too. `--pretrained` starts the whole model from CLIP weights instead.

The reference code pools BERT's last hidden states with nn.AdaptiveAvgPool1d over ALL context positions,
padding included; open_clip's `mean_pooler` averages the real tokens only. `all_positions_mean_pooler`
(registered with open_clip here) is the reference's, and FocusCLIP-ViT-B-16-BERT uses it.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip import hf_model
from open_clip.factory import _get_hf_config, load_state_dict
from open_clip.model import set_model_preprocess_cfg
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from open_clip.tokenizer import HFTokenizer
from timm.layers import to_2tuple
from torch import nn

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SCHEMAS = ("local-dir:", "hf-hub:")
# file names of a timm checkpoint inside a folder (a hub snapshot of timm/<model>), preferred first
_TIMM_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin", "model.pth")
MODEL_CONFIGS = Path(__file__).parent / "model_configs"
_registered = False


class AllPositionsMeanPooler(nn.Module):
    """Mean of the last hidden states over every context position, padding included (the reference code's
    AdaptiveAvgPool1d; BERT itself still gets the attention mask, so real tokens never attend to padding)."""

    def forward(self, x, attention_mask: torch.Tensor) -> torch.Tensor:
        return x.last_hidden_state.mean(dim=1)


hf_model.register_pooler(AllPositionsMeanPooler)


@dataclass(frozen=True, slots=True)
class Towers:
    """Where the image and text towers' base weights come from (ignored by towers open_clip builds itself).

    hub: timm and Hugging Face weights from the hub. image: a timm state-dict file, or a folder with one.
    text: a Hugging Face model folder. Without any of them the towers start from random weights."""

    hub: bool = False
    image: str | None = None
    text: str | None = None

    @property
    def any(self) -> bool:
        return self.hub or self.image is not None or self.text is not None


def register_model_configs() -> None:
    """Make our architectures (training/model_configs) known to open_clip (importing this module registered
    the reference text pooler)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIGS)
        _registered = True


def has_schema(name: str | None) -> bool:
    return bool(name) and name.startswith(SCHEMAS)


def arch_config(arch: str) -> dict[str, Any]:
    """A copy of the open_clip model config of `arch`: a registered name, local-dir:PATH or hf-hub:ID."""
    register_model_configs()
    if arch.startswith("local-dir:"):
        path = Path(arch.removeprefix("local-dir:")).expanduser() / "open_clip_config.json"
        if not path.is_file():
            raise PipelineError(f"{arch}: no open_clip_config.json in that folder")
        cfg = json.loads(path.read_text()).get("model_cfg")
        if cfg is None:
            raise PipelineError(f"{path}: no 'model_cfg' in it")
        return cfg
    if arch.startswith("hf-hub:"):
        try:
            return _get_hf_config(arch.removeprefix("hf-hub:"))["model_cfg"]
        except Exception as err:  # offline, no such repo, or no open_clip config in it
            raise PipelineError(
                f"{arch}: cannot read its open_clip config ({_first_line(err)}); offline, download the repo "
                "where the hub is reachable and pass --pretrained local-dir:DIR"
            ) from None
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise PipelineError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    return copy.deepcopy(cfg)


def foreign_towers(model_cfg: dict[str, Any]) -> tuple[str | None, str | None]:
    """(timm model name, Hugging Face model name) of the config's towers, None where open_clip builds it."""
    return model_cfg["vision_cfg"].get("timm_model_name"), model_cfg.get("text_cfg", {}).get("hf_model_name")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def own_text_tower(arch: str) -> str | None:
    """The folder of a local-dir: architecture whose Hugging Face text tower lives in it, as an export's does
    (its config.json and tokenizer files beside open_clip_config.json; training/export.py)."""
    if not arch.startswith("local-dir:") or not foreign_towers(arch_config(arch))[1]:
        return None
    folder = Path(arch.removeprefix("local-dir:")).expanduser()
    return str(folder) if (folder / "config.json").is_file() else None


def _built_size(trunk: nn.Module) -> tuple[int, int]:
    """The input size a timm trunk was built for: timm's default (open_clip passes it none)."""
    return tuple(trunk.pretrained_cfg["input_size"][-2:])


def _local_text_dir(path: str) -> str:
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise PipelineError(f"text tower {path}: not a Hugging Face model folder (no config.json in it)")
    return str(p)


def _pretrained_tag(arch: str, pretrained: str) -> bool:
    """Is `pretrained` one of open_clip's weight tags for arch? Downloads them now, or says how not to."""
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained not in tags:
        return False
    try:
        download_pretrained(get_pretrained_cfg(arch, pretrained))
    except Exception as err:
        raise PipelineError(
            f"--pretrained {pretrained}: cannot download open_clip's {arch}/{pretrained} weights "
            f"({_first_line(err)}); where the hub is reachable run open_clip.create_model({arch!r}, "
            f"pretrained={pretrained!r}) once, or pass the downloaded file: --pretrained /path/to/file.bin"
        ) from None
    return True


def _check_towers(arch: str, towers: Towers, timm_name: str | None, hf_name: str | None) -> None:
    """Tower weights need towers of their kind in the architecture."""
    if (
        (towers.image and not timm_name)
        or (towers.text and not hf_name)
        or (towers.hub and not timm_name and not hf_name)
    ):
        raise PipelineError(
            f"{arch}: --pretrained-towers / --image-tower / --text-tower need a timm image or Hugging Face "
            "text tower in the architecture (e.g. FocusCLIP-ViT-B-16-BERT); for CLIP weights use --pretrained"
        )


def _weights_source(arch: str, pretrained: str) -> tuple[str | None, str | None]:
    """--pretrained as (a local checkpoint file, or an open_clip tag of arch)."""
    if Path(pretrained).expanduser().is_file():
        return str(Path(pretrained).expanduser()), None
    if _pretrained_tag(arch, pretrained):
        return None, pretrained
    raise PipelineError(
        f"--pretrained {pretrained}: not a file, a local-dir:/hf-hub: id, or an open_clip tag of "
        f"{arch} (tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'})"
    )


def _fit_timm_size(clip: nn.Module, size: tuple[int, int]) -> None:
    """A timm trunk at the run's (or a local-dir's) image size: after the base weights, whose position
    embeddings timm then resamples to the new grid."""
    if _built_size(clip.visual.trunk) != size:
        clip.visual.set_input_size(size)
        set_model_preprocess_cfg(clip, {**clip.visual.preprocess_cfg, "size": size})


def create_clip(
    arch: str,
    *,
    context_length: int | None = None,
    image_size: int | None = None,
    pretrained: str | Path | None = None,
    towers: Towers = Towers(),
) -> nn.Module:
    """The open_clip model of `arch`. pretrained: a local checkpoint file (loaded strictly), an open_clip tag
    of arch, or the arch itself when it is a local-dir:/hf-hub: id (its own weights)."""
    model_cfg = arch_config(arch)
    vision_cfg, text_cfg = model_cfg["vision_cfg"], model_cfg.get("text_cfg", {})
    timm_name, hf_name = foreign_towers(model_cfg)
    # base weights for a HF text tower come from the hub or --text-tower DIR; a local-dir's own tower folder
    # (an export's) holds its config and tokenizer only, its weights are in the checkpoint
    text_weights = towers.hub or towers.text is not None
    if towers.text is None and (own := own_text_tower(arch)):
        towers = replace(towers, text=own)
    _check_towers(arch, towers, timm_name, hf_name)
    if image_size is not None and not timm_name:
        vision_cfg["image_size"] = image_size
    if context_length is not None:
        text_cfg["context_length"] = context_length
    if towers.text is not None and hf_name:
        text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = _local_text_dir(towers.text)
    own_weights = has_schema(arch) and pretrained == arch  # open_clip loads the id's own weights
    file, tag = (None, None) if pretrained is None or own_weights else _weights_source(arch, str(pretrained))
    # whole-model weights replace the towers' base weights: then only their configs are read
    base = pretrained is None
    if timm_name:
        vision_cfg["timm_model_pretrained"] = base and towers.hub and towers.image is None
    if hf_name:
        text_cfg["hf_model_pretrained"] = base and text_weights
    from_hub = [  # what open_clip is about to fetch: timm weights; a HF tower's config, tokenizer (, weights)
        *([timm_name] if timm_name and vision_cfg["timm_model_pretrained"] else []),
        *([hf_name] if hf_name and towers.text is None else []),
    ]
    try:
        clip = open_clip.create_model(
            arch,
            pretrained=tag,
            load_weights=tag is not None or own_weights,
            pretrained_image=bool(vision_cfg.get("timm_model_pretrained")),
            pretrained_text=bool(text_cfg.get("hf_model_pretrained")),
            weights_only=True,
            vision_cfg=vision_cfg,
            text_cfg=text_cfg,
        )
    except Exception as err:
        if not (from_hub or has_schema(arch) or tag):
            raise
        raise PipelineError(
            f"{arch}: cannot fetch {' and '.join(from_hub) or arch} from the "
            f"hub ({_first_line(err)}); offline, pass --image-tower FILE and --text-tower DIR (a "
            "save_pretrained folder) or --pretrained FILE"
        ) from None
    if base and towers.image is not None and timm_name:
        load_image_tower(clip, towers.image)
    if timm_name:
        _fit_timm_size(clip, tuple(to_2tuple(image_size or vision_cfg.get("image_size", 224))))
    if file is not None:
        open_clip.load_checkpoint(clip, file, strict=True, weights_only=True)
    return clip


def load_image_tower(clip: nn.Module, path: str) -> None:
    """Load a timm checkpoint (file, or a folder with one) into the timm trunk, every key checked. The
    classifier head of an ImageNet checkpoint is dropped: the tower uses the pooled features."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = [p / n for n in _TIMM_FILES if (p / n).is_file()]
        if not found:
            raise PipelineError(f"image tower {path}: no {' / '.join(_TIMM_FILES)} in that folder")
        p = found[0]
    if not p.is_file():
        raise PipelineError(f"image tower {path}: file not found")
    state = load_state_dict(str(p), weights_only=True)
    trunk = clip.visual.trunk
    own = trunk.state_dict().keys()
    state = {k: v for k, v in state.items() if k in own or not k.startswith("head.")}
    fits = f"image tower {p}: does not fit {trunk.default_cfg.get('architecture', 'the trunk')}"
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape mismatch
        raise PipelineError(f"{fits} ({_first_line(err)} {str(err).splitlines()[1].strip()})") from None
    if missing or unexpected:
        raise PipelineError(
            f"{fits} ({len(missing)} missing keys e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. "
            f"{unexpected[:2]})"
        )
    log.info("image tower weights from %s", p)


def make_tokenizer(arch: str, *, context_length: int, text_tower: str | None = None):
    """open_clip's tokenizer for arch; a Hugging Face text tower's own tokenizer, from text_tower if given."""
    text_cfg = arch_config(arch).get("text_cfg", {})
    name = text_cfg.get("hf_tokenizer_name")
    if not name:
        return open_clip.get_tokenizer(arch, context_length=context_length)
    text_tower = text_tower or own_text_tower(arch)
    if text_tower is not None:
        name = _local_text_dir(text_tower)
    try:
        return HFTokenizer(name, context_length=context_length, **text_cfg.get("tokenizer_kwargs", {}))
    except OSError as err:
        raise PipelineError(
            f"{arch}: cannot load the {name} tokenizer ({_first_line(err)}); offline, pass --text-tower DIR"
        ) from None
