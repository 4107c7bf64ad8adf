"""benchmarks/gpu_check.sh --dry-run: the GPU kit runs end to end on a CPU at tiny sizes and gathers every
step's figures into one JSON and one markdown table (the figures of a dry run mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["cuda_tests", "paper_step", "train_throughput", "eval_throughput", "stream_throughput"]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_one_json_and_one_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in report["steps"]] == STEPS and all(s["rc"] == 0 for s in report["steps"])
    assert report["cuda_tests"]["failures"] == report["cuda_tests"]["errors"] == 0
    assert [r["precision"] for r in report["paper_step"]["results"]] == ["fp32", "bf16"]
    assert report["train_throughput"]["samples_per_s_best_mean"]["ours focusclip"] > 0
    assert report["eval_throughput"]["top1_agreement"] == 1.0
    assert set(report["stream_throughput"]["samples_per_s"]) == {
        "cache",
        "stream",
        "open_clip_train webdataset",
    }
    table = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {step} | 0 |" in table for step in STEPS)
