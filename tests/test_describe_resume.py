"""kill -9 in the middle of `focus-pipeline describe`, then the same command again: no finished row is lost,
none is sent twice (the CLI runs as a real subprocess against a real HTTP server)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from fake_openai import FakeOpenAI
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe.prompting import PROMPTS_DIR

N = 30
ROOT = Path(__file__).resolve().parents[1]


def journal_rows(path: Path) -> dict[str, str]:
    """image -> response_id of every row the journal holds (read-only, as a second process would)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT image, response_id FROM results").fetchall())
    finally:
        db.close()


CLI_ENV = os.environ | {"FOCUS_PROGRESS": "0"}


def run_and_kill_9(cmd: list[str], server, sent: int, timeout: float) -> None:
    """Run the CLI command, and kill -9 it once the server has seen `sent` requests (or after `timeout`)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while len(server.requests) < sent and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_then_resume_loses_nothing_and_resends_nothing(store, store_root, shared_data, tmp_path):
    rows = csv_annotations(shared_data, N)
    put_annotations(store, "mpii", rows)
    template = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "paper", template)
    (template / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")

    # slow enough that the run cannot finish between two polls of a loaded machine before the kill
    with FakeOpenAI(latency=0.3) as server:
        cmd = [
            sys.executable,
            "-c",
            "from pipeline.cli import main; main()",
            "--store",
            str(store_root),
            "describe",
            "--annotations",
            "mpii",
            "--backend",
            "openai",
            "--base-url",
            server.url,
            "--model",
            "fake",
            "--template",
            str(template),
            "--concurrency",
            "3",
        ]
        run_and_kill_9(cmd, server, N // 3, timeout=30)

        staging = store_root / "descriptions" / ".staging" / "mpii"
        assert not store.exists("descriptions", "mpii")  # nothing half-published
        before = journal_rows(staging / "journal.sqlite")
        assert 0 < len(before) < N
        sent_before = len(server.requests)

        done = subprocess.run(cmd, cwd=ROOT, env=CLI_ENV, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]

        resent = [r["user"].split("\n", 1)[0].removeprefix("Image ") for r in server.requests[sent_before:]]
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert len(df) == N and df.index.is_unique and (df.status == "ok").all()
    # Every finished row survived with its original response; none of them was requested again.
    assert all(df.loc[image, "response_id"] == rid for image, rid in before.items())
    assert not set(resent) & set(before)
    # Only the rows that had not finished were sent: exactly N - finished requests.
    assert len(resent) == N - len(before) and set(resent) | set(before) == set(df.index)
