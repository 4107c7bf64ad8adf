"""Push a run to a Hugging Face Hub model repo, laid out as open_clip.push_to_hf_hub lays it out.

    focus-pipeline push --run focusclip --repo user/focusclip-mpii       # an existing run
    focus-pipeline train ... --push-to-hub user/focusclip-mpii            # when the run is published

The repo gets the run's export/ (training/export.py: open_clip_config.json with the run's shapes and
preprocessing, open_clip_model.safetensors, a Hugging Face text tower's config and tokenizer, SHA256SUMS),
every file checked against SHA256SUMS before anything is sent, and a model card (README.md) with the data,
the recipe, every eval of the run in the store and how to load it: `open_clip.create_model_and_transforms(
"hf-hub:user/focusclip-mpii")` where plain open_clip can, focus-pipeline's `load_export` otherwise.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pipeline import hub
from pipeline.artifacts import evals, runs
from pipeline.artifacts.runs import RunMeta
from pipeline.errors import PipelineError
from pipeline.store import Store
from training.export import (
    CONFIG_NAME,
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
    plain_open_clip_loads,
    read_manifest,
    verify_export,
)

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md.j2"
RECIPE_KEYS = ("model_type", "arch", "recipe", "loss", "optimizer", "lr", "batch_size", "epochs", "max_steps",
               "schedule", "temperature", "alpha_param", "precision", "seed")  # fmt: skip


def run_evals(store: Store, run: str) -> list[dict[str, Any]]:
    """The scored tasks of every evals/ artifact built from runs/<run>."""
    rows = []
    for name in store.dependents("runs", run):
        kind, eval_name = name.split("/", 1)
        if kind != "evals" or not (store.path(kind, eval_name) / evals.RESULTS_FILE).is_file():
            continue
        for r in evals.read(store, eval_name):
            if r.get("status") == "ok":
                acc = r["metrics"][f"acc@{r['k']}"]
                rows.append({"eval": eval_name, "task": r["task"], "split": r["split"], "k": r["k"],
                             "acc": acc, "n": r["n_samples"]})  # fmt: skip
    return rows


def model_card(store: Store, run: str, repo_id: str) -> str:
    meta = RunMeta.read(store, run)
    config = meta.config
    header = {
        "library_name": "open_clip",
        "license": "mit",
        "pipeline_tag": "zero-shot-image-classification",
        "tags": ["clip", "focusclip", "human-pose", "focus-pipeline"],
    }
    export_cfg = json.loads((meta.folder / runs.EXPORT_DIR / CONFIG_NAME).read_text())["model_cfg"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE.read_text()).render(
        header=yaml.safe_dump(header, sort_keys=False).strip(),
        name=repo_id.split("/")[-1],
        repo_id=repo_id,
        config=config,
        dataset=meta.dataset or {"name": "?"},
        recipe=[(k, config.get(k)) for k in RECIPE_KEYS if config.get(k) is not None],
        preprocess=meta.preprocess or {},
        summary=meta.summary,
        evals=run_evals(store, run),
        plain_open_clip=plain_open_clip_loads(export_cfg),
        manifest=MANIFEST_NAME,
    )


def push_run(store: Store, run: str, repo_id: str, *, token: str, private: bool = False) -> str:
    """Upload runs/<run> as an open_clip model repo; returns the repo's URL. The export's files are checked
    against its SHA256SUMS first, and only the files it lists (and the model card) are uploaded."""
    export = store.path("runs", run) / runs.EXPORT_DIR
    if not (export / CONFIG_NAME).is_file() or not (export / WEIGHTS_NAME).is_file():
        raise PipelineError(f"runs/{run} has no export/ (trained before exports existed): train it again")
    verify_export(export, remedy="train the run again (--overwrite); nothing was uploaded")
    files = [*read_manifest(export), MANIFEST_NAME]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / run
        folder.mkdir()
        for name in files:
            shutil.copy2(export / name, folder / name)
        (folder / MODEL_CARD_NAME).write_text(model_card(store, run, repo_id))
        return hub.upload(
            folder,
            repo_id,
            kind="model",
            token=token,
            files=[*files, MODEL_CARD_NAME],
            replace=[],
            resume_hint=f"`focus-pipeline push --run {run} --repo {repo_id}`",
            private=private,
            kept=export,
        )
