"""Readers for COCO-format files: keypoint instances (COCO, CrowdPose, OCHuman, AP-10K, MPII-TRB, ...) and
COCO captions.

    from pipeline.coco.keypoints import read            # SourceData, as the MPII readers return it
    from pipeline.coco.captions import read_captions, attach_captions

pipeline.mpii.sniff_format sends a JSON object here (the mmpose MPII JSON is a list); the format is documented
at https://cocodataset.org/#format-data ("Object Keypoint Detection" and "Image Captioning").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

# What convert reads from JSON, said whenever a JSON file is something else.
EXPECTED_JSON = (
    "convert reads a COCO-format keypoints object {images, annotations, categories} "
    "(person_keypoints_*.json, CrowdPose, AP-10K, ...) or the mmpose/HRNet MPII list of people "
    "[{image, joints, joints_vis, center, scale}, ...]"
)
_RESULT_KEYS = {"keypoints", "bbox", "segmentation"}  # what a COCO annotation (or detection result) carries
_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words: "JSON null", "a JSON list of 3 numbers", "a JSON list of COCO
    annotations (image_id, keypoints, ...)" (a keypoint results file, or a file's bare annotations list)."""
    if value is None:
        return "JSON null"
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if not isinstance(value, list):
        return f"a JSON {kind}"
    if not value:
        return "an empty JSON list"
    first = value[0]
    if isinstance(first, dict) and "image_id" in first and _RESULT_KEYS & first.keys():
        return (
            f"a JSON list of COCO annotations ({', '.join(list(first)[:5])}, ...) without images or "
            f"categories: a keypoint results file, or a file's bare annotations list"
        )
    inner = "null value" if first is None else _JSON_TYPES.get(type(first), type(first).__name__)
    n = len(value)
    return f"a JSON list of {n} {inner}{'' if n == 1 else 's'} (the first: {json.dumps(first)[:40]})"


def load_json(path: Path) -> Any:
    """The parsed file; a one-line PipelineError for text that is not UTF-8 JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError as err:
        raise PipelineError(f"{path}: not UTF-8 text: {err}") from None
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); truncated file?"
        ) from None
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from None


def records(path: Path, data: dict, key: str) -> list[dict]:
    """data[key] as a list of objects, or a one-line error naming the first record that is not one."""
    items = data.get(key)
    if not isinstance(items, list):
        raise PipelineError(f"{path}: '{key}' is {type(items).__name__}, not a list (COCO format)")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PipelineError(f"{path}: {key}[{i}] is a {type(item).__name__}, not an object")
    return items


def record_id(path: Path, where: str, rec: dict, key: str = "id") -> int | str:
    """An image, category or annotation id: COCO writes integers, some exports strings."""
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PipelineError(f"{path}: {where}: {key} is {json.dumps(value)}, not an id (integer or string)")
    return value
