"""build-dataset throughput (images/s) and peak memory (RSS) at 1k vs 4k images.

    .venv/bin/python benchmarks/build_dataset.py           # anchor + 1,000 and 4,000 images (~1-2 min)
    .venv/bin/python benchmarks/build_dataset.py --sizes 2000 8000 --workers 4 --compare-executors

Synthetic 640x480 JPEGs (smooth gradients and shapes, ~30 KB like real photos, not noise) with 1-3 random
people each and one ~90-word description, written once to a scratch folder and reused.

Throughput: a build without a pool is the anchor; each size is then built with the worker pool, each in a
fresh subprocess (optionally also with the other pool kind): images/s and the ratio to the anchor.
Memory: each of those subprocesses reports its peak RSS during the build and its largest worker's peak.
The writer holds at most a window of in-flight images and one row group per split, so the peaks must stay
flat while the bytes written (printed beside them) grow with the count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.artifacts import annotations, descriptions  # noqa: E402
from pipeline.build_dataset import BuildConfig, build_dataset  # noqa: E402
from pipeline.records import ImageAnnotation, Person  # noqa: E402
from pipeline.store import Store  # noqa: E402

W, H = 640, 480
WORDS = [
    "the", "person", "stands", "with", "left", "arm", "raised", "above", "head", "while", "right", "leg",
    "is", "bent", "at", "knee", "and", "torso", "leans", "slightly", "forward", "toward", "ball",
]  # fmt: skip


UNIQUE = (
    256  # distinct drawings; further files are hard links to them (decode cost does not depend on content)
)


def make_images(folder: Path, n: int) -> None:
    """n synthetic JPEGs (kept between runs: only the missing ones are made)."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, W, dtype=np.float32)[None, :, None]
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        if path.exists():
            continue
        if i >= UNIQUE:
            os.link(folder / f"{i % UNIQUE:06d}.jpg", path)
            continue
        rng = np.random.default_rng(i)
        base = (ramp * rng.uniform(0.3, 1.0, 3) + np.linspace(0, 60, H)[:, None, None]).clip(0, 255)
        img = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.integers(0, W - 80), rng.integers(0, H - 80)
            draw.ellipse(
                (x, y, x + rng.integers(20, 160), y + rng.integers(20, 160)),
                fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
            )
        img.save(path, quality=90)


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its peak since start or the last reset (VmHWM), in MiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0), so the peak is the build's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_store(root: Path, images: Path, n: int) -> Store:
    store = Store(root)
    rng = np.random.default_rng(0)
    rows, descs = [], []
    for i in range(n):
        people = []
        for _ in range(rng.integers(1, 4)):
            kps = np.column_stack([rng.uniform(0, W, 16), rng.uniform(0, H, 16), rng.integers(1, 3, 16)])
            people.append(Person(keypoints=kps.astype(np.float32), center=(W / 2, H / 2), scale=1.5))
        name = f"{i:06d}.jpg"
        rows.append(
            ImageAnnotation(
                name,
                split="train" if i % 10 else "val",
                activity=f"activity {i % 40}",
                category=f"category {i % 7}",
                activity_id=i % 40,
                people=people,
            )
        )
        descs.append(
            {
                "image": name,
                "source": "bench",
                "sample": 0,
                "description": " ".join(rng.choice(WORDS, 90)),
                "status": "ok",
                "model": "bench",
                "template": "paper",
                "template_hash": "0",
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "latency_s": 0.0,
                "attempts": 1,
                "cache_key": name,
            }
        )
    with store.create("annotations", "bench", stage="convert", config={}) as w:
        annotations.write(w.dir / annotations.FILE, rows)
    with store.create("descriptions", "bench", stage="describe", config={}) as w:
        pq.write_table(pa.Table.from_pylist(descs, schema=descriptions.SCHEMA), w.dir / descriptions.FILE)
    return store


def timed_build(store: Store, images: Path, name: str, workers: int, executor: str) -> float:
    cfg = BuildConfig(
        annotations="bench",
        descriptions=["bench"],
        images=images,
        name=name,
        workers=workers,
        executor=executor,
    )  # type: ignore[arg-type]
    t0 = time.perf_counter()
    summary = build_dataset(cfg, store)
    elapsed = time.perf_counter() - t0
    assert summary["images"] == store.meta("annotations", "bench")["counts"].get("images", summary["images"])
    return elapsed


def child(args: argparse.Namespace) -> None:
    """One build of --child images in a fresh process, so that memory peaks do not carry over."""
    from pipeline.build_dataset.card import token_counter

    store = make_store(
        Path(args.scratch) / f"child-{args.child}-{args.executor}", Path(args.image_dir), args.child
    )
    token_counter()  # loaded before the build anyway; part of the baseline, like the imports
    baseline = rss_mib()
    reset = reset_peak()
    seconds = timed_build(store, Path(args.image_dir), "mem", args.workers, args.executor)
    data = store.path("datasets", "mem") / "data"
    print(
        json.dumps(
            {
                "seconds": seconds,
                "baseline_mib": baseline,
                "peak_mib": rss_mib("VmHWM")
                if reset
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "dataset_mib": sum(f.stat().st_size for f in data.glob("*.parquet")) / 2**20,
            }
        )
    )


def run_child(n: int, executor: str, workers: int, images: Path, scratch: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--image-dir", str(images), "--scratch", str(scratch)]
    cmd += ["--workers", str(workers), "--executor", executor]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], help="the two dataset sizes (images)")
    p.add_argument("--anchor-images", type=int, default=500, help="images for the anchor build (no pool)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--executor", default="process", choices=["process", "thread"], help="pool for the sized runs"
    )
    p.add_argument(
        "--compare-executors", action="store_true", help="also build the first size with the other pool"
    )
    p.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "focus-bench-build-dataset"))
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--image-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("FOCUS_PROGRESS", "0")
    if args.child:
        return child(args)

    scratch = Path(args.scratch)
    images = scratch / "images"
    a, b = args.sizes
    t0 = time.perf_counter()
    make_images(images, max(args.anchor_images, a, b))
    n_images = max(args.anchor_images, a, b)
    print(f"{n_images} synthetic {W}x{H} JPEGs in {images} ({time.perf_counter() - t0:.0f} s)")
    run = scratch / f"run-{os.getpid()}"
    try:
        anchor = args.anchor_images / run_child(args.anchor_images, "process", 0, images, run)["seconds"]
        print(
            f"throughput on {os.cpu_count()} CPUs (whole stage: decode, heatmap, encode, write, fingerprint):"
        )
        print(f"  anchor: no pool, {args.anchor_images} images       {anchor:7.1f} images/s")
        runs = {n: run_child(n, args.executor, args.workers, images, run) for n in (a, b)}
        for n, r in runs.items():
            print(
                f"  {args.executor} pool x{args.workers}, {n} images  {n / r['seconds']:7.1f} images/s   "
                f"{n / r['seconds'] / anchor:.2f}x the anchor"
            )
        if args.compare_executors:
            other = "thread" if args.executor == "process" else "process"
            r = run_child(a, other, args.workers, images, run)
            print(
                f"  {other} pool x{args.workers}, {a} images  {a / r['seconds']:7.1f} images/s   "
                f"{a / r['seconds'] / anchor:.2f}x the anchor"
            )
        print(
            f"peak RSS of the main process ({args.executor} pool x{args.workers}, one fresh process per size;"
        )
        print("baseline = after the imports and the CLIP tokenizer, peak = highest RSS during the build):")
        for n, r in runs.items():
            print(
                f"  {n:6d} images: baseline {r['baseline_mib']:6.1f} MiB, peak {r['peak_mib']:6.1f} MiB, "
                f"largest worker {r['worker_mib']:6.1f} MiB; written {r['dataset_mib']:6.1f} MiB"
            )
        ra, rb = runs[a], runs[b]
        written = rb["dataset_mib"] / ra["dataset_mib"]
        peak, grew = rb["peak_mib"] / ra["peak_mib"], rb["peak_mib"] - ra["peak_mib"]
        print(
            f"  {b} vs {a} images: {b / a:.1f}x the rows, {written:.2f}x the bytes written, "
            f"{peak:.2f}x the peak RSS ({grew:+.1f} MiB), "
            f"{rb['worker_mib'] / ra['worker_mib']:.2f}x the worker peak"
        )
    finally:
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
