"""The task registry: one definition per zero-shot task (dataset, reader, label field, classes, prompts, k,
split), the paper's ten plus UTKFace race and FairFace age. New tasks are plain `Task(...)` values:

    from evaluation.tasks import TASKS, Task, load_templates
    TASKS["fer2013-emotion"].k                      # 3
    mine = Task(id="toy-action", dataset="toy", reader="stanford40", label="action",
                classes=("running", "sitting"), templates=("a photo of a person {c}",), k=1, split="test")

Class groupings follow the paper's protocol (see each reader); class text in prompts is the label with
'_' as spaces, lowercased, unless `prompt_names` says otherwise (FER's adjectives: "happy", not "happiness").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from evaluation.readers import READERS, Reader

TEMPLATE_DIR = Path(__file__).parent / "templates"
GROUPS = ("Action", "Age", "Emotion", "Race")


@cache
def load_templates(family: str) -> tuple[str, ...]:
    """evaluation/templates/<family>.txt: one template per line, '#' comments; the first is the paper's."""
    path = TEMPLATE_DIR / f"{family}.txt"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return tuple(line for line in lines if line and not line.startswith("#"))


@dataclass(frozen=True)
class Task:
    """One zero-shot classification task.

    dataset: the folder name under --data-root and the key of --path.
    reader: a name in evaluation.readers.READERS or a reader function.
    label: the Sample.labels field holding the class.
    classes: label values in class-index order; None takes the dataset's own list (actions.txt, the CSV).
    templates: prompt templates; templates[0] is the paper's single prompt, all of them the ensemble.
    """

    id: str
    dataset: str
    reader: str | Reader
    label: str
    classes: tuple[str, ...] | None
    templates: tuple[str, ...]
    k: int
    split: str
    group: str = "Other"
    title: str = ""
    prompt_names: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"task {self.id}: k must be >= 1")
        if not self.templates:
            raise ValueError(f"task {self.id}: at least one prompt template is needed")
        if isinstance(self.reader, str) and self.reader not in READERS:
            raise ValueError(f"task {self.id}: unknown reader {self.reader!r} (one of {', '.join(READERS)})")

    @property
    def read(self) -> Reader:
        return READERS[self.reader] if isinstance(self.reader, str) else self.reader

    @property
    def name(self) -> str:
        return self.title or self.id

    def prompt_name(self, label: str) -> str:
        return self.prompt_names.get(label, label.replace("_", " ").lower())

    def select_templates(self, mode: str) -> tuple[str, ...]:
        if mode == "paper":
            return self.templates[:1]
        if mode == "ensemble":
            return self.templates
        raise ValueError(f"unknown template mode {mode!r} (paper or ensemble)")


UTK_AGE = ("baby", "child", "teenager", "young adult", "adult")
LAGENDA_AGE = ("kid", "teenager", "adult")
FAIRFACE_AGE = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_RACE = (
    "Black",
    "East Asian",
    "Indian",
    "Latino_Hispanic",
    "Middle Eastern",
    "Southeast Asian",
    "White",
)
EMOTIC_AGE = ("Adult", "Kid", "Teenager")  # sorted, as the paper's loader orders them
FER2013_EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def _registry() -> dict[str, Task]:
    from evaluation.readers.emotic import CATEGORIES

    action, age = load_templates("action"), load_templates("age")
    face, person, race = (
        load_templates("emotion_face"),
        load_templates("emotion_person"),
        load_templates("race"),
    )
    tasks = [
        Task(
            "kinetics400-action",
            "kinetics400",
            "kinetics400",
            "action",
            None,
            action,
            3,
            "test",
            "Action",
            "Kinetics-400",
        ),
        Task(
            "stanford40-action",
            "stanford40",
            "stanford40",
            "action",
            None,
            action,
            3,
            "test",
            "Action",
            "Stanford 40",
        ),
        Task("emotic-age", "emotic", "emotic", "age", EMOTIC_AGE, age, 1, "train", "Age", "EMOTIC"),
        Task(
            "lagenda-body-age",
            "lagenda",
            "lagenda",
            "age_group",
            LAGENDA_AGE,
            age,
            1,
            "all",
            "Age",
            "LAGENDA-Body",
            options={"crop": "body"},
        ),
        Task(
            "lagenda-face-age",
            "lagenda",
            "lagenda",
            "age_group",
            LAGENDA_AGE,
            age,
            1,
            "all",
            "Age",
            "LAGENDA-Face",
            options={"crop": "face"},
        ),
        Task("utkface-age", "utkface", "utkface", "age_group", UTK_AGE, age, 1, "all", "Age", "UTKFace"),
        Task(
            "emotic-emotion",
            "emotic",
            "emotic",
            "emotion",
            CATEGORIES,
            person,
            3,
            "train",
            "Emotion",
            "EMOTIC",
        ),
        Task(
            "fer2013-emotion",
            "fer2013",
            "fer2013",
            "emotion",
            FER2013_EMOTIONS,
            face,
            3,
            "train",
            "Emotion",
            "FER2013",
            prompt_names={
                "angry": "angry",
                "disgust": "disgusted",
                "fear": "fearful",
                "happy": "happy",
                "neutral": "neutral",
                "sad": "sad",
                "surprise": "surprised",
            },
        ),
        Task(
            "ferplus-emotion",
            "ferplus",
            "ferplus",
            "emotion",
            FERPLUS_EMOTIONS,
            face,
            3,
            "test",
            "Emotion",
            "FER+",
            prompt_names={
                "neutral": "neutral",
                "happiness": "happy",
                "surprise": "surprised",
                "sadness": "sad",
                "anger": "angry",
                "disgust": "disgusted",
                "fear": "afraid",
                "contempt": "contemptuous",
            },
        ),
        Task(
            "fairface-race",
            "fairface",
            "fairface",
            "race",
            FAIRFACE_RACE,
            race,
            1,
            "val",
            "Race",
            "FairFace",
            prompt_names={"Latino_Hispanic": "latino hispanic"},
        ),
        Task(
            "utkface-race",
            "utkface",
            "utkface",
            "race",
            ("white", "black", "asian", "indian", "others"),
            race,
            1,
            "all",
            "Race",
            "UTKFace",
            prompt_names={"others": "other race"},
        ),
        Task(
            "fairface-age",
            "fairface",
            "fairface",
            "age",
            FAIRFACE_AGE,
            age,
            1,
            "val",
            "Age",
            "FairFace",
            prompt_names={a: f"{a} years old" for a in FAIRFACE_AGE},
        ),
    ]
    return {t.id: t for t in tasks}


TASKS: dict[str, Task] = _registry()
# The ten of the paper's Table 2, in its column order.
PAPER_TASKS: tuple[str, ...] = (
    "kinetics400-action",
    "stanford40-action",
    "emotic-age",
    "lagenda-body-age",
    "lagenda-face-age",
    "utkface-age",
    "emotic-emotion",
    "fer2013-emotion",
    "ferplus-emotion",
    "fairface-race",
)
DATASETS: tuple[str, ...] = tuple(dict.fromkeys(t.dataset for t in TASKS.values()))
