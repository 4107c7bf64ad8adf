"""kill -9 in the middle of `focus-pipeline describe --with-image`, then the same command again: no finished
image row is lost, none is sent twice, and every request of the second run carries its image."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
from fake_openai import FakeOpenAI
from test_describe_resume import CLI_ENV, journal_rows, run_and_kill_9
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe.prompting import PROMPTS_DIR

N = 30
ROOT = Path(__file__).resolve().parents[1]


def test_kill_9_then_resume_with_images(store, store_root, shared_data, tmp_path):
    real = shared_data / "mpii/mmpose_tests"
    names = {p.name for p in real.glob("*.jpg")}
    five = [r for r in csv_annotations(shared_data, 17372) if r.image in names]
    images = tmp_path / "images"
    (images / "real").mkdir(parents=True)
    for src in five:
        shutil.copyfile(real / src.image, images / "real" / src.image)
    rows = []
    for i in range(N):  # 30 rows: each links to one of the five images copied in, under its own name
        src = five[i % 5]
        (images / f"{i:02d}-{src.image}").symlink_to(images / "real" / src.image)
        rows.append(replace(src, image=f"{i:02d}-{src.image}"))
    put_annotations(store, "mpii", rows)
    template = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "grounded-image", template)
    (template / "user.j2").write_text("Image {{ image }}\n" + (template / "user.j2").read_text())

    with FakeOpenAI(latency=0.06) as server:
        cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "--store", str(store_root),
               "describe", "--annotations", "mpii", "--base-url", server.url, "--model", "gpt-4o",
               "--with-image", "--images", str(images), "--image-mark", "box", "--template", str(template),
               "--concurrency", "3"]  # fmt: skip
        run_and_kill_9(cmd, server, N // 3, timeout=60)

        staging = store_root / "descriptions" / ".staging" / "mpii"
        assert not store.exists("descriptions", "mpii")
        before = journal_rows(staging / "journal.sqlite")
        assert 0 < len(before) < N
        sent_before = len(server.requests)

        done = subprocess.run(cmd, cwd=ROOT, env=CLI_ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        second = server.requests[sent_before:]
    resent = [r["user"].split("\n", 1)[0].removeprefix("Image ") for r in second]
    df = pd.read_parquet(store.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert len(df) == N and (df.status == "ok").all()
    assert all(df.loc[image, "response_id"] == rid for image, rid in before.items())
    assert not set(resent) & set(before) and len(resent) == N - len(before)
    assert all(len(r["images"]) == 1 and max(r["images"][0]["size"]) == 768 for r in second)
