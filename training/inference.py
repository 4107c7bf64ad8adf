"""Load a trained model for inference: from a run folder of the store, an export, or any open_clip arch +
checkpoint.

    model, preprocess, tokenizer = load_model(run_dir=store.path("runs", "demo-focusclip"), device="cpu")
    model, preprocess, tokenizer = load_export("artifacts/runs/demo-focusclip/export")  # or a Hub download
    model, preprocess, tokenizer = load_model(arch="ViT-B-16", checkpoint="model.pt")

A run folder holds model.pt (a state dict open_clip loads as `pretrained=`) and meta.json whose config
records arch, context_length and image_size, and whose "preprocess" is the image pipeline the run trained
with (training/preprocess.py): `preprocess` is built from it and set as the model's open_clip
preprocess_cfg, so a run is always scored on the pixels it trained on. Runs from before it was recorded
trained on squashed images with the architecture's mean/std, and get that. A Hugging Face text tower is
rebuilt from the run's export/ (its config and tokenizer; text-tower/ in runs from before), so no hub is
needed. An export (training/export.py) carries all of that in its own files. FocusCLIP needs nothing extra at
inference: the heatmap view exists only in training.

Every file read that a manifest covers is checked against it first: a run's model.pt against meta.json
"checksums", an export's files against its SHA256SUMS (also a checkpoint given by path, where its folder has
one).
"""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2

from pipeline.artifacts import runs
from pipeline.artifacts.runs import RunMeta
from pipeline.errors import PipelineError
from pipeline.store import verify_sha256
from training.export import CONFIG_NAME, WEIGHTS_NAME, read_manifest, verify_export
from training.preprocess import Preprocess
from training.towers import Towers, arch_config, create_clip, make_tokenizer, register_model_configs

RETRAIN = "train the run again (--overwrite)"
RESTORE_EXPORT = "restore it: train the run again (--overwrite), or download the repo it was pushed to"


def load_export(folder: str | Path, *, device: str | torch.device = "cpu"):
    """An export folder (runs/<name>/export, or a download of the Hub repo `push` made), built from its own
    files: config, weights, text tower and tokenizer, at its image size, offline. Every file is checked
    against its SHA256SUMS first. Returns (model in eval mode, preprocess transform, tokenizer)."""
    folder = Path(folder).expanduser()
    if not (folder / CONFIG_NAME).is_file():
        raise PipelineError(f"{folder}: not an export (no {CONFIG_NAME} in it)")
    if read_manifest(folder) is None:
        verify_export(folder, remedy=RESTORE_EXPORT)  # says that it has no manifest
    return load_model(arch=f"local-dir:{folder}", checkpoint=folder / WEIGHTS_NAME, device=device)


def load_model(
    *,
    run_dir: Path | None = None,
    arch: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
):
    """Returns (model in eval mode, preprocess transform, tokenizer)."""
    register_model_configs()
    context_length = image_size = text_tower = recorded = None
    if run_dir is not None:
        meta = RunMeta.read_dir(run_dir)
        arch, context_length, image_size = meta.arch, meta.context_length, meta.image_size
        checkpoint = meta.folder / runs.MODEL_FILE
        recorded = meta.preprocess
        text_tower = _run_text_tower(meta.folder)
    if arch is None:
        raise PipelineError("give a run, or an architecture (--arch) and a checkpoint")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise PipelineError(f"checkpoint not found: {checkpoint}")
    _verify_recorded(arch, checkpoint)
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
    else:  # a bare checkpoint: open_clip's own preprocessing for the architecture (an export's: its own)
        pp = None
    if pp is not None:
        set_model_preprocess_cfg(model, pp.open_clip_cfg())
        preprocess = pp.transform()
    else:
        preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    model.to(device).eval()
    # the context the model was trained with (an export records it), not the text tower's maximum: the
    # all-positions mean pooler averages over every position, so the padded length changes the embedding
    context_length = context_length or arch_config(arch).get("text_cfg", {}).get("context_length")
    tokenizer = make_tokenizer(
        arch, context_length=context_length or model.context_length, text_tower=text_tower
    )
    return model, preprocess, tokenizer


def _run_text_tower(run_dir: Path) -> str | None:
    """The folder with a run's Hugging Face text tower (config and tokenizer), its files checked: the export,
    or text-tower/ in runs exported before the export carried it. None without such a tower."""
    export = run_dir / runs.EXPORT_DIR
    if (export / "config.json").is_file():
        tower = [n for n in read_manifest(export) or {} if n not in (CONFIG_NAME, WEIGHTS_NAME)]
        verify_export(export, remedy=RETRAIN, files=tower)
        return str(export)
    return str(run_dir / runs.TEXT_TOWER_DIR) if (run_dir / runs.TEXT_TOWER_DIR).is_dir() else None


def _verify_recorded(arch: str, checkpoint: str | Path | None) -> None:
    """Check what is about to be read against a manifest, where one covers it: a local-dir: architecture's
    folder and its SHA256SUMS (an export: config, tower, weights), and the checkpoint against its folder's
    SHA256SUMS or, for a run's model.pt, the run's meta.json "checksums"."""
    checked = None
    if arch.startswith("local-dir:"):
        folder = Path(arch.removeprefix("local-dir:")).expanduser()
        if read_manifest(folder) is not None:
            verify_export(folder, remedy=RESTORE_EXPORT)
            checked = folder.resolve()
    if checkpoint is None or Path(checkpoint).parent.resolve() == checked:
        return
    path = Path(checkpoint)
    manifest = read_manifest(path.parent)
    if manifest is not None and path.name in manifest:
        verify_export(path.parent, remedy=RESTORE_EXPORT, files=[path.name])
    elif (path.parent / "meta.json").is_file():  # a run folder: runs published before checksums have none
        recorded = RunMeta.read_dir(path.parent).checksums
        if path.name in recorded:
            verify_sha256(path, recorded[path.name], remedy=RETRAIN)
