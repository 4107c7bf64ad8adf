"""FER2013: the Kaggle CSV (`emotion,pixels,Usage`, also `icml_face_data.csv` whose header has spaces) or the
image-folder layout (`<split>/<emotion>/*.jpg`, as in the "msambare" Kaggle upload).

Labels: `emotion` is the folder name of the image-folder layout (angry, disgust, fear, happy, neutral, sad,
surprise); the CSV's 0..6 map to the same names in Kaggle's order.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.readers.base import (
    DataAbsent,
    ReaderInput,
    ReadResult,
    Sample,
    first_existing,
    pixels_to_array,
)

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "Kaggle: challenges-in-representation-learning-facial-expression-recognition-challenge"

# Kaggle's 0..6 (challenge page; torchvision FER2013 uses the same order).
CSV_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Usage values per split name.
USAGE = {
    "train": ("Training",),
    "val": ("PublicTest",),
    "test": ("PrivateTest",),
    "publictest": ("PublicTest",),
    "privatetest": ("PrivateTest",),
    "all": ("Training", "PublicTest", "PrivateTest"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def csv_candidates(root: Path) -> list[Path]:
    return [root / "fer2013.csv", root / "fer2013" / "fer2013.csv", root / "icml_face_data.csv"]


def read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]  # icml_face_data.csv writes " Usage", " pixels"
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)} (expected emotion,pixels,Usage)")
    return df


def read(inp: ReaderInput) -> ReadResult:
    split = inp.split.lower()
    folder = inp.root / split
    if folder.is_dir():
        return read_folder(folder)
    csv = first_existing(csv_candidates(inp.root))
    if csv is None:
        raise DataAbsent("FER2013 CSV or image folder not found", [folder, *csv_candidates(inp.root)])
    if split not in USAGE:
        raise ValueError(f"unknown FER2013 split {inp.split!r} (one of {', '.join(USAGE)})")
    return samples_from_csv(read_csv(csv), USAGE[split], csv)


def samples_from_csv(df: pd.DataFrame, usages: tuple[str, ...], path: Path) -> ReadResult:
    out = ReadResult()
    df = df[df["Usage"].str.strip().isin(usages)]
    for row in df.itertuples(index=False):
        try:
            emotion = CSV_EMOTIONS[int(row.emotion)]
        except (ValueError, IndexError):
            out.skipped["unknown label"] += 1
            continue
        try:
            pixels = pixels_to_array(row.pixels)
        except ValueError:
            out.skipped["bad pixels"] += 1
            continue
        out.samples.append(Sample(pixels, {"emotion": emotion}, name=f"{path.name}:{row.Usage}"))
    return out


def read_folder(folder: Path) -> ReadResult:
    """`<folder>/<class>/<image>`: the label (fields `emotion` and `class`) is the class folder's name."""
    out = ReadResult()
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(class_dir.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                out.samples.append(
                    Sample(str(image), {"emotion": class_dir.name, "class": class_dir.name}, name=image.name)
                )
            elif image.is_file():
                out.skipped["not an image file"] += 1
    return out
