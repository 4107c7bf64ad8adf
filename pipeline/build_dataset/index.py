"""The descriptions index of build-dataset: every description row either used for its image or skipped for
one reason (pure: no I/O but the `on_skip` callback).

    index = index_descriptions([(artifact, table), ...], known_images, ("ok",), on_skip=tally.skip)
    index.by_image["a.jpg"]   # [Description(source, model, text), ...] in the order they are used
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.artifacts import descriptions


@dataclass(slots=True)
class Description:
    source: str
    model: str
    text: str


@dataclass(slots=True)
class SourceSummary:
    """What one description source cost and produced (from the descriptions rows themselves)."""

    artifact: str
    source: str
    models: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)  # "name (hash)" -> rows
    status: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "source": self.source,
            "models": dict(self.models),
            "templates": dict(self.templates),
            "status": dict(self.status),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(slots=True)
class DescriptionIndex:
    by_image: dict[str, list[Description]]
    rows: int
    fate: Counter  # "used" or "skipped:<reason>" -> rows
    sources: list[SourceSummary]


def index_descriptions(
    tables: list[tuple[str, pa.Table]],
    known_images: set[str],
    include_status: tuple[str, ...],
    on_skip: Callable[[dict], None],
) -> DescriptionIndex:
    """Group usable description rows by image; every other row gets a reason (pure, no I/O but `on_skip`).

    An image's descriptions come in the order of the tables, then source, then sample (a stable sort, so
    rows with the same key keep their file order). Each row ends up either used or skipped for exactly one
    reason: unknown_image (no such image in the annotations), status:<s> (a status outside include_status),
    empty_text, duplicate (its (image, source, sample) is already used: the first usable row wins, failed
    attempts before it are counted by their status) or duplicate_text (same text already used for the image).
    """
    by_image: dict[str, list[Description]] = {}
    taken: set[tuple[str, str, int]] = set()
    fate: Counter = Counter()
    sources: dict[tuple[str, str], SourceSummary] = {}
    rows = 0
    for artifact, table in tables:
        table = table.sort_by([("source", "ascending"), ("sample", "ascending")])
        cols = {c: table.column(c).to_pylist() for c in descriptions.PROVENANCE}
        for i in range(table.num_rows):
            rows += 1
            image, source, sample = cols["image"][i], cols["source"][i], cols["sample"][i]
            status, text, model = cols["status"][i], cols["description"][i], cols["model"][i] or ""
            summary = sources.get((artifact, source))
            if summary is None:
                summary = sources[artifact, source] = SourceSummary(artifact, source)
            summary.models[model] += 1
            summary.templates[f"{cols['template'][i]} ({cols['template_hash'][i]})"] += 1
            summary.status[status] += 1
            summary.prompt_tokens += cols["prompt_tokens"][i] or 0
            summary.completion_tokens += cols["completion_tokens"][i] or 0
            summary.cost_usd += cols["cost_usd"][i] or 0.0
            if image not in known_images:
                reason = "unknown_image"
            elif status not in include_status:
                reason = f"status:{status}"
            elif text is None or not text.strip():
                reason = "empty_text"
            elif (image, source, sample) in taken:
                reason = "duplicate"
            elif any(d.text.strip() == text.strip() for d in by_image.get(image, ())):
                reason = "duplicate_text"
            else:
                taken.add((image, source, sample))
                by_image.setdefault(image, []).append(Description(source, model, text.strip()))
                fate["used"] += 1
                continue
            fate[f"skipped:{reason}"] += 1
            on_skip(
                {
                    "kind": "description",
                    "reason": reason,
                    "image": image,
                    "artifact": artifact,
                    "source": source,
                    "sample": sample,
                    "status": status,
                }
            )
    return DescriptionIndex(by_image, rows, fate, [s for s in sources.values()])
