"""Zero-shot eval throughput: our batched DataLoader path against a straightforward per-image loop like the
paper's eval.py (open, preprocess, encode one image, softmax, .tolist()), same model, same images, same
class text embeddings. Prints images/s for both and the ratio; checks that both predict the same classes.

    .venv/bin/python benchmarks/eval_throughput.py                       # focus-tiny, 128 images, CPU
    .venv/bin/python benchmarks/eval_throughput.py --arch ViT-B-16 --images 2048 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.data import EvalDataset
from evaluation.readers import READERS, ReaderInput
from evaluation.scoring import Model, class_weights, score
from pipeline.devices import torch_device
from training.inference import load_model

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def make_images(root: Path, n: int, size: int, seed: int = 0) -> None:
    """n random JPEGs in the FER2013 image-folder layout (<root>/test/<class>/i.jpg)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / "test" / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


@torch.inference_mode()
def per_image_loop(m: Model, paths: list[str], weights: torch.Tensor) -> np.ndarray:
    """The paper's eval.py: one image per forward pass, probabilities converted to Python lists."""
    predictions = []
    for path in paths:
        image = m.preprocess(Image.open(path).convert("RGB")).to(m.device).unsqueeze(0)
        features = F.normalize(m.model.encode_image(image), dim=1).cpu()
        probs = (features @ weights.cpu().T).softmax(dim=1)
        predictions.append(probs[0].tolist())
    return np.asarray(predictions).argmax(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="focus-tiny")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument(
        "--size", type=int, default=200, help="side of the generated JPEGs (UTKFace chips: 200)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = torch_device(args.device)
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_model(arch=args.arch, device=device)
    m = Model(model, preprocess, tokenizer, device, args.arch, "random-init")
    weights = class_weights(m, list(CLASSES), ("a photo of a {c} looking face",))
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), args.images, args.size)
        samples = READERS["fer2013"](ReaderInput(root=Path(tmp), split="test")).samples
        paths = [str(s.source) for s in samples]
        per_image_loop(m, paths[:8], weights)  # warm-up (allocator, kernels) for both paths
        dataset = EvalDataset(samples, preprocess)
        score(m, EvalDataset(samples[:8], preprocess), weights, batch_size=8, workers=0)

        start = time.perf_counter()
        baseline = per_image_loop(m, paths, weights)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_loop = time.perf_counter() - start

        start = time.perf_counter()
        scores, loaded, failures = score(
            m, dataset, weights, batch_size=args.batch_size, workers=args.workers
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_ours = time.perf_counter() - start

    assert loaded.all() and not failures
    agree = float((scores.argmax(axis=1) == baseline).mean())
    loop_rate, ours_rate = len(paths) / t_loop, len(paths) / t_ours
    print(
        f"device={device} arch={args.arch} images={len(paths)} size={args.size} batch={args.batch_size} "
        f"workers={args.workers} threads={torch.get_num_threads()}"
    )
    print(f"per-image loop (paper's eval.py style): {loop_rate:8.1f} images/s")
    print(f"batched DataLoader (evaluation.scoring):  {ours_rate:8.1f} images/s")
    print(f"top-1 agreement between the two: {100 * agree:.1f}%")
    print(f"ratio (ours / per-image loop): {ours_rate / loop_rate:.2f}x")
    if args.json:
        report = {
            "device": str(device),
            "arch": args.arch,
            "images": len(paths),
            "batch": args.batch_size,
            "workers": args.workers,
            "per_image_loop_images_per_s": loop_rate,
            "batched_images_per_s": ours_rate,
            "ratio": ours_rate / loop_rate,
            "top1_agreement": agree,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
