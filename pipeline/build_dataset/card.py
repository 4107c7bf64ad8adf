"""The published dataset's text statistics and its README.md card (YAML header + Markdown body).

    from pipeline.build_dataset.card import TextStats, render_card
    stats = TextStats(); stats.add(words=54, tokens=71); stats.summary()   # -> mean/median/p95/over_77 ...
    (path / "README.md").write_text(render_card(CardInputs(...)))

The YAML header is what the Hub and `datasets.load_dataset(<folder>)` read: `configs` maps each split to its
shard files (so "val" stays "val" instead of being guessed into "validation"), `dataset_info` carries the
typed features (pipeline.artifacts.datasets.FEATURES) and split sizes. The body is rendered from
templates/dataset_card.md.j2.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2
import numpy as np
import yaml

from pipeline.artifacts.datasets import FEATURES
from pipeline.artifacts.descriptions import DescribeMeta

# The text tower's context: open_clip tokenises to 77 tokens (start and end included) and cuts the rest.
CLIP_CONTEXT = 77
TEMPLATE_DIR = Path(__file__).parents[1] / "templates"


@functools.cache
def token_counter() -> Callable[[str], int]:
    """Tokens the CLIP text tower would see for a text before truncation (start and end tokens included).

    open_clip's SimpleTokenizer ships its BPE vocabulary in the wheel, so this works offline.
    """
    tokenizer = _clip_tokenizer_module().SimpleTokenizer()
    return lambda text: len(tokenizer.encode(text)) + 2


def _clip_tokenizer_module() -> ModuleType:
    """open_clip's tokenizer module, loaded on its own unless open_clip is already imported.

    `import open_clip` imports every model family (torchvision, timm, ...), about 8 s of a 2-core machine's
    time per process; the tokenizer module alone needs only ftfy, regex and torch (no relative imports).
    """
    if "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.tokenizer"]
    spec = importlib.util.find_spec("open_clip")  # locates the package without running its __init__
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("open_clip is not installed (pip install open_clip_torch)")
    path = Path(spec.origin).with_name("tokenizer.py")
    tok_spec = importlib.util.spec_from_file_location("_focus_open_clip_tokenizer", path)
    module = importlib.util.module_from_spec(tok_spec)
    tok_spec.loader.exec_module(module)
    return module


def count_words(text: str) -> int:
    return len(text.split())


@dataclass(slots=True)
class TextStats:
    """Lengths of texts in words and in CLIP tokens; the summary is what meta.json and the card show."""

    words: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def add(self, words: int, tokens: int) -> None:
        self.words.append(words)
        self.tokens.append(tokens)

    def summary(self) -> dict[str, Any]:
        n = len(self.words)
        if n == 0:
            return {"count": 0}
        out: dict[str, Any] = {"count": n}
        for key, values in (("words", self.words), ("clip_tokens", self.tokens)):
            arr = np.asarray(values)
            out[key] = {
                "mean": round(float(arr.mean()), 1),
                "median": float(np.median(arr)),
                "p95": float(np.percentile(arr, 95)),
                "min": int(arr.min()),
                "max": int(arr.max()),
            }
        over = int(sum(t > CLIP_CONTEXT for t in self.tokens))
        out["clip_tokens"][f"over_{CLIP_CONTEXT}"] = over
        out["clip_tokens"][f"share_over_{CLIP_CONTEXT}"] = round(over / n, 4)
        return out


@dataclass(slots=True)
class SplitInfo:
    name: str
    rows: int
    num_bytes: int  # Arrow (in-memory) bytes, what datasets calls num_bytes
    files: list[str]  # relative to the dataset folder
    download_bytes: int


@dataclass(slots=True)
class CardInputs:
    name: str
    splits: list[SplitInfo]
    statistics: dict[str, Any]
    sources: list[dict[str, Any]]  # build_dataset.SourceSummary.as_dict() per (artifact, source)
    describe_meta: dict[str, DescribeMeta]  # descriptions artifact name -> what its meta.json says
    annotations: str
    counts: dict[str, Any]  # images/description rows kept and skipped by reason
    config: dict[str, Any]
    origin: str = "mpii"  # "mpii", "synthetic" (the embedded sample) or "coco" (COCO-format): the licence
    skeletons: list[dict[str, Any]] = field(default_factory=list)  # Skeleton.to_dict() of the rows' skeletons


def captions_only(card: CardInputs) -> bool:
    """Every text is a source's human caption (describe --backend captions): no model, prompt or pose text."""
    metas = card.describe_meta.values()
    return bool(metas) and all(m.backend == "captions" for m in metas)


def yaml_header(card: CardInputs) -> dict[str, Any]:
    rows = sum(s.rows for s in card.splits)
    size = next(
        c
        for limit, c in (
            (1e3, "n<1K"),
            (1e4, "1K<n<10K"),
            (1e5, "10K<n<100K"),
            (1e6, "100K<n<1M"),
            (float("inf"), "n>1M"),
        )
        if rows < limit
    )
    if card.origin == "synthetic":  # generated by focus-pipeline: the project's own licence
        licence = {"license": "mit"}
    elif card.origin == "coco":  # COCO: annotations CC BY 4.0, Flickr images under their own licences; the
        # other COCO-format sets (CrowdPose, AP-10K) are research-only: the card body says so
        licence = {
            "license": "other",
            "license_name": "source-dataset-terms",
            "license_link": "https://cocodataset.org/#termsofuse",
        }
    else:  # MPII annotations are simplified BSD; the images are research-only: no SPDX id fits the whole
        licence = {
            "license": "other",
            "license_name": "mpii-human-pose",
            "license_link": "http://human-pose.mpi-inf.mpg.de/#download",
        }
    title = {"synthetic": "Synthetic MPII-style", "coco": "COCO-format"}.get(card.origin, "MPII")
    source_tags = ["pose", "coco-format"] if card.origin == "coco" else ["human-pose", "mpii"]
    return {
        "pretty_name": f"{title} {'Captions' if captions_only(card) else 'Pose Descriptions'} ({card.name})",
        "language": ["en"],
        **licence,
        "task_categories": ["zero-shot-image-classification", "image-to-text", "keypoint-detection"],
        "tags": [*source_tags, "pose-description", "focusclip", "clip", "heatmap"],
        "size_categories": [size],
        "configs": [
            {
                "config_name": "default",
                "default": True,
                "data_files": [{"split": s.name, "path": f"data/{s.name}-*"} for s in card.splits],
            }
        ],
        "dataset_info": {
            "features": FEATURES._to_yaml_list(),
            "splits": [
                {"name": s.name, "num_bytes": s.num_bytes, "num_examples": s.rows} for s in card.splits
            ],
            "download_size": sum(s.download_bytes for s in card.splits),
            "dataset_size": sum(s.num_bytes for s in card.splits),
        },
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _sampling(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling-related keys of a describe config, wherever they sit (flat or under a nested section)."""
    keys = (
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "samples",
        "n",
        "presence_penalty",
        "frequency_penalty",
    )
    found: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            found.update(_sampling(value))
        elif key in keys and value is not None:
            found[key] = value
    return found


def render_card(card: CardInputs) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    # "name (64-hex hash)" -> "name (first 12)": the full hashes are in the describe meta block below.
    env.filters["short_hash"] = lambda t: re.sub(r"\(([0-9a-f]{12})[0-9a-f]{4,}\)", r"(\1)", t)
    env.filters["tojson"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    header = yaml.safe_dump(yaml_header(card), sort_keys=False, allow_unicode=True, width=1000)
    body = env.get_template("dataset_card.md.j2").render(
        card=card,
        total_rows=sum(s.rows for s in card.splits),
        sampling={name: _sampling(meta.config) for name, meta in card.describe_meta.items()},
        context=CLIP_CONTEXT,
        captions_only=captions_only(card),
    )
    return f"---\n{header}---\n\n{body}"
