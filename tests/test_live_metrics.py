"""--report-to (training/live_metrics.py): the metrics.jsonl records reach TensorBoard's event files and an
offline W&B run, read back with each library's own reader; the config W&B gets is redacted."""

from __future__ import annotations

import glob
import json
import time

import pytest

from pipeline.errors import PipelineError
from training.live_metrics import LiveMetrics, parse_report_to, scalars

RECORDS = [
    {"step": s, "epoch": 0, "loss": 2.0 / s, "alpha": None, "lr": 1e-3, "zeroshot/fer2013-emotion/acc@3": 0.4}
    for s in range(1, 6)
]


def test_report_to_is_parsed_and_checked():
    assert parse_report_to(["tensorboard,wandb", "tensorboard"]) == ("tensorboard", "wandb")
    assert parse_report_to(None) == ()
    with pytest.raises(PipelineError, match="--report-to mlflow: one of tensorboard, wandb"):
        parse_report_to(["mlflow"])
    assert scalars(RECORDS[1]) == {
        "train/epoch": 0.0,
        "train/loss": 1.0,
        "train/lr": 1e-3,
        "zeroshot/fer2013-emotion/acc@3": 0.4,
    }


def test_tensorboard_gets_every_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    live = LiveMetrics.open(("tensorboard",), tmp_path, name="t", config={})
    for rec in RECORDS:
        live.log(rec)
    live.close()
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    got = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert got == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in RECORDS]  # stored as float32
    assert (
        len(events.Scalars("zeroshot/fer2013-emotion/acc@3")) == 5
        and "train/alpha" not in events.Tags()["scalars"]
    )


def _wandb_records(path: str, wait_s: float = 60.0) -> tuple[list[dict], dict]:
    """(history rows, config) of an offline run file, once its exit record is in (wandb's service writes the
    file after finish() returns)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    end = time.monotonic() + wait_s
    while True:
        store = datastore.DataStore()
        store.open_for_scan(path)
        history, config, done = [], {}, False
        while (data := store.scan_data()) is not None:
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(data)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                history.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                )
            elif kind == "run":
                config = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
            done |= kind == "exit"
        if done or time.monotonic() > end:
            return history, config
        time.sleep(0.5)


@pytest.mark.slow
def test_wandb_offline_run_holds_the_history_and_a_redacted_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    live = LiveMetrics.open(("wandb",), tmp_path, name="t", config={"lr": 1e-3, "api_key": "sk-secret"})
    for rec in RECORDS:
        live.log(rec)
    live.close()
    (path,) = glob.glob(
        str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb")
    )  # offline: no key, no prompt
    history, config = _wandb_records(path)
    assert [(h["_step"], h["train/loss"]) for h in history] == [(r["step"], r["loss"]) for r in RECORDS]
    assert config["api_key"] == "***" and config["lr"] == 1e-3
    assert (tmp_path / "wandb-id.txt").read_text().strip() in path  # a resumed run appends to this run
