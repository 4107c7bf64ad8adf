"""The task registry: one definition per zero-shot task (dataset, reader, label field, classes, prompts, k,
split), the paper's ten plus UTKFace race and FairFace age, and the two held-out sets of the synthetic sample
the demo trains on (its eval/ folder is their --data-root). New tasks are plain `Task(...)` values:

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
from evaluation.readers.emotic import CATEGORIES as EMOTIC_EMOTIONS
from pipeline.synthetic.poses import BODY_STATES

TEMPLATE_DIR = Path(__file__).parent / "templates"
GROUPS = ("Action", "Age", "Emotion", "Race")


@cache
def load_templates(family: str) -> tuple[str, ...]:
    """evaluation/templates/<family>.txt: one template per line, '#' comments; the first is the paper's."""
    path = TEMPLATE_DIR / f"{family}.txt"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return tuple(line for line in lines if line and not line.startswith("#"))


@dataclass(frozen=True, kw_only=True)
class Task:
    """One zero-shot classification task.

    dataset: the dataset's name in results and the key of --path; its folder under --data-root unless
    `folder` names another.
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
    folder: str | None = None

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


FER2013_NAMES = {"angry": "angry", "disgust": "disgusted", "fear": "fearful", "happy": "happy",
                 "neutral": "neutral", "sad": "sad", "surprise": "surprised"}  # fmt: skip
FERPLUS_NAMES = {"neutral": "neutral", "happiness": "happy", "surprise": "surprised", "sadness": "sad",
                 "anger": "angry", "disgust": "disgusted", "fear": "afraid",
                 "contempt": "contemptuous"}  # fmt: skip
UTK_RACE = ("white", "black", "asian", "indian", "others")
_ACTION, _AGE, _RACE = load_templates("action"), load_templates("age"), load_templates("race")
_FACE, _PERSON = load_templates("emotion_face"), load_templates("emotion_person")

# fmt: off
TASKS: dict[str, Task] = {t.id: t for t in (
    Task(id="kinetics400-action", dataset="kinetics400", reader="kinetics400", label="action", classes=None,
         templates=_ACTION, k=3, split="test", group="Action", title="Kinetics-400"),
    Task(id="stanford40-action", dataset="stanford40", reader="stanford40", label="action", classes=None,
         templates=_ACTION, k=3, split="test", group="Action", title="Stanford 40"),
    Task(id="emotic-age", dataset="emotic", reader="emotic", label="age", classes=EMOTIC_AGE,
         templates=_AGE, k=1, split="train", group="Age", title="EMOTIC"),
    Task(id="lagenda-body-age", dataset="lagenda", reader="lagenda", label="age_group", classes=LAGENDA_AGE,
         templates=_AGE, k=1, split="all", group="Age", title="LAGENDA-Body", options={"crop": "body"}),
    Task(id="lagenda-face-age", dataset="lagenda", reader="lagenda", label="age_group", classes=LAGENDA_AGE,
         templates=_AGE, k=1, split="all", group="Age", title="LAGENDA-Face", options={"crop": "face"}),
    Task(id="utkface-age", dataset="utkface", reader="utkface", label="age_group", classes=UTK_AGE,
         templates=_AGE, k=1, split="all", group="Age", title="UTKFace"),
    Task(id="emotic-emotion", dataset="emotic", reader="emotic", label="emotion", classes=EMOTIC_EMOTIONS,
         templates=_PERSON, k=3, split="train", group="Emotion", title="EMOTIC"),
    Task(id="fer2013-emotion", dataset="fer2013", reader="fer2013", label="emotion", classes=FER2013_EMOTIONS,
         templates=_FACE, k=3, split="train", group="Emotion", title="FER2013", prompt_names=FER2013_NAMES),
    Task(id="ferplus-emotion", dataset="ferplus", reader="ferplus", label="emotion", classes=FERPLUS_EMOTIONS,
         templates=_FACE, k=3, split="test", group="Emotion", title="FER+", prompt_names=FERPLUS_NAMES),
    Task(id="fairface-race", dataset="fairface", reader="fairface", label="race", classes=FAIRFACE_RACE,
         templates=_RACE, k=1, split="val", group="Race", title="FairFace",
         prompt_names={"Latino_Hispanic": "latino hispanic"}),
    Task(id="utkface-race", dataset="utkface", reader="utkface", label="race", classes=UTK_RACE,
         templates=_RACE, k=1, split="all", group="Race", title="UTKFace",
         prompt_names={"others": "other race"}),
    Task(id="fairface-age", dataset="fairface", reader="fairface", label="age", classes=FAIRFACE_AGE,
         templates=_AGE, k=1, split="val", group="Age", title="FairFace",
         prompt_names={a: f"{a} years old" for a in FAIRFACE_AGE}),
    # The synthetic sample's held-out sets (pipeline/synthetic), read by the real Stanford 40 and FER2013
    # readers from the sample's eval/ folder; their datasets carry names of their own, so that results tables
    # never file them as the real Stanford 40 or FER2013. "a photo of a person sitting": the word the rules
    # describer uses for the body state.
    Task(id="synthetic-action", dataset="synthetic-stanford40-layout", folder="stanford40",
         reader="stanford40", label="action", classes=None, templates=_ACTION, k=3, split="test",
         group="Action", title="Synthetic actions"),
    Task(id="synthetic-body-state", dataset="synthetic-fer2013-layout", folder="fer2013", reader="fer2013",
         label="emotion", classes=BODY_STATES, templates=("a photo of a person {c}",), k=1, split="test",
         group="Body state", title="Synthetic body states"),
)}
# fmt: on
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
