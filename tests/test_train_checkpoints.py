"""Checkpoints a user can trust after a failure, through the CLI: finite weights only, checksums verified,
--resume applies a changed --lr (and refuses a changed --batch-size), a batch size that cannot learn
is refused."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store import Store
from pipeline.synthetic.dataset import write_synthetic_dataset
from training import data as train_data
from training.inference import load_model
from training.optim import lr_factor

torch.set_num_threads(2)

TINY = [
    "--dataset", "synth", "--model-type", "clip", "--arch", "focus-tiny", "--image-size", "32",
    "--batch-size", "8", "--log-every", "1", "--device", "cpu", "--threads", "2", "--warmup", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("ckpt") / "store")
    write_synthetic_dataset(s, "synth", n_train=32, size=(48, 40), seed=0)
    return s


def train_cli(store: Store, *args: str):
    return CliRunner().invoke(app, ["--store", str(store.root), "train", *TINY, *args])


def error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_lr_inf_stops_without_saving_non_finite_weights(store):
    """Before: the run named a "last good checkpoint" in which 62 of 63 tensors were non-finite."""
    res = train_cli(store, "--lr", "inf", "--max-steps", "4", "--checkpoint-every", "1", "--name", "inf")
    assert res.exit_code == 2, res.output
    line = error_line(res.output)
    assert "weights are not finite after step 1" in line and "no checkpoint was saved yet" in line
    assert not (store.staging_dir("runs", "inf") / "checkpoints" / "last.pt").exists()
    assert not store.exists("runs", "inf")


def test_batch_size_one_is_refused(store):
    """Before: --batch-size 1 published a run whose loss was nan from the first step to the last."""
    res = train_cli(store, "--batch-size", "1", "--max-steps", "2", "--name", "b1")
    assert res.exit_code == 2
    assert "--batch-size 1 x 1 process(es): a contrastive loss needs at least 2 pairs" in error_line(
        res.output
    )
    assert not store.exists("runs", "b1") and not store.staging_dir("runs", "b1").exists()


def test_resume_verifies_the_checkpoint_and_applies_a_lower_lr(store, monkeypatch):
    real_get = train_data.BatchLoader.get

    def crash_at_step_3(self, epoch, step):
        if epoch * self.steps_per_epoch + step == 2:
            raise RuntimeError("simulated crash")
        return real_get(self, epoch, step)

    common = ["--max-steps", "4", "--checkpoint-every", "2", "--name", "r"]
    monkeypatch.setattr(train_data.BatchLoader, "get", crash_at_step_3)
    res = train_cli(store, "--lr", "2e-3", *common)
    assert res.exit_code == 2 and "simulated crash" in error_line(res.output)
    monkeypatch.undo()
    ckpt = store.staging_dir("runs", "r") / "checkpoints" / "last.pt"
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 2

    # A changed batch size would change the data order: refused, not silently accepted.
    res = train_cli(store, "--lr", "2e-3", "--resume", *common, "--batch-size", "4")
    assert res.exit_code == 2 and "--resume cannot change batch_size 8 -> 4" in error_line(res.output)

    # 4 KB overwritten inside the tensor data: before, this loaded without a word.
    good = ckpt.read_bytes()
    middle = len(good) // 2
    ckpt.write_bytes(good[:middle] + b"\xff" * 4096 + good[middle + 4096 :])
    res = train_cli(store, "--lr", "2e-3", "--resume", *common)
    assert res.exit_code == 2
    line = error_line(res.output)
    assert f"{ckpt}: corrupt (sha256" in line and "--overwrite" in line
    ckpt.write_bytes(good)

    # The documented recovery: a lower --lr and --resume. Before, the schedule kept the old lr.
    res = train_cli(store, "--lr", "5e-4", "--resume", *common)
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in (store.path("runs", "r") / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        base = 2e-3 if r["step"] <= 2 else 5e-4
        expected = base * lr_factor(r["step"] - 1, total=4, warmup=0, schedule="cosine")
        assert r["lr"] == pytest.approx(expected, rel=1e-6), r
    meta = store.meta("runs", "r")
    assert meta["config"]["lr"] == 5e-4
    assert meta["summary"]["resumes"] == [{"step": 2, "changed": {"lr": {"from": 2e-3, "to": 5e-4}}}]

    # --resume of the finished run trains it further (before: "already exists", and --overwrite lost it)
    further = ["--lr", "5e-4", "--resume", "--checkpoint-every", "2", "--name", "r"]
    res = train_cli(store, *further, "--max-steps", "4")
    assert res.exit_code == 2 and "runs/r already trained its 4 steps" in error_line(res.output)
    res = train_cli(store, *further, "--max-steps", "6")
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in (store.path("runs", "r") / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    meta = store.meta("runs", "r")
    assert meta["counts"]["steps"] == 6 and meta["summary"]["resumes"][-1]["step"] == 4

    # The published model.pt is verified against the checksum in meta.json when it is loaded.
    run = store.path("runs", "r")
    load_model(run_dir=run)
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[:1000] + b"\0" * 4096 + data[5096:])
    with pytest.raises(Exception, match=r"model\.pt: corrupt \(sha256"):
        load_model(run_dir=run)
