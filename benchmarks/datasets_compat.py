"""Do our published shards open in older `datasets` releases? One throwaway venv per version.

    .venv/bin/python benchmarks/datasets_compat.py                       # datasets 3.6.0 (the last 3.x)
    .venv/bin/python benchmarks/datasets_compat.py --versions 2.18.0 3.6.0 4.0.0

Builds a dataset from the 5 real MPII images in ../shared/data/mpii/mmpose_tests through the CLI
(convert -> describe --backend rules -> build-dataset), then, for each version, creates (or reuses) a venv
under the cache folder with only `datasets==VERSION` and Pillow from the package index, and in it loads the
dataset the two ways a user would: `load_dataset(folder)` (features from the card's YAML) and
`Dataset.from_parquet(shard)` (features from the shard's own schema metadata). It prints one line per
version and way, and exits non-zero if any failed. The suite covers the installed version.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "mpii" / "mmpose_tests"

PROBE = """
import glob, sys, datasets
folder = sys.argv[1]
dd = datasets.load_dataset(folder)
ds = dd[next(iter(dd))]
row = ds[0]
assert isinstance(row["people"], list) and len(row["people"][0]["keypoints"]) == 48, row["people"]
assert isinstance(row["descriptions"], list) and row["descriptions"][0]["text"]
print(f"load_dataset: {len(ds)} rows, people[0] keypoints {len(row['people'][0]['keypoints'])}")
shard = sorted(glob.glob(folder + "/data/*.parquet"))[0]
ds = datasets.Dataset.from_parquet(shard)
assert isinstance(ds[0]["people"], list) and ds[0]["image"].size[0] > 0
print(f"from_parquet: {len(ds)} rows, features {sorted(ds.features)[:3]}...")
"""


def build(store: Path) -> Path:
    cli = [str(Path(sys.executable).with_name("focus-pipeline")), "--store", str(store)]
    steps = [
        ["convert", str(SAMPLE / "test_mpii.json"), "--name", "mpii5"],
        ["describe", "--annotations", "mpii5", "--backend", "rules", "--name", "mpii5"],
        ["build-dataset", "--annotations", "mpii5", "--descriptions", "mpii5", "--images", str(SAMPLE)],
    ]
    for step in steps:
        subprocess.run([*cli, *step], check=True, capture_output=True, text=True, cwd=ROOT)
    return store / "datasets" / "mpii5"


def venv_for(version: str, cache: Path) -> Path:
    env = cache / f"datasets-{version}"
    python = env / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"datasets=={version}", "pillow"],
            check=True,
            capture_output=True,
        )
    return python


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="+", default=["3.6.0"])
    default_cache = Path(os.environ.get("FOCUS_CACHE", Path.home() / ".cache" / "focus-pipeline"))
    ap.add_argument("--cache", type=Path, default=default_cache / "compat-venvs")
    args = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp) / "store")
        print(f"built {folder.relative_to(tmp)} with datasets from this venv")
        for version in args.versions:
            python = venv_for(version, args.cache)
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(Path(tmp) / f"hf-{version}")}
            res = subprocess.run(
                [str(python), "-c", PROBE, str(folder)], capture_output=True, text=True, env=env
            )
            lines = res.stdout.strip().splitlines() or ["(no output)"]
            if res.returncode:
                failed += 1
                lines.append("FAILED: " + (res.stderr.strip().splitlines() or ["?"])[-1])
            for line in lines:
                print(f"datasets {version}: {line}")
    print(f"{len(args.versions) - failed} of {len(args.versions)} versions read the shards")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
