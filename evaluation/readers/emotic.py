"""EMOTIC: `CVPR17_Annotations.mat` (keys train/val/test: one struct per image with filename, folder,
image_size, original_database and person; per person body_bbox [x1 y1 x2 y2], annotations_categories
(.categories), gender, age; val/test also combined_categories), or the common CSV conversion
(Tandon-A/emotic `mat2py.py`: `emotic_pre/<split>.csv` with Folder, Filename, BBox, Categorical_Labels,
Gender, Age). Images live at `<root>/<folder>/<filename>` (or under `<root>/emotic/`).

One sample per person, cropped to the body box. `emotion` is the first listed category, as FocusCLIP's
converter takes it (`emotions` keeps them all); `age` is Kid / Teenager / Adult.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://github.com/rkosti/emotic (the images and CVPR17_Annotations.mat, on request to the authors)"

CATEGORIES = (
    "Affection",
    "Anger",
    "Annoyance",
    "Anticipation",
    "Aversion",
    "Confidence",
    "Disapproval",
    "Disconnection",
    "Disquietment",
    "Doubt/Confusion",
    "Embarrassment",
    "Engagement",
    "Esteem",
    "Excitement",
    "Fatigue",
    "Fear",
    "Happiness",
    "Pain",
    "Peace",
    "Pleasure",
    "Sadness",
    "Sensitivity",
    "Suffering",
    "Surprise",
    "Sympathy",
    "Yearning",
)
MAT_NAMES = (
    "CVPR17_Annotations.mat",
    "Annotations/Annotations.mat",
    "annotations/Annotations.mat",
    "Annotations.mat",
)


def _strings(value) -> list[str]:
    """A MATLAB cell of strings as loadmat(squeeze_me=True) gives it: a str, or an array of them."""
    if isinstance(value, str):
        return [value]
    return [str(v) for v in np.atleast_1d(value).ravel() if str(v)]


def _categories(person, split: str) -> list[str]:
    if split != "train" and hasattr(person, "combined_categories"):
        return _strings(person.combined_categories)
    annotators = np.atleast_1d(person.annotations_categories)
    return _strings(annotators[0].categories) if annotators.size else []


def _image(root: Path, folder: str, filename: str) -> Path | None:
    for candidate in (root / folder / filename, root / "emotic" / folder / filename):
        if candidate.is_file():
            return candidate
    return None


def _add(
    out: ReadResult, root: Path, folder: str, filename: str, box, categories: list[str], age: str, gender: str
) -> None:
    if not categories:
        out.skipped["no emotion category"] += 1
        return
    image = _image(root, folder, filename)
    if image is None:
        out.skipped["image missing"] += 1
        return
    box = tuple(float(v) for v in np.asarray(box, dtype=float).ravel()[:4])
    out.samples.append(
        Sample(
            str(image),
            {"emotion": categories[0], "emotions": "|".join(categories), "age": age, "gender": gender},
            box=box,
            name=f"{folder}/{filename}",
        )
    )


def read_mat(path: Path, root: Path, split: str) -> ReadResult:
    from scipy.io import loadmat

    mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    if split not in mat:
        raise ValueError(
            f"{path}: no {split!r} split (has {sorted(k for k in mat if not k.startswith('__'))})"
        )
    out = ReadResult()
    for image in np.atleast_1d(mat[split]):
        for person in np.atleast_1d(image.person):
            _add(
                out,
                root,
                str(image.folder),
                str(image.filename),
                person.body_bbox,
                _categories(person, split),
                str(person.age),
                str(person.gender),
            )
    return out


def read_csv(path: Path, root: Path) -> ReadResult:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"Folder", "Filename", "BBox", "Categorical_Labels", "Gender", "Age"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    out = ReadResult()
    for i, row in enumerate(df.itertuples(index=False)):
        try:
            box = ast.literal_eval(row.BBox)
            categories = list(ast.literal_eval(row.Categorical_Labels))
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"{path} row {i + 2}: cannot parse BBox/Categorical_Labels ({err})") from None
        _add(out, root, row.Folder, row.Filename, box, categories, row.Age, row.Gender)
    return out


def read(inp: ReaderInput) -> ReadResult:
    for name in MAT_NAMES:
        if (inp.root / name).is_file():
            return read_mat(inp.root / name, inp.root, inp.split)
    csvs = [inp.root / "emotic_pre" / f"{inp.split}.csv", inp.root / f"{inp.split}.csv"]
    for csv in csvs:
        if csv.is_file():
            return read_csv(csv, inp.root)
    raise DataAbsent(
        "EMOTIC annotations (.mat or CSV conversion) not found", [*(inp.root / n for n in MAT_NAMES), *csvs]
    )
