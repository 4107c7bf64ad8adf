"""FER+ (microsoft/FERPlus): new labels (10 annotators' votes) for the FER2013 faces, in two layouts.

1. `FER2013{Train,Valid,Test}/label.csv` + the PNGs beside it, as FERPlus's generate_training_data.py
   writes them. No header; columns: image name, face box, 8 emotion votes, unknown, NF.
2. `fer2013new.csv` (Usage, Image name, the same 10 vote columns) whose row i labels row i of FER2013's
   `fer2013.csv`; the pixels come from that CSV (beside it, or the fer2013 dataset folder).

Label = the majority vote over the 8 emotions (ties: the first in column order, as FocusCLIP's loader);
faces with NF > 0 votes are excluded, as in the paper's protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.readers import fer2013
from evaluation.readers.base import (
    DataAbsent,
    ReaderInput,
    ReadResult,
    Sample,
    first_existing,
    pixels_to_array,
)

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://github.com/microsoft/FERPlus (fer2013new.csv; pixels from FER2013's fer2013.csv)"

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_COLUMNS = (*EMOTIONS, "unknown", "NF")
SPLIT_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
SPLIT_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def majority_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """votes (N, 10) in VOTE_COLUMNS order -> (label index into EMOTIONS or -1, reason code per row).

    Reason codes: 0 kept, 1 NF > 0 (not a face), 2 no vote for any of the 8 emotions."""
    emotion_votes = votes[:, : len(EMOTIONS)]
    labels = emotion_votes.argmax(axis=1)  # argmax returns the first maximum: the loader's tie rule
    reason = np.zeros(len(votes), dtype=np.int8)
    reason[emotion_votes.sum(axis=1) == 0] = 2
    reason[votes[:, -1] > 0] = 1
    labels[reason != 0] = -1
    return labels, reason


_REASONS = {1: "not a face (NF > 0)", 2: "no emotion votes"}


def read(inp: ReaderInput) -> ReadResult:
    split = inp.split.lower()
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown FER+ split {inp.split!r} (one of {', '.join(SPLIT_FOLDERS)})")
    label_csv = inp.root / SPLIT_FOLDERS[split] / "label.csv"
    new_csv = inp.root / "fer2013new.csv"
    if label_csv.is_file():
        return read_label_csv(label_csv)
    if new_csv.is_file():
        fer_roots = [inp.root, inp.root.parent / "fer2013"]
        if "fer2013" in inp.paths:
            fer_roots.insert(0, inp.paths["fer2013"])
        candidates = [c for r in fer_roots for c in fer2013.csv_candidates(r)]
        pixels_csv = first_existing(candidates)
        if pixels_csv is None:
            raise DataAbsent("fer2013new.csv needs FER2013's fer2013.csv for the pixels", candidates)
        return read_new_csv(new_csv, pixels_csv, split)
    raise DataAbsent("FER+ labels not found", [label_csv, new_csv])


def read_label_csv(path: Path) -> ReadResult:
    df = pd.read_csv(path, header=None, dtype={0: str})
    if df.shape[1] != 2 + len(VOTE_COLUMNS):
        raise ValueError(f"{path}: expected 12 columns (name, box, 10 vote counts), found {df.shape[1]}")
    votes = df.iloc[:, 2:].to_numpy(dtype=np.int64)
    labels, reason = majority_labels(votes)
    out = ReadResult()
    for name, label, why in zip(df[0], labels, reason, strict=True):
        if why:
            out.skipped[_REASONS[int(why)]] += 1
            continue
        image = path.parent / str(name)
        if not image.is_file():
            out.skipped["image missing"] += 1
            continue
        out.samples.append(Sample(str(image), {"emotion": EMOTIONS[label]}, name=str(name)))
    return out


def read_new_csv(path: Path, pixels_csv: Path, split: str) -> ReadResult:
    new = pd.read_csv(path, dtype={"Usage": str, "Image name": str}, keep_default_na=False)
    missing = {"Usage", "Image name", *VOTE_COLUMNS} - set(new.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    pixels = fer2013.read_csv(pixels_csv)
    if len(pixels) != len(new):
        raise ValueError(
            f"{path} has {len(new)} rows but {pixels_csv} has {len(pixels)}: they label "
            "each other row by row, so both must be the complete release files"
        )
    usage = SPLIT_USAGE[split]
    keep = (new["Usage"] == usage).to_numpy()
    mismatch = int((pixels["Usage"].str.strip().to_numpy()[keep] != usage).sum())
    if mismatch:
        raise ValueError(
            f"{pixels_csv}: {mismatch} {usage} rows of {path.name} fall on other Usage rows; "
            "not the matching fer2013.csv"
        )
    votes = new.loc[keep, list(VOTE_COLUMNS)].to_numpy(dtype=np.int64)
    labels, reason = majority_labels(votes)
    out = ReadResult()
    for row_pixels, name, label, why in zip(
        pixels.loc[keep, "pixels"], new.loc[keep, "Image name"], labels, reason, strict=True
    ):
        if why:
            out.skipped[_REASONS[int(why)]] += 1
            continue
        try:
            array = pixels_to_array(row_pixels)
        except ValueError:
            out.skipped["bad pixels"] += 1
            continue
        out.samples.append(Sample(array, {"emotion": EMOTIONS[label]}, name=name))
    return out
