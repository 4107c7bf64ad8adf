"""UTKFace: the labels live in the file names, `[age]_[gender]_[race]_[date&time].jpg.chip.jpg`
(age 0..116, gender 0 male / 1 female, race 0 white, 1 black, 2 asian, 3 indian, 4 others). Names that
do not follow the pattern (the real release has five) are counted and skipped.

Split: no official one, so `all` takes every image; any other split name is a list of file names
(`<root>/<split>.txt`, one per line, or FocusCLIP's `<root>/annotations/<split>.csv` with `img_name`)
that restricts the set. The `split_list` option (`eval --utk-split-list FILE`) names such a file anywhere,
e.g. the reference's val list, and wins over the split name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://susanqq.github.io/UTKFace/ (the aligned and cropped faces, *.jpg.chip.jpg)"

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
# The date part has 17 (a few 18) digits in the release; the in-the-wild variant drops the `.chip.jpg` suffix.
NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{8,})\.jpg(?:\.chip\.jpg)?$")
IMAGE_DIRS = ("UTKFace", "utkface_aligned_cropped/UTKFace", "images", "")


def age_group(age: int) -> str:
    """The paper's groups: baby 0-2, child 3-9, teenager 10-19, young adult 20-29, adult 30+."""
    if age <= 2:
        return "baby"
    if age <= 9:
        return "child"
    if age <= 19:
        return "teenager"
    if age <= 29:
        return "young adult"
    return "adult"


def parse_name(name: str) -> dict[str, str] | None:
    """Labels from a file name, or None when the name is malformed."""
    match = NAME.match(name)
    if match is None:
        return None
    age, gender, race = int(match[1]), int(match[2]), int(match[3])
    return {"age": str(age), "age_group": age_group(age), "gender": GENDERS[gender], "race": RACES[race]}


def _image_dir(root: Path) -> Path:
    for sub in IMAGE_DIRS:
        folder = root / sub if sub else root
        if folder.is_dir() and any(p.name.endswith(".jpg") for p in folder.iterdir()):
            return folder
    raise DataAbsent("no UTKFace images found", [root / s if s else root for s in IMAGE_DIRS])


def _stem(name: str) -> str:
    return name.split("/")[-1].removesuffix(".chip.jpg")


def read_name_list(path: Path) -> set[str]:
    """The image names (without `.chip.jpg`) of a split list: a CSV with an `img_name` column (FocusCLIP's
    annotations/<split>.csv, names without the suffix) or any other file with one name per line."""
    if path.suffix == ".csv":
        names = pd.read_csv(path, dtype=str)
        if "img_name" not in names.columns:
            raise ValueError(f"{path}: a CSV split list needs an img_name column")
        return {_stem(n) for n in names["img_name"].dropna()}
    return {_stem(line.strip()) for line in path.read_text().splitlines() if line.strip()}


def _restriction(root: Path, split: str) -> set[str] | None:
    """The names a split list allows, or None for every image."""
    if split == "all":
        return None
    txt, csv = root / f"{split}.txt", root / "annotations" / f"{split}.csv"
    found = next((p for p in (txt, csv) if p.is_file()), None)
    if found is None:
        raise DataAbsent(f"UTKFace has no official splits; no list of names for split {split!r}", [txt, csv])
    return read_name_list(found)


def read(inp: ReaderInput) -> ReadResult:
    folder = _image_dir(inp.root)
    out = ReadResult()
    if "split_list" in inp.options:
        listed = Path(inp.options["split_list"])
        if not listed.is_file():
            raise DataAbsent("the UTKFace split list is absent", [listed])
        allowed: set[str] | None = read_name_list(listed)
        out.split = f"list {listed.name}"
        out.notes.append(f"scored only the {len(allowed)} images listed in {listed}")
    else:
        allowed = _restriction(inp.root, inp.split)
    seen: set[str] = set()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or ".jpg" not in path.name:
            continue
        if allowed is not None and _stem(path.name) not in allowed:
            continue
        seen.add(_stem(path.name))
        labels = parse_name(path.name)
        if labels is None:
            out.skipped["malformed file name"] += 1
            continue
        out.samples.append(Sample(str(path), labels, name=path.name))
    if allowed is not None and len(allowed - seen):
        out.skipped["image missing"] += len(allowed - seen)
    return out
