"""--data on real training runs: a streamed run reads an fsspec URL as it reads the store's folder (and
reports to TensorBoard); --data auto streams, and says so, when the decoded cache would not fit its disk (a
real 1 MB tmpfs as the cache disk, mounted in a private mount namespace)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.synthetic.dataset import write_synthetic_dataset
from training.cache import NodeCache
from training.stream import StreamLoader, choose_data_mode
from training.train import TrainConfig, train

TINY = {
    "arch": "focus-tiny",
    "image_size": 32,
    "batch_size": 8,
    "log_every": 1,
    "device": "cpu",
    "num_threads": 1,
    "max_steps": 3,
    "workers": 0,
}


@pytest.fixture(scope="module")
def store(module_tmp) -> Store:
    s = Store(module_tmp("data-mode") / "store")
    write_synthetic_dataset(s, "synth", n_train=32, size=(48, 40), seed=0)
    return s


def _losses(store: Store, name: str) -> list[float]:
    lines = (store.path("runs", name) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.slow
def test_a_streamed_run_reads_a_url_as_the_store_and_reports_to_tensorboard(store):
    local = train(TrainConfig(dataset="synth", name="local", data="stream", **TINY), store)
    url = f"file://{store.path('datasets', 'synth')}"
    remote = train(
        TrainConfig(dataset="synth", name="url", data_url=url, report_to=("tensorboard",), **TINY), store
    )
    assert local["data"] == remote["data"] == "stream" and remote["images"] == 32
    assert _losses(store, "url") == pytest.approx(_losses(store, "local"), abs=1e-6)
    events = EventAccumulator(str(store.path("runs", "url") / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert not list(store.cache_dir("train-cache").glob("synth/*"))  # streaming decoded no cache
    with pytest.raises(PipelineError, match="data_url is streamed"):
        TrainConfig(dataset="synth", data="cache", data_url=url).resolved()


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm (a private mount namespace)")
def test_auto_streams_and_says_so_when_the_cache_would_not_fit_its_disk(store, tmp_path, caplog):
    """The cache of 32 images at 36 px takes 124 kB: on a 100 kB tmpfs --data auto streams."""
    cli = Path(sys.executable).with_name("focus-pipeline")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    cmd = [
        str(cli), "--store", str(store.root), "train", "--dataset", "synth", "--model-type", "focusclip",
        "--arch", "focus-tiny", "--image-size", "32", "--batch-size", "8", "--max-steps", "2",
        "--threads", "1", "--device", "cpu", "--workers", "0", "--name", "auto", "--cache-dir", str(disk),
    ]  # fmt: skip
    script = f'mount -t tmpfs -o size=100k none "{disk}" && exec "$@"'
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FOCUS_PROGRESS": "0"}
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *cmd],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--data auto: stream: the cache would not fit its disk" in proc.stderr
    assert store.meta("runs", "auto")["summary"]["data"] == "stream"
    # a roomy cache disk: the decoded cache, said as well
    roomy = NodeCache(tmp_path / "roomy" / "synth" / "key")
    with caplog.at_level(logging.INFO, logger="training.stream"):
        assert choose_data_mode("auto", roomy, rows=32, side=36, with_heatmaps=False) == "cache"
    assert "--data auto: cache (the decoded cache of 32 images at 36 px takes 0.00 GB" in caplog.text
    assert choose_data_mode("stream", roomy, rows=32, side=36, with_heatmaps=False) == "stream"


@pytest.mark.slow
def test_resume_refuses_another_data_order(store, monkeypatch):
    """A streamed run's order depends on its worker count, and the cache's is another: a --resume that
    would read its batches otherwise is refused with the flags to use; the same order resumes."""
    real_get = StreamLoader.get

    def crash_at_step_3(self, epoch, step):
        if epoch * self.steps_per_epoch + step == 2:
            raise RuntimeError("simulated crash")
        return real_get(self, epoch, step)

    def cfg(**changes) -> TrainConfig:
        run = {"dataset": "synth", "name": "order", "max_steps": 4, "checkpoint_every": 2, "data": "stream"}
        return TrainConfig(**{**TINY, **run, **changes})

    monkeypatch.setattr(StreamLoader, "get", crash_at_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg(), store)
    monkeypatch.undo()
    for changes, was in (({"data": "cache"}, "the cache"), ({"workers": 2}, "a stream over 2 worker(s)")):
        with pytest.raises(PipelineError) as err:
            train(cfg(resume=True, **changes), store)
        message = str(err.value)
        assert f"this one would read them as {was}" in message and message.endswith(
            "--data stream --workers 1"
        )
    summary = train(cfg(resume=True, workers=1), store)  # --workers 0 and 1: one logical worker, one order
    assert summary["steps"] == 4 and summary["resumes"] == [{"step": 2, "changed": {}}]
