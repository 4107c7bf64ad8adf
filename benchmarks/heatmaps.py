"""ROI heatmaps per second at 224x224 on CPU: ours (vectorised NumPy, batched torch) vs a per-person loop.

    .venv/bin/python benchmarks/heatmaps.py                     # 500 images of the real valid.h5 (~30 s)
    .venv/bin/python benchmarks/heatmaps.py --images 2000 --batch 128 --threads 2 --parts

The anchor is the straightforward implementation of the paper's reference: for every person, a full
H x W meshgrid Gaussian (exp over every pixel), summed and clipped. Both render the same maps (checked).
People come from the real hourglass valid.h5 (1-4 people per image) when ../shared/data is present,
else from random poses.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.heatmaps import MIN_SIGMA_FRAC, pad_people, roi_heatmap, roi_heatmap_torch  # noqa: E402
from pipeline.records import known  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii" / "hourglass_annot" / "valid.h5"


def reference_heatmap(
    kps: np.ndarray, image_size: tuple[float, float], out_size: tuple[int, int]
) -> np.ndarray:
    """Per-person loop, one full-grid 2-D Gaussian each (the way the reference code renders them)."""
    w_img, h_img = image_size
    w_out, h_out = out_size
    xs, ys = np.meshgrid(np.arange(w_out) + 0.5, np.arange(h_out) + 0.5)
    hm = np.zeros((h_out, w_out), dtype=np.float32)
    min_sigma = MIN_SIGMA_FRAC * max(w_out, h_out)
    for person in kps:
        mask = known(person)
        if not mask.any():
            continue
        x = person[mask, 0] * w_out / w_img
        y = person[mask, 1] * h_out / h_img
        cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
        sx = max((x.max() - x.min()) / 2, min_sigma)
        sy = max((y.max() - y.min()) / 2, min_sigma)
        hm += np.exp(-((xs - cx) ** 2 / (2 * sx**2) + (ys - cy) ** 2 / (2 * sy**2))).astype(np.float32)
    return np.clip(hm, 0.0, 1.0)


def load_people(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    if SHARED.is_file():
        from pipeline.sources.formats import read_source

        anns = list(read_source(SHARED).images.values())[:n]
        kps = [a.keypoints for a in anns]
        # valid.h5 has no image sizes; MPII frames are mostly 1280x720.
        sizes = np.array([[1280.0, 720.0]] * len(kps), dtype=np.float32)
        return kps, sizes
    rng = np.random.default_rng(seed)
    kps = []
    for _ in range(n):
        p = int(rng.integers(1, 5))
        k = np.zeros((p, 16, 3), np.float32)
        k[..., 0] = rng.uniform(0, 1280, (p, 16))
        k[..., 1] = rng.uniform(0, 720, (p, 16))
        k[..., 2] = rng.choice([0, 1, 2], (p, 16), p=[0.2, 0.3, 0.5])
        kps.append(k)
    return kps, np.array([[1280.0, 720.0]] * n, dtype=np.float32)


def rate(fn, n: int, repeats: int) -> float:
    """Best of `repeats` runs, as images per second (the shared machine is noisy)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--size", type=int, default=224, help="output side in pixels (default 224)")
    ap.add_argument("--batch", type=int, default=64, help="torch batch size (default 64)")
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method, best kept (default 3)")
    ap.add_argument("--parts", action="store_true", help="also time the body-part variant")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = (args.size, args.size)
    kps, sizes = load_people(args.images, args.seed)
    n = len(kps)
    print(f"{n} images, {sum(len(k) for k in kps)} people, {out[0]}x{out[1]}, CPU, {args.threads} thread(s)")

    # Same maps, so the comparison is fair.
    for k, s in zip(kps[:20], sizes[:20], strict=True):
        np.testing.assert_allclose(
            roi_heatmap(k, tuple(s), out), reference_heatmap(k, tuple(s), out), atol=1e-4
        )

    ref = rate(
        lambda: [reference_heatmap(k, tuple(s), out) for k, s in zip(kps, sizes, strict=True)],
        n,
        args.repeats,
    )
    ours = rate(
        lambda: [roi_heatmap(k, tuple(s), out) for k, s in zip(kps, sizes, strict=True)], n, args.repeats
    )
    padded = torch.from_numpy(pad_people(kps))
    tsizes = torch.from_numpy(sizes)

    def torch_batched(parts: bool = False) -> None:
        with torch.no_grad():
            for i in range(0, n, args.batch):
                roi_heatmap_torch(padded[i : i + args.batch], tsizes[i : i + args.batch], out, parts=parts)

    batched = rate(torch_batched, n, args.repeats)
    print(f"reference per-person loop (anchor): {ref:10.0f} heatmaps/s")
    print(f"ours, NumPy vectorised            : {ours:10.0f} heatmaps/s   ratio {ours / ref:5.1f}x")
    label = f"ours, torch batched (B={args.batch})"
    print(f"{label:<34}: {batched:10.0f} heatmaps/s   ratio {batched / ref:5.1f}x")
    if args.parts:
        parts_np = rate(
            lambda: [roi_heatmap(k, tuple(s), out, parts=True) for k, s in zip(kps, sizes, strict=True)],
            n,
            args.repeats,
        )
        parts_t = rate(lambda: torch_batched(parts=True), n, args.repeats)
        print(
            f"body-part variant, NumPy          : {parts_np:10.0f} heatmaps/s   ratio {parts_np / ref:5.1f}x"
        )
        print(f"body-part variant, torch batched  : {parts_t:10.0f} heatmaps/s   ratio {parts_t / ref:5.1f}x")


if __name__ == "__main__":
    main()
