"""The runs artifact: runs/<name>/, one trained model, written by train and read by eval, analyze --run, push
and the demo.

    from pipeline.artifacts import runs
    runs.record(writer, preprocess=pp.to_dict(), summary=summary, heatmap_source="keypoints")
    meta = RunMeta.read(store, "demo-focusclip")      # arch, shapes, preprocess, checksums, summary
    rows = runs.read_metrics(store.path("runs", "demo-focusclip"))

Layout: model.pt (the open_clip state dict in fp32), export/ (the run in open_clip's layout, training/export),
metrics.jsonl (one line per optimizer step), loss_curve.png, and meta.json: config (the TrainConfig as
recorded), preprocess (the image pipeline it trained with), checksums (model.pt's sha256, checked before it is
loaded), summary and heatmap_source (the config's None resolved). Training's own checkpoints (checkpoints/)
are internal to training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.store import ArtifactWriter, Store, file_sha256, meta_problem

MODEL_FILE = "model.pt"
EXPORT_DIR = "export"
TEXT_TOWER_DIR = "text-tower"  # a Hugging Face text tower, in runs from before export/ carried it
METRICS_FILE = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"


def record(
    writer: ArtifactWriter, *, preprocess: dict[str, Any], summary: dict[str, Any], heatmap_source: str
) -> None:
    """What a finished run's meta.json holds beside its config (model.pt must be written already)."""
    writer.extra["preprocess"] = preprocess
    writer.extra["checksums"] = {MODEL_FILE: file_sha256(writer.dir / MODEL_FILE)}
    writer.counts.update({"steps": summary["steps"], "images": summary["images"]})
    writer.extra["summary"] = summary
    writer.extra["heatmap_source"] = heatmap_source


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What a run's meta.json says: its config and what inference needs to load it as it was trained."""

    folder: Path
    config: dict[str, Any]
    preprocess: dict[str, Any] | None  # None: a run from before it was recorded (squashed, arch mean/std)
    checksums: dict[str, str]  # file -> sha256 (empty for runs from before)
    summary: dict[str, Any]
    heatmap_source: str | None
    dataset: dict[str, str] | None  # the datasets artifact it was trained on: kind, name, fingerprint

    @classmethod
    def read(cls, store: Store, name: str) -> RunMeta:
        store.meta("runs", name)  # the store's one-line error for a missing or damaged run
        return cls.read_dir(store.path("runs", name))

    @classmethod
    def read_dir(cls, folder: Path) -> RunMeta:
        """A run folder's meta.json (a run of some store, or a copy of one)."""
        path = Path(folder) / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise PipelineError(f"{path}: not a run's meta.json ({type(err).__name__}: {err})") from None
        problem = meta_problem(meta)
        if problem is None and not isinstance(meta["config"].get("arch"), str):
            problem = "has no config arch (not a run)"
        if problem:
            raise PipelineError(f"{path}: {problem}")
        return cls(
            folder=Path(folder),
            config=meta["config"],
            preprocess=meta.get("preprocess"),
            checksums=meta.get("checksums") or {},
            summary=meta.get("summary") or {},
            heatmap_source=meta.get("heatmap_source"),
            dataset=next((i for i in meta["inputs"] if i["kind"] == "datasets"), None),
        )

    @property
    def arch(self) -> str:
        return self.config["arch"]

    @property
    def context_length(self) -> int | None:
        return self.config.get("context_length")

    @property
    def image_size(self) -> int | None:
        return self.config.get("image_size")


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """A run's metrics.jsonl: one row per optimizer step (step, loss, its terms, alpha, temperature...)."""
    path = Path(folder) / METRICS_FILE
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: not readable training metrics ({type(err).__name__}: {err})") from None
