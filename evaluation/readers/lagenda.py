"""LAGENDA (MiVOLO): `lagenda_annotation.csv` with one row per person (img_name, age, gender, face_x0..y1,
person_x0..y1) + the benchmark images. The `crop` option picks the face or the body (person) box.

As in the paper's loader, every row that has -1 anywhere (age, gender or a box: not annotated/visible) is
skipped, so the face and body tasks score the same people. Age groups: kid <= 12, teenager <= 19, adult.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://github.com/WildChlamydia/MiVOLO (the LAGENDA benchmark: images + lagenda_annotation.csv)"

BOX_COLUMNS = {
    "face": ("face_x0", "face_y0", "face_x1", "face_y1"),
    "body": ("person_x0", "person_y0", "person_x1", "person_y1"),
}
CSV_NAMES = ("lagenda_annotation.csv", "annotation.csv", "annotations.csv")
IMAGE_DIRS = ("", "images", "lagenda_benchmark_images")


def age_group(age: float) -> str:
    if age <= 12:
        return "kid"
    if age <= 19:
        return "teenager"
    return "adult"


def _find_image(root: Path, img_name: str) -> Path | None:
    base = img_name.replace("\\", "/").split("/")[-1]
    for candidate in (root / img_name, *(root / d / base for d in IMAGE_DIRS if d), root / base):
        if candidate.is_file():
            return candidate
    return None


def read(inp: ReaderInput) -> ReadResult:
    crop = inp.options.get("crop", "face")
    if crop not in BOX_COLUMNS:
        raise ValueError(f"LAGENDA crop must be face or body, not {crop!r}")
    csv = next((inp.root / n for n in CSV_NAMES if (inp.root / n).is_file()), None)
    if csv is None:
        raise DataAbsent("LAGENDA annotation CSV not found", [inp.root / n for n in CSV_NAMES])
    df = pd.read_csv(csv)
    needed = {"img_name", "age", "gender", *BOX_COLUMNS["face"], *BOX_COLUMNS["body"]}
    missing = needed - set(df.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)}")
    allowed = None
    if inp.split != "all":
        names = inp.root / f"{inp.split}.txt"
        if not names.is_file():
            raise DataAbsent(f"LAGENDA has no official splits; no name list for split {inp.split!r}", [names])
        allowed = {line.strip().split("/")[-1] for line in names.read_text().splitlines() if line.strip()}
    values = df[sorted(needed - {"img_name", "gender"})]
    has_missing = (values == -1).any(axis=1) | (df["gender"].astype(str) == "-1")
    out = ReadResult()
    for row, skip in zip(df.itertuples(index=False), has_missing, strict=True):
        if allowed is not None and str(row.img_name).split("/")[-1] not in allowed:
            continue
        if skip:
            out.skipped["missing value (-1)"] += 1
            continue
        image = _find_image(inp.root, str(row.img_name))
        if image is None:
            out.skipped["image missing"] += 1
            continue
        box = tuple(float(getattr(row, c)) for c in BOX_COLUMNS[crop])
        gender = {"M": "male", "F": "female"}.get(str(row.gender), str(row.gender))
        out.samples.append(
            Sample(
                str(image),
                {"age": str(row.age), "age_group": age_group(float(row.age)), "gender": gender},
                box=box,
                name=str(row.img_name),
            )
        )
    return out
