"""Kinetics-400: the annotation CSV (`label,youtube_id,time_start,time_end,split[,is_cc]`, e.g.
`kinetics-400_val.csv`) or the official JSON (`kinetics_val.json`: id -> annotations{label, segment}), plus a
folder of clips named `<youtube_id>_<start:06d>_<end:06d>.<ext>` (or `<youtube_id>.<ext>`) anywhere below the
dataset folder. One frame per clip, from the middle of the labelled segment, is decoded with PyAV in the
DataLoader workers and cached (evaluation.data). Frames already extracted as `<same stem>.jpg` are used as is.

Split `test` (the task's default, as in the reference code) scores the test annotations when they carry
labels (e.g. the CVDF release's `annotations/test.csv`). ActivityNet's `kinetics-400_test.csv` has no label
column and the official test JSON has empty labels: then `val` is scored instead, and the result's split
and notes say so. A row whose segment is not two numbers of seconds (empty, NaN, reversed) is skipped and
counted as `bad segment`; the notes name the first one by file and line.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample, index_files

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://github.com/cvdfoundation/kinetics-dataset (annotation CSVs and the clips)"

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def annotation_candidates(root: Path, split: str) -> list[Path]:
    return [
        root / f"kinetics-400_{split}.csv",
        root / f"kinetics400_{split}.csv",
        root / "annotations" / f"{split}.csv",
        root / f"{split}.csv",
        root / f"kinetics_{split}.json",
        root / "annotations" / f"{split}.json",
    ]


def read_annotations(path: Path) -> pd.DataFrame:
    """Columns label, youtube_id, time_start, time_end (as written: checked per row by `parse_segment`), where
    (the row's place in the file, for messages), from either format."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = []
        for k, v in data.items():
            segment = v.get("annotations", {}).get("segment", [0, 10])
            start, end = segment if isinstance(segment, list) and len(segment) == 2 else (segment, None)
            label = v.get("annotations", {}).get("label", "")
            rows.append({"label": label, "youtube_id": k, "time_start": start, "time_end": end,
                         "where": f"{path} {k!r}"})  # fmt: skip
        df = pd.DataFrame(rows, columns=["label", "youtube_id", "time_start", "time_end", "where"])
    else:
        df = pd.read_csv(path, dtype={"label": str, "youtube_id": str}, keep_default_na=False)
        missing = {"youtube_id", "time_start", "time_end"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        if "label" not in df.columns:
            df["label"] = ""
        df["where"] = [f"{path} line {i + 2}" for i in range(len(df))]  # line 1 is the header
    df["label"] = df["label"].astype(str).str.strip().str.strip('"')
    return df


def parse_segment(start: object, end: object) -> tuple[float, float] | None:
    """(start, end) in seconds, or None when a row's times are not one (empty, NaN, negative, reversed)."""
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        return None
    ok = math.isfinite(start) and math.isfinite(end) and 0 <= start <= end
    return (start, end) if ok else None


def read_classnames(root: Path) -> tuple[str, ...] | None:
    """PyTorchVideo's kinetics_classnames.json (name -> index; multi-word names keep literal quotes)."""
    path = root / "kinetics_classnames.json"
    if not path.is_file():
        return None
    mapping = json.loads(path.read_text())
    return tuple(name.strip('"') for name, _ in sorted(mapping.items(), key=lambda kv: kv[1]))


def clip_stem(youtube_id: str, start: float, end: float) -> str:
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def _load(root: Path, split: str) -> tuple[pd.DataFrame, str, list[str]]:
    notes = []
    candidates = annotation_candidates(root, split)
    tables = [read_annotations(p) for p in candidates if p.is_file()]
    # The first table with labels wins: ActivityNet's unlabelled test CSV may sit beside a labelled one.
    df = next((t for t in tables if (t["label"] != "").any()), tables[0] if tables else None)
    if split == "test" and (df is None or (df["label"] == "").all()):
        fallback = next((p for p in annotation_candidates(root, "val") if p.is_file()), None)
        if fallback is not None:
            notes.append(
                "Kinetics-400 test has no labels here: scored the val split instead (the reference "
                f"scores test; put a labelled test CSV at {candidates[0]} to do the same)"
            )
            log.info(notes[-1])
            return read_annotations(fallback), "val", notes
        candidates += annotation_candidates(root, "val")
    if df is None:
        raise DataAbsent(f"Kinetics-400 annotations for split {split!r} not found", candidates)
    return df, split, notes


def read(inp: ReaderInput) -> ReadResult:
    df, split, notes = _load(inp.root, inp.split)
    files = index_files(inp.root, VIDEO_SUFFIXES + FRAME_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for name, path in files.items():
        stem = name.rsplit(".", 1)[0]
        # A ready frame wins over the clip it came from.
        if stem not in by_stem or path.suffix.lower() in FRAME_SUFFIXES:
            by_stem[stem] = path
    classes = read_classnames(inp.root) or tuple(sorted(set(df["label"]) - {""}))
    out = ReadResult(classes=classes, split=split, notes=notes)
    first_bad = None
    for row in df.itertuples(index=False):
        if not row.label:
            out.skipped["no label"] += 1
            continue
        times = parse_segment(row.time_start, row.time_end)
        if times is None:
            out.skipped["bad segment"] += 1
            if first_bad is None:
                first_bad = f"{row.where} (time_start {row.time_start!r}, time_end {row.time_end!r})"
            continue
        start, end = times
        stem = clip_stem(row.youtube_id, start, end)
        path = by_stem.get(stem) or by_stem.get(row.youtube_id)
        if path is None:
            out.skipped["clip missing"] += 1
            continue
        is_video = path.suffix.lower() in VIDEO_SUFFIXES
        out.samples.append(
            Sample(
                str(path),
                {"action": row.label},
                is_video=is_video,
                segment=(start, end) if is_video else None,
                name=stem,
            )
        )
    if first_bad:
        more = out.skipped["bad segment"] - 1
        others = f" and {more} more" if more else ""
        out.notes.append(f"skipped {first_bad}{others}: not a segment in seconds")
        log.warning(out.notes[-1])
    return out
