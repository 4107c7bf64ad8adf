"""What `eval` is asked to do: the typed configuration of a zero-shot evaluation (evaluation.stage runs it,
training.zeroshot_eval reuses it during training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evaluation.tasks import PAPER_TASKS, TASKS, Task
from pipeline.errors import PipelineError
from pipeline.store import Recorded, recorded, run_only


@dataclass
class EvalConfig:
    """run: a runs/<name> artifact of the store; or arch (+ checkpoint, a state dict open_clip loads).
    tasks: registry ids or Task values (ad-hoc tasks built in code). data_root/<dataset>/ holds each dataset
    unless paths[dataset] says otherwise. split overrides every task's default split; splits[task id or
    dataset] overrides one (and wins over split). limit: score at most
    this many samples per task (a seeded random subset; the result records it)."""

    run: str | None = None
    arch: str | None = None
    checkpoint: str | None = None
    tasks: tuple[str | Task, ...] = PAPER_TASKS
    data_root: str = "eval-data"
    paths: dict[str, str] = field(default_factory=dict)
    split: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    utk_split_list: str | None = None
    templates: str = "paper"
    batch_size: int = 64
    workers: int = run_only(2)
    device: str = run_only("auto")
    name: str | None = None
    limit: int | None = None
    seed: int = 0
    overwrite: bool = run_only(False)
    # Publish even when no task scored a sample; otherwise that is an error and nothing is written.
    allow_empty: bool = run_only(False)

    def __post_init__(self) -> None:
        if self.templates not in ("paper", "ensemble"):
            raise PipelineError(f"--templates must be paper or ensemble, not {self.templates!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise PipelineError("--batch-size must be >= 1 and --workers >= 0")
        if self.limit is not None and self.limit < 1:
            raise PipelineError(f"--limit {self.limit}: must be >= 1 (samples per task)")
        if self.utk_split_list and not Path(self.utk_split_list).expanduser().is_file():
            raise PipelineError(
                f"--utk-split-list {self.utk_split_list}: no such file (a list of image names)"
            )

    def resolved_tasks(self) -> list[Task]:
        out = []
        for task in self.tasks:
            if isinstance(task, Task):
                out.append(task)
            elif task in TASKS:
                out.append(TASKS[task])
            else:
                raise PipelineError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        self._check_keys(out)
        return out

    def _check_keys(self, tasks: list[Task]) -> None:
        """A --path or --split key that names none of the tasks would be ignored, the default data scored."""
        datasets = {t.dataset for t in tasks}
        if any(t.reader == "ferplus" for t in tasks):
            datasets.add("fer2013")  # FER+ can take its pixels from FER2013's CSV
        for key in self.paths:
            if key not in datasets:
                raise PipelineError(f"--path {key}=...: no task here reads dataset {key!r} (these read "
                                    f"{', '.join(sorted(datasets))})")  # fmt: skip
        for key in self.splits:
            if key not in datasets | {t.id for t in tasks}:
                raise PipelineError(f"--split {key}=...: {key!r} is none of the tasks here "
                                    f"({', '.join(t.id for t in tasks)}) nor their datasets")  # fmt: skip

    def options_for(self, task: Task) -> dict[str, str]:
        options = dict(task.options)
        if self.utk_split_list and task.dataset == "utkface":
            options["split_list"] = str(Path(self.utk_split_list).expanduser())
        return options

    def split_for(self, task: Task) -> str:
        return self.splits.get(task.id) or self.splits.get(task.dataset) or self.split or task.split

    def recorded(self) -> Recorded:
        """The config as meta.json records it: tasks by id, and what an ad hoc task (built in code) asks."""
        out = recorded(self).add({"tasks": [t.id if isinstance(t, Task) else t for t in self.tasks]})
        custom = [t for t in self.tasks if isinstance(t, Task) and t.id not in TASKS]
        if not custom:
            return out
        fields = ("id", "dataset", "label", "classes", "templates", "k", "split")
        return out.add({"custom_tasks": [{f: getattr(t, f) for f in fields} for t in custom]})
