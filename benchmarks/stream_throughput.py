"""The training data paths' throughput on the same images: streaming mode (training/stream.py) against the
decoded cache (training/data.py) and against open_clip_train's webdataset loader (the anchors, measured in
the same run). Loaders only, no model: samples/s of model-ready batches on the device.

    .venv/bin/python benchmarks/stream_throughput.py                   # CPU: 1,024 images, 2 workers
    .venv/bin/python benchmarks/stream_throughput.py --device cuda --images 16384 --batch-size 256 \
        --workers 8 --steps 48                                          # a GPU host

One synthetic dataset (pipeline.synthetic.dataset, JPEGs of --size) is written once as a datasets/ artifact
and, with the very same JPEG bytes and first descriptions, as webdataset tar shards. Each loader makes what
its trainer feeds the model at --image-size: ours the FocusCLIP batch (a random 80-100% crop of the squashed
image, its ROI heatmap drawn from the cropped keypoints, sentence-sampled tokens; the cache mode's crop and
heatmap are made on the device, so on a CPU they run in the main process), open_clip_train's its
`get_wds_dataset` batches (RandomResizedCrop 90-100%, ToTensor, normalisation, tokens; shard and sample
shuffle buffers). Timed: --steps batches after --warmup (worker start-up and the first shuffle buffers left
out); repeats are interleaved and the best of each is kept. The cache's one-time decode is reported
apart. Prints samples/s and the ratios stream / cache (goal >= 0.8 with 2 workers) and stream /
open_clip_train (goal >= 1.0).
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import open_clip
import pyarrow.parquet as pq
import torch
from webdataset.tariterators import tar_file_expander

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.store import Store  # noqa: E402
from pipeline.synthetic.dataset import write_synthetic_dataset  # noqa: E402
from training import data as train_data  # noqa: E402
from training import views as train_views  # noqa: E402
from training.stream import StreamLoader, StreamOptions, StreamSource  # noqa: E402

ARCH = "ViT-B-16"  # its tokenizer and open_clip's default preprocessing; no model is built
CACHE_SCALE = 1.125  # the modern recipe's


def write_tars(store: Store, dataset: str, out: Path, per_shard: int) -> str:
    """The dataset's train rows as webdataset shards (key.jpg: the same bytes, key.txt: the description)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for shard in sorted((store.path("datasets", dataset) / "data").glob("train-*.parquet")):
        rows += pq.read_table(shard, columns=["image", "image_id", "description"]).to_pylist()
    n_shards = (len(rows) + per_shard - 1) // per_shard
    for s in range(n_shards):
        with tarfile.open(out / f"{s:05d}.tar", "w") as tar:
            for i, row in enumerate(rows[s * per_shard : (s + 1) * per_shard]):
                key = f"{s:05d}{i:05d}"
                for ext, payload in (("jpg", row["image"]["bytes"]), ("txt", row["description"].encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return str(out / f"{{00000..{n_shards - 1:05d}}}.tar")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(batches, device: torch.device, warmup: int, steps: int, size_of) -> float:
    """Samples/s over `steps` batches after `warmup` from the iterator `batches`."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    _sync(device)
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        n += size_of(next(it))
    _sync(device)
    return n / (time.perf_counter() - t0)


def views(args, side: int, device: torch.device) -> train_views.BatchViews:
    return train_views.BatchViews(
        image_size=args.image_size,
        side=side,
        device=device,
        seed=0,
        rank=0,
        skeleton=train_data.MPII,
        crop_scale=(0.8, 1.0),
        hflip=False,
        focus=True,
        heatmap_parts=False,
        uniform_heatmap=False,
        stored_heatmaps=False,
        channels_last=False,
        masked_view="shared",
    )


def run_cache(args, store: Store, tokenizer, device: torch.device) -> float:
    data = train_data.load_train_data(
        store,
        "bench",
        split="train",
        image_size=args.image_size,
        cache_scale=CACHE_SCALE,
        tokenizer=tokenizer,
        context_length=77,
    )
    loader = train_data.BatchLoader(
        data, batch_size=args.batch_size, image_size=args.image_size, device=device, seed=0
    )
    spe = loader.steps_per_epoch
    batches = (loader.get(k // spe, k % spe) for k in range(10**9))
    return timed(batches, device, args.warmup, args.steps, lambda b: b.images.shape[0])


def run_stream(args, store: Store, tokenizer, device: torch.device) -> float:
    side = int(round(args.image_size * CACHE_SCALE))
    source = StreamSource.open(str(store.path("datasets", "bench")), "train", with_heatmaps=False)
    opts = StreamOptions(
        batch_size=args.batch_size,
        world=1,
        rank=0,
        seed=0,
        workers=args.workers,
        side=side,
        interpolation="bicubic",
        with_heatmaps=False,
    )
    loader = StreamLoader(
        source,
        views(args, side, device),
        opts,
        skeleton=train_data.MPII,
        tokenizer=tokenizer,
        context_length=77,
    )
    spe = loader.steps_per_epoch
    batches = (loader.get(k // spe, k % spe) for k in range(10**9))
    return timed(batches, device, args.warmup, args.steps, lambda b: b.images.shape[0])


def per_sample_costs(args, store: Store, tokenizer) -> tuple[float, float]:
    """(ms of one core per sample to read and decode a stream batch, ms to make its views on the CPU), timed
    in this process over 4 batches: what the stream's workers and the views cost without contention."""
    side = int(round(args.image_size * CACHE_SCALE))
    source = StreamSource.open(str(store.path("datasets", "bench")), "train", with_heatmaps=False)
    opts = StreamOptions(
        batch_size=args.batch_size,
        world=1,
        rank=0,
        seed=0,
        workers=0,
        side=side,
        interpolation="bicubic",
        with_heatmaps=False,
    )
    cpu = torch.device("cpu")
    loader = StreamLoader(
        source, views(args, side, cpu), opts, skeleton=train_data.MPII, tokenizer=tokenizer, context_length=77
    )
    it = loader.host_batches(0)
    next(it)  # the first block's row groups are read here
    t0 = time.perf_counter()
    hosts = [next(it) for _ in range(min(4, loader.steps_per_epoch - 1))]
    decode = (time.perf_counter() - t0) / (len(hosts) * args.batch_size)
    t0 = time.perf_counter()
    for step, host, _ in hosts:
        loader.views.make(host, 0, step)
    made = (time.perf_counter() - t0) / (len(hosts) * args.batch_size)
    return 1000 * decode, 1000 * made


def run_webdataset(args, shards: str, tokenizer, device: torch.device) -> float:
    import open_clip_train.data as oc_data  # the anchor; a heavy import, only when measured

    # open_clip_train 3.3's tar reader fails on the end-of-shard marker webdataset >= 0.2.96 yields
    # (KeyError 'fname': open_clip issue #935, webdataset issue #384); the fix given there is eof_value=None.
    oc_data.tar_file_expander = functools.partial(tar_file_expander, eof_value=None)
    preprocess = open_clip.image_transform(args.image_size, is_train=True)
    oc_args = SimpleNamespace(
        train_data=shards,
        dataset_resampled=False,
        train_num_samples=args.images,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=args.batch_size,
        world_size=1,
        workers=args.workers,
    )
    info = oc_data.get_wds_dataset(oc_args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)

    def batches():
        while True:  # epochs, as open_clip_train's loop sets them
            for images, texts in info.dataloader:
                yield images.to(device, non_blocking=True), texts.to(device, non_blocking=True)
            info.set_epoch(info.shared_epoch.get_value() + 1)

    return timed(batches(), device, args.warmup, args.steps, lambda b: b[0].shape[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"), help="JPEG size")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (stream and webdataset)")
    ap.add_argument("--steps", type=int, default=12, help="timed batches per loader")
    ap.add_argument("--warmup", type=int, default=3, help="batches left out of the timing")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process (CPU)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("FOCUS_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tokenizer = open_clip.get_tokenizer(ARCH)
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        store = Store(Path(tmp) / "store")
        t0 = time.perf_counter()
        shards = max(1, args.images // 256)
        write_synthetic_dataset(
            store, "bench", n_train=args.images, size=tuple(args.size), seed=0, shards=shards
        )
        wds = write_tars(
            store, "bench", Path(tmp) / "wds", per_shard=max(1, args.images // (4 * args.workers))
        )
        print(
            f"data: {args.images} JPEGs of {args.size[0]}x{args.size[1]} in {time.perf_counter() - t0:.1f}s"
        )
        t0 = time.perf_counter()
        run_cache(SimpleNamespace(**{**vars(args), "steps": 1, "warmup": 0}), store, tokenizer, device)
        cache_build_s = time.perf_counter() - t0
        print(f"cache mode: decoding the cache once took {cache_build_s:.1f}s")
        decode_ms, views_ms = per_sample_costs(args, store, tokenizer)
        print(
            f"per sample, one core: stream read+decode {decode_ms:.2f} ms, "
            f"views (crop, heatmap) {views_ms:.2f} ms"
        )
        results: dict[str, list[float]] = {}
        for rep in range(args.repeats):  # interleaved: a busy phase of a shared machine hits all alike
            for name, run in (
                ("cache", lambda: run_cache(args, store, tokenizer, device)),
                ("stream", lambda: run_stream(args, store, tokenizer, device)),
                ("open_clip_train webdataset", lambda: run_webdataset(args, wds, tokenizer, device)),
            ):
                rate = run()
                gc.collect()  # its DataLoader's workers end here, not inside the next loader's forks
                results.setdefault(name, []).append(rate)
                print(f"[{rep}] {name:28s}: {rate:8.1f} samples/s", flush=True)
    best = {k: max(v) for k, v in results.items()}
    anchor = best["open_clip_train webdataset"]
    print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"device {device} | {args.images} images {args.size[0]}x{args.size[1]} -> {args.image_size}px | "
        f"batch {args.batch_size} | workers {args.workers} | main threads {args.threads} | "
        f"cpus {os.cpu_count()}"
    )
    print("samples/s (best of repeats): " + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))
    print(f"  ratio stream / cache           : {best['stream'] / best['cache']:.2f}x (goal >= 0.8)")
    print(f"  ratio stream / open_clip_train : {best['stream'] / anchor:.2f}x (goal >= 1.0)")
    if device.type == "cpu":  # stream workers do read + decode + views; the cache mode's main does views
        print(
            f"  one core's work per sample: stream {decode_ms + views_ms:.2f} ms, cache {views_ms:.2f} ms; "
            f"with {args.workers} workers on idle cores the stream is bounded by "
            f"{1000 * args.workers / (decode_ms + views_ms):.0f} samples/s (derived, not measured)"
        )
    if args.json:
        report = {
            "device": str(device),
            "images": args.images,
            "batch": args.batch_size,
            "workers": args.workers,
            "samples_per_s": best,
            "ratio_stream_vs_cache": best["stream"] / best["cache"],
            "ratio_stream_vs_open_clip_train": best["stream"] / anchor,
            "cache_build_s": cache_build_s,
            "ms_per_sample_read_decode": decode_ms,
            "ms_per_sample_views_cpu": views_ms,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
