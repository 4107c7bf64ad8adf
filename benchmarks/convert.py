"""convert speed: the real 17,372-row mpii_dataset.csv and a synthetic official-structure .mat.

    .venv/bin/python benchmarks/convert.py                      # CSV + a 5,000-image .mat (minutes at first)
    .venv/bin/python benchmarks/convert.py --mat-images 25000   # the full MPII size (the .mat is cached)

Anchor: the reference scripts' way of grouping rows into images, a `list.index` lookup per row over the names
seen so far (quadratic), on the same CSV, in the same run. Ours is the whole stage: read, join, select, write
Parquet, publish the artifact. The .mat is written once by pipeline.sources.mpii_mat_writer with the real
file's quirks (MPII-like: 1-3 people, ~20% test rectangles without points, mixed is_visible encodings) and
kept in the temp folder; its conversion time is mostly scipy.io.loadmat.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.convert import ConvertConfig, convert  # noqa: E402
from pipeline.records import ImageAnnotation, Person, empty_keypoints  # noqa: E402
from pipeline.sources.mpii_mat_writer import MatQuirks, write_release_mat  # noqa: E402
from pipeline.store import Store  # noqa: E402

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii" / "csv_activity" / "mpii_dataset.csv"


def reference_csv(path: Path) -> int:
    """Rows -> images the way the reference scripts did it: names.index() per row (O(n^2))."""
    names: list[str] = []
    images: list[dict] = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        for row in reader:
            name = row[1]
            try:
                i = names.index(name)
            except ValueError:
                names.append(name)
                images.append({"image": name, "activity": row[-2], "category": row[-1], "people": []})
                i = len(names) - 1
            joints = [float(v) for v in row[2 : 2 + 32]]
            images[i]["people"].append(
                {
                    "joints": [joints[k : k + 2] for k in range(0, 32, 2)],
                    "scale": float(row[header.index("Scale")]),
                }
            )
    return len(images)


def synthetic_images(n: int, seed: int) -> list[ImageAnnotation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        test = rng.random() < 0.25
        people = []
        for _ in range(int(rng.integers(1, 4))):
            kps = empty_keypoints()
            if not test:
                sel = rng.random(16) < 0.87
                kps[sel, 0] = rng.uniform(0, 1280, sel.sum())
                kps[sel, 1] = rng.uniform(0, 720, sel.sum())
                kps[sel, 2] = np.where(rng.random(sel.sum()) < 0.25, 1, 2)
            people.append(
                Person(
                    keypoints=kps,
                    center=(float(rng.uniform(0, 1280)), float(rng.uniform(0, 720))),
                    scale=float(rng.uniform(1, 6)),
                    head_box=None if test else (10.0, 20.0, 60.0, 90.0),
                )
            )
        labelled = rng.random() > 0.05
        out.append(
            ImageAnnotation(
                image=f"{i:09d}.jpg",
                split="test" if test else "train",
                activity=f"activity {i % 410}" if labelled else None,
                category=f"category {i % 20}" if labelled else None,
                activity_id=i % 410 if labelled else None,
                people=people,
            )
        )
    return out


def timed_convert(sources: list[Path], root: Path, name: str) -> tuple[float, dict]:
    start = time.perf_counter()
    counts = convert(ConvertConfig(sources=sources, name=name, overwrite=True), Store(root))
    return time.perf_counter() - start, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=CSV, help="the real mpii_dataset.csv")
    ap.add_argument("--mat-images", type=int, default=5000, help="images in the synthetic .mat (0 = skip)")
    ap.add_argument("--repeats", type=int, default=3, help="CSV runs, best kept (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scratch = Path(tempfile.gettempdir()) / "focus-bench-convert"
    scratch.mkdir(exist_ok=True)

    if args.csv.is_file():
        timed_convert([args.csv], scratch / "store", "warmup")  # imports (pandas, pyarrow) out of the timing
        ours = min(timed_convert([args.csv], scratch / "store", "csv") for _ in range(args.repeats))
        start = time.perf_counter()
        n_ref = reference_csv(args.csv)
        ref = time.perf_counter() - start
        secs, counts = ours
        assert n_ref == counts["images"], (n_ref, counts["images"])
        print(f"{args.csv.name}: {counts['images']} images, {counts['people']} people")
        print(f"  reference list.index grouping (anchor, no output written): {ref:7.2f} s")
        print(
            f"  convert stage (read, join, select, Parquet, publish):     {secs:7.2f} s "
            f"({counts['images'] / secs:,.0f} images/s)   ratio {ref / secs:5.1f}x"
        )
    else:
        print(f"(no {args.csv}; CSV part skipped)")

    if args.mat_images:
        mat = scratch / f"release-{args.mat_images}-{args.seed}.mat"
        if not mat.exists():
            start = time.perf_counter()
            write_release_mat(
                mat.with_suffix(".tmp"),
                synthetic_images(args.mat_images, args.seed),
                quirks=MatQuirks.real_world(),
            )
            mat.with_suffix(".tmp").rename(mat)
            print(
                f"wrote {mat.name} ({mat.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s"
            )
        secs, counts = timed_convert([mat], scratch / "store", "mat")
        kept = f"kept {counts['images']} images, {counts['people']} people"
        print(f"{mat.name}: {args.mat_images} images -> {kept} (dropped {counts['dropped']})")
        print(
            f"  convert stage: {secs:7.2f} s ({args.mat_images / secs:,.0f} images/s; "
            f"25k images ~ {25000 / args.mat_images * secs:.0f} s)"
        )


if __name__ == "__main__":
    main()
