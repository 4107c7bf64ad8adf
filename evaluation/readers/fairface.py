"""FairFace: `fairface_label_{train,val}.csv` (file,age,gender,race,service_test) + the images, whose relative
path is the `file` column (`val/1.jpg`), under the dataset folder or the folder the official zip unpacks to.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.readers.base import DataAbsent, ReaderInput, ReadResult, Sample

# Where a user officially obtains the files this reader parses (`eval --check-data` prints it).
SOURCE = "https://github.com/joojs/fairface (padding-0.25 images + fairface_label_{train,val}.csv)"

IMAGE_DIRS = ("", "fairface-img-margin025-trainval", "fairface-img-margin125-trainval")
COLUMNS = ("file", "age", "gender", "race")


def read(inp: ReaderInput) -> ReadResult:
    csv = inp.root / f"fairface_label_{inp.split}.csv"
    if not csv.is_file():
        raise DataAbsent(f"FairFace label CSV for split {inp.split!r} not found", [csv])
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)} (expected file,age,gender,race,...)")
    image_dirs = [inp.root / d if d else inp.root for d in IMAGE_DIRS]
    image_dir = next((d for d in image_dirs if (d / inp.split).is_dir()), inp.root)
    out = ReadResult()
    for row in df.itertuples(index=False):
        image = image_dir / Path(row.file)
        if not image.is_file():
            out.skipped["image missing"] += 1
            continue
        out.samples.append(
            Sample(str(image), {"age": row.age, "gender": row.gender, "race": row.race}, name=row.file)
        )
    return out
