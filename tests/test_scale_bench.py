"""benchmarks/scale.py at a tiny size: every stage runs through the real CLI, and its table and JSON hold
every stage with figures that are positive and agree with each other. Train runs with 2 processes only
(torchrun: the per-rank peaks, and the cache one rank decodes while the other waits); 1 process is the same
command without torchrun, so it is left out to keep the test short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINEAR = ["generate", "convert", "describe (rules)", "build-dataset"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 40 s of CPU in 9 processes: minutes when the machine is shared
def test_scale_rehearsal_measures_every_stage(tmp_path):
    work, record_path = tmp_path / "work", tmp_path / "scale.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--images", "60", "--steps", "2",
           "--batch-size", "8", "--processes", "2", "--eval-limit", "30", "--store", str(work),
           "--json", str(record_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOCUS_PROGRESS": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not work.exists()  # removed without --keep
    record = json.loads(record_path.read_text())

    trains = ["train cache 2p", "train stream 2p"]
    stages = {s["name"]: s for s in record["stages"]}
    assert list(stages) == [*LINEAR, *trains, "eval"]
    for name in stages:  # the printed table has a row per stage
        assert f"\n| {name} | " in proc.stdout
    for s in stages.values():
        assert s["wall_s"] > 0 and s["items"] > 0 and s["peak_mb"] > 10, s
        assert s["sum_peaks_mb"] >= s["peak_mb"] and len(s["processes"]) >= 1
        assert 0 <= s["linear_s"] <= s["wall_s"] and 0 <= s["linear_disk_mb"] <= s["disk_mb"]
    for name in LINEAR:
        assert stages[name]["items"] == 60 and stages[name]["disk_mb"] > 0
        assert stages[name]["linear_s"] == stages[name]["wall_s"]
    assert stages["build-dataset"]["disk_mb"] > stages["describe (rules)"]["disk_mb"]  # images + heatmaps

    for name in trains:
        s = stages[name]
        assert s["items"] == 2 * 8 * 2 and s["extra"]["summary"]["steps"] == 2
        assert s["extra"]["summary"]["data"] == name.split()[1]
        assert len(s["extra"]["ranks_peak_mb"]) == 2 and min(s["extra"]["ranks_peak_mb"]) > 100
        assert len(s["processes"]) >= 3  # torchrun and its two ranks (and stream's DataLoader workers)
        assert s["disk_mb"] > 0  # the run's model and checkpoint
    # the cache run decodes the cache: time and disk that grow with N
    cache = stages["train cache 2p"]
    assert cache["extra"]["built_cache"] and cache["linear_disk_mb"] > 0 and cache["linear_s"] > 0
    assert stages["eval"]["items"] == 30 and "acc@3" in stages["eval"]["note"]

    # extrapolation: proportional to N for what grows with N, as measured for the rest
    rows = {r["stage"]: r["at"] for r in record["extrapolation"]}
    assert list(rows) == list(stages)
    for name, at in rows.items():
        s, one, ten = stages[name], at["1000000"], at["10000000"]
        fixed_s, fixed_mb = s["wall_s"] - s["linear_s"], s["disk_mb"] - s["linear_disk_mb"]
        assert one["wall_s"] == pytest.approx(fixed_s + s["linear_s"] * 1e6 / 60)
        assert ten["disk_mb"] == pytest.approx(fixed_mb + s["linear_disk_mb"] * 1e7 / 60)
    assert rows["eval"]["10000000"]["wall_s"] == pytest.approx(stages["eval"]["wall_s"])
    assert "### Extrapolation" in proc.stdout and "| total |" in proc.stdout
