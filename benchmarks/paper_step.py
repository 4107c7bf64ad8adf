"""One paper-recipe training step of the real FocusCLIP-ViT-B-16-BERT, measured, and the cost of the paper's
whole run extrapolated from it.

    .venv/bin/python benchmarks/paper_step.py --batch-size 4                       # CPU (random weights)
    .venv/bin/python benchmarks/paper_step.py --device cuda --batch-size 32 --precision fp32 bf16 \
        --json out.json                                                            # a GPU (peaks by name)

The step is the paper recipe's: image + masked image (2B views) through the ViT-B/16 tower, B captions of
512 tokens through BERT-base (mean over all positions), the three NT-Xent terms at T = 0.5, backward, grad
clip 1.0 and an SGD step. Weights are random (the cost does not depend on them) and the text tower is
built from BertConfig() (= bert-base-uncased's shape), so nothing is downloaded. FLOPs are counted once
with torch's FlopCounterMode over a whole step; the run's cost = FLOPs/step x steps (17,367 images / 32
per step x 64 epochs) / (peak x an assumed MFU), printed beside the measured step. MFU is against the
precision's dense peak: bf16 tensor cores for bf16, TF32 for fp32 (train() enables TF32 matmuls), looked up
by the device's name (PEAK_TFLOPS) unless --peak-tflops gives one number for both.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import open_clip
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.losses import focusclip_loss  # noqa: E402
from training.model import FocusCLIP  # noqa: E402
from training.towers import arch_config  # noqa: E402

ARCH = "FocusCLIP-ViT-B-16-BERT"
PAPER_IMAGES, PAPER_BATCH, PAPER_EPOCHS = 17_367, 32, 64
# Dense peaks (TFLOP/s) from the vendors' data sheets: bf16 tensor cores, and TF32 for fp32 matmuls.
PEAK_TFLOPS = {
    "H100": {"bf16": 989.0, "fp32": 494.5},
    "H200": {"bf16": 989.0, "fp32": 494.5},
    "A100": {"bf16": 312.0, "fp32": 156.0},
}


def device_peaks(device: torch.device, given: float | None) -> dict[str, float]:
    if given:
        return {"bf16": given, "fp32": given}
    if device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return {"bf16": 756.0, "fp32": 378.0}
    return next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), {})


def build(device: torch.device, *, tiny: bool = False) -> FocusCLIP:
    """The paper's model with random weights; tiny: ViT-Ti and a 2-layer BERT at the same input shapes (a
    check that the script runs, as benchmarks/gpu_check.sh --dry-run does; its figures mean nothing)."""
    from transformers import BertConfig

    folder = Path(tempfile.mkdtemp())
    bert = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    (bert if tiny else BertConfig()).save_pretrained(folder)  # bert-base-uncased's shape; no weights
    cfg = arch_config(ARCH)
    text_cfg = cfg["text_cfg"] | {"hf_model_name": str(folder), "hf_model_pretrained": False}
    vision_cfg = cfg["vision_cfg"] | ({"timm_model_name": "vit_tiny_patch16_224"} if tiny else {})
    clip = open_clip.create_model(ARCH, pretrained_text=False, text_cfg=text_cfg, vision_cfg=vision_cfg)
    return FocusCLIP(
        clip,
        focus=True,
        alpha_param="plain",
        temperature=0.5,
        learn_temperature=False,
        mean=(0,) * 3,
        std=(1,) * 3,
    ).to(device)


def step(model, opt, batch, dtype) -> None:
    images, heatmaps, tokens = batch
    with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(images, tokens, heatmaps)
    feats = {k: v.float() for k, v in out.items()}
    loss, _ = focusclip_loss(
        feats["image"], feats["text"], feats["masked"], feats["logit_scale"], kind="ntxent"
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=PAPER_BATCH)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--peak-tflops", type=float, default=None, help="one peak for MFU (default: by name)")
    ap.add_argument("--assumed-mfu", type=float, default=0.3, help="for the whole-run extrapolation")
    ap.add_argument("--extrapolate-peak-tflops", type=float, default=989.0, help="H100/H200 dense bf16")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument("--tiny", action="store_true", help="ViT-Ti + 2-layer BERT: checks the script only")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as train()
    torch.manual_seed(0)
    model = build(device, tiny=args.tiny)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=5e-4, momentum=0.9)
    b = args.batch_size
    batch = (
        torch.rand(b, 3, 224, 224, device=device),
        torch.rand(b, 224, 224, device=device),
        torch.randint(1000, 30000, (b, 512), device=device),  # full context: no padding id (0)
    )
    n_params = sum(p.numel() for p in model.parameters())
    peaks = device_peaks(device, args.peak_tflops)
    arch = f"{ARCH} (tiny towers)" if args.tiny else ARCH
    report = {"arch": arch, "device": _device_name(device), "batch": b, "params_m": n_params / 1e6}
    with FlopCounterMode(display=False) as counter:
        step(model, opt, batch, None)
    flops = counter.get_total_flops()
    print(
        f"{arch}: {n_params / 1e6:.1f}M parameters; {flops / 1e12:.3f} TFLOP per step at batch {b} (fwd+bwd)"
    )
    report.update(tflop_per_step=flops / 1e12, results=[])
    for precision in args.precision:
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step(model, opt, batch, dtype)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(model, opt, batch, dtype)
        sync(device)
        dt = (time.perf_counter() - t0) / args.steps
        if device.type == "cuda":
            mem_gib = torch.cuda.max_memory_allocated(device) / 2**30
            mem = f"peak GPU memory {mem_gib:.1f} GiB"
        else:
            mem_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            mem = f"peak RSS {mem_gib:.1f} GiB"
        peak = peaks.get(precision)
        mfu = flops / dt / (peak * 1e12) if peak else None
        mfu_text = f", MFU {mfu:.1%} of {peak:.0f} TFLOP/s" if mfu is not None else ""
        rate = f"{dt:.2f} s/step, {b / dt:.2f} samples/s, {flops / dt / 1e12:.2f} TFLOP/s"
        print(f"{precision}: {rate}{mfu_text}; {mem}")
        report["results"].append(
            {
                "precision": precision,
                "s_per_step": dt,
                "samples_per_s": b / dt,
                "tflops": flops / dt / 1e12,
                "peak_tflops": peak,
                "mfu": mfu,
                "peak_memory_gib": mem_gib,
            }
        )
    steps = PAPER_IMAGES // PAPER_BATCH * PAPER_EPOCHS
    total = flops * PAPER_BATCH / b * steps
    hours = total / (args.extrapolate_peak_tflops * 1e12 * args.assumed_mfu) / 3600
    per_step = flops * PAPER_BATCH / b / 1e12
    print(
        f"paper run: {steps} steps x {per_step:.2f} TFLOP = {total / 1e18:.2f} EFLOP -> "
        f"{hours:.2f} GPU hours at {args.assumed_mfu:.0%} MFU of {args.extrapolate_peak_tflops:.0f} TFLOP/s "
        "(an estimate, not a measurement)"
    )
    report["paper_run_gpu_hours_estimate"] = hours
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


if __name__ == "__main__":
    main()
