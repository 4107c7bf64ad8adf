"""describe never reports a success it did not have: the CLI in a subprocess against the local server.

No key for a remote model, nothing listening, too many error rows, the budget as the artifact's total across
runs, an unknown price with --max-cost, and the API key scrubbed from every stored or printed error text; an
endpoint's malformed usage (never a credit to the budget), a server that trickles its reply (--timeout bounds
the whole attempt), a run with no ok row, and every numeric option checked before anything is sent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe.config import NUMBER_OPTIONS
from pipeline.describe.prompting import PROMPTS_DIR

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-Zq8vN3kP0aLr7TbW2xYc9JdE"
N = 6


@pytest.fixture
def setup(shared_data, store, store_root, tmp_path):
    put_annotations(store, "mpii", csv_annotations(shared_data, N))
    folder = tmp_path / "tagged"  # the image name in the prompt, so the server can fault one image
    shutil.copytree(PROMPTS_DIR / "paper", folder)
    (folder / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")
    with FakeOpenAI() as server:
        yield server, store_root, str(folder), [r.image for r in csv_annotations(shared_data, N)]


def run(store_root: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {"PYTHONPATH": str(ROOT), "FOCUS_PROGRESS": "0"} | ({"OPENAI_API_KEY": key} if key else {})
    cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "--store", str(store_root)]
    return subprocess.run([*cmd, "describe", "--annotations", "mpii", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def live(server, template: str, *args: str) -> list[str]:
    return ["--base-url", server.url, "--model", "fake", "--template", template, "--backoff", "0.01", *args]


def journal(store_root: Path) -> sqlite3.Connection:
    """The journal of descriptions/mpii: the staging one while unpublished, else the published one."""
    found = sorted(store_root.rglob("journal.sqlite"))
    assert len(found) == 1, found
    return sqlite3.connect(found[0])


def test_a_remote_model_without_a_key_is_an_error_not_the_rules_describer(setup):
    _, store_root, _, _ = setup
    out = run(store_root, "--model", "gpt-4o")
    assert (
        out.returncode != 0 and "OPENAI_API_KEY" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    )
    remote = run(store_root, "--base-url", "https://llm.example.com/v1", "--model", "llama-3-70b")
    assert remote.returncode != 0 and "OPENAI_API_KEY" in remote.stderr
    assert not (store_root / "descriptions" / "mpii").exists()


def test_nothing_listening_fails_and_keeps_the_journal(setup):
    _, store_root, template, _ = setup
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    out = run(store_root, "--base-url", url, "--model", "fake", "--template", template, "--max-retries", "0")
    assert out.returncode != 0 and "every request failed" in out.stderr
    assert not (store_root / "descriptions" / "mpii").exists()
    assert journal(store_root).execute("SELECT COUNT(*) FROM results WHERE status='error'").fetchone()[0] == N


def test_error_share_blocks_publishing_unless_allowed_and_the_key_is_scrubbed(setup):
    server, store_root, template, im = setup
    server.script = {im[0]: ["500*"]}  # its error text echoes the Authorization header
    out = run(store_root, *live(server, template, "--max-retries", "1"), key=KEY)
    assert out.returncode != 0 and "1 of 6 rows failed" in out.stderr and "--allow-partial" in out.stderr
    assert not (store_root / "descriptions" / "mpii").exists()
    again = run(store_root, *live(server, template, "--max-retries", "1", "--allow-partial"), key=KEY)
    assert again.returncode == 0, again.stderr
    assert '"requests_sent": 0' in again.stdout  # the journal answered every row: nothing paid twice
    published = store_root / "descriptions" / "mpii"
    error = journal(store_root).execute("SELECT error FROM results WHERE status='error'").fetchone()[0]
    assert "Authorization: Bearer ***" in error
    for path in published.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in out.stderr + out.stdout + again.stderr + again.stdout
    # A 401 whose body echoes the key: a one-line error without it.
    server.default = "401"
    denied = run(store_root, *live(server, template, "--temperature", "0.1"), key=KEY)
    assert denied.returncode != 0 and "HTTP 401" in denied.stderr and "***" in denied.stderr
    assert KEY not in denied.stderr + denied.stdout


@pytest.mark.slow
def test_max_cost_is_the_artifacts_total_across_runs(setup):
    server, store_root, template, _ = setup
    # $1 per 1k tokens: a request's worst case (prompt + 64 tokens) is about $0.4, a reply about $0.1.
    price = ["--price-input", "1000", "--price-output", "1000", "--max-tokens", "64", "--concurrency", "1"]
    spent = []
    for _ in range(2):
        out = run(store_root, *live(server, template, *price, "--max-cost", "0.9"))
        assert out.returncode != 0 and "stopped at --max-cost $0.9 (the artifact's total)" in out.stderr
        spent.append(journal(store_root).execute("SELECT SUM(cost_usd) FROM asks").fetchone()[0])
    # The second run found the first run's spending in the journal: the two together stay under the cap.
    assert 0 < spent[0] == spent[1] <= 0.9 and 0 < len(server.requests) < N
    plan = json.loads(run(store_root, *live(server, template, *price, "--dry-run")).stdout)
    assert plan["spent_so_far_usd"] == pytest.approx(spent[1])
    full = run(store_root, *live(server, template, *price, "--max-cost", "10"))
    assert full.returncode == 0, full.stderr
    assert len(server.requests) == N  # the rows paid for earlier were not asked again


def test_unknown_price_with_max_cost_is_refused_before_sending(setup):
    server, store_root, template, _ = setup
    out = run(store_root, *live(server, template, "--max-cost", "1"))
    assert out.returncode != 0 and "no price known for model 'fake'" in out.stderr
    assert server.requests == []
    free = run(
        store_root, *live(server, template, "--max-cost", "1", "--price-input", "0", "--price-output", "0")
    )
    assert free.returncode == 0, free.stderr


def test_scrub_and_what_counts_as_local():
    from pipeline.describe.config import is_local, scrub

    text = (
        f'HTTP 500: upstream said {{"authorization": "Bearer {KEY}", "api-key": "az-0123456789abcdef"}}; '
        f"Authorization: Basic dXNlcjpwYXNz; another key sk-proj-AAAABBBBCCCCDDDDEEEE; x-api-key=tok_123456"
    )
    clean = scrub(text, KEY)
    assert KEY not in clean and "az-0123456789abcdef" not in clean and "dXNlcjpwYXNz" not in clean
    assert "sk-proj-AAAABBBB" not in clean and "tok_123456" not in clean
    assert (
        clean.startswith("HTTP 500: upstream said")
        and scrub("HTTP 429: slow down", KEY) == "HTTP 429: slow down"
    )
    assert all(
        map(
            is_local,
            [
                "http://localhost:8000/v1",
                "http://127.0.0.1:1/v1",
                "http://10.0.0.7/v1",
                "http://192.168.1.2:8080/v1",
                "http://[::1]:8000/v1",
                "http://gpu-box.local/v1",
            ],
        )
    )
    assert not any(
        map(is_local, [None, "https://api.openai.com/v1", "http://8.8.8.8/v1", "https://my.vllm.ai/v1"])
    )


# ---- an endpoint's accounting, deadlines, runs that made nothing, option values ----------------------------
PRICED = ("--price-input", "10", "--price-output", "10")  # a request's worst case is about $0.008
CAP = ("--temperature", "0.1", "--max-cost", "0.005")  # below one request's worst case: nothing may be sent


def test_a_negative_usage_is_an_error_row_and_never_credits_the_budget(setup, cli):
    server, store_root, template, _ = setup
    server.default = "negative_usage"  # prompt_tokens -1,000,000: $-10 a reply at $10 per 1M tokens
    first = cli("describe", "--annotations", "mpii", *live(server, template, *PRICED))
    assert first.exit_code == 2 and "every request failed" in first.output
    assert "malformed usage" in first.output
    assert not (store_root / "descriptions" / "mpii").exists()
    rows = journal(store_root).execute("SELECT status, error FROM results").fetchall()
    assert len(rows) == N and all(status == "error" for status, _ in rows)
    assert all(e.startswith("malformed usage: prompt_tokens -1000000 is not a token count") for _, e in rows)
    costs = [c for (c,) in journal(store_root).execute("SELECT cost_usd FROM asks")]
    assert len(costs) == N and min(costs) > 0.005  # each paid reply charged at its worst case, never credited
    server.default = "ok"
    sent = len(server.requests)
    capped = cli("describe", "--annotations", "mpii", *live(server, template, *PRICED, *CAP))
    assert capped.exit_code == 2 and "stopped at --max-cost" in capped.output
    assert len(server.requests) == sent  # as in a fresh store: not one request


def test_negative_costs_already_in_a_journal_do_not_credit_the_budget(setup, cli):
    server, store_root, template, _ = setup
    assert cli("describe", "--annotations", "mpii", *live(server, template, *PRICED)).exit_code == 0
    db = journal(store_root)  # as a version that did not check usages recorded them
    db.execute("UPDATE asks SET cost_usd = -10, prompt_tokens = -1000000")
    db.commit()
    plan = cli("describe", "--annotations", "mpii", *live(server, template, *PRICED, *CAP, "--dry-run"))
    assert json.loads(plan.stdout)["spent_so_far_usd"] == 0
    sent = len(server.requests)
    capped = cli("describe", "--annotations", "mpii", *live(server, template, *PRICED, *CAP))
    assert capped.exit_code == 2 and "stopped at --max-cost" in capped.output and len(server.requests) == sent


@pytest.mark.parametrize("batch", [False, True], ids=["live", "batch"])
def test_every_malformed_usage_is_an_error_row_charged_at_its_worst_case(setup, cli, batch):
    server, store_root, template, im = setup
    faults = ["negative_usage", "huge_usage", "text_usage", "float_usage"]
    server.script = {image: [fault] for image, fault in zip(im, [*faults, "no_usage"], strict=False)}
    server.batch_polls_to_finish = 0
    args = (*PRICED, "--allow-partial", *(("--batch", "--poll-interval", "0.01") if batch else ()))
    res = cli("describe", "--annotations", "mpii", *live(server, template, *args))
    assert res.exit_code == 0, res.output
    assert len(server.requests) == N  # a reply with a malformed usage was paid for: not sent again
    df = pd.read_parquet(store_root / "descriptions/mpii/descriptions.parquet").set_index("image")
    bad, uncounted, good = df.loc[im[: len(faults)]], df.loc[im[len(faults)]], df.loc[im[len(faults) + 1 :]]
    assert (bad.status == "error").all() and bad.error.str.startswith("malformed usage").all(), bad.error
    assert bad.description.isna().all() and (bad.cost_usd > 0).all() and (bad.prompt_tokens == 0).all()
    assert (good.status == "ok").all() and (good.cost_usd < bad.cost_usd.min()).all()
    # A reply without a usage is a good row whose cost is its worst case, as a malformed one's.
    assert uncounted.status == "ok" and uncounted.cost_usd > good.cost_usd.max()
    assert min(c for (c,) in journal(store_root).execute("SELECT cost_usd FROM asks")) > 0


@pytest.mark.parametrize("lean", [False, True], ids=["openai-transport", "lean-http"])
def test_timeout_is_a_deadline_on_the_whole_attempt(setup, cli, lean):
    server, store_root, template, im = setup
    server.trickle_s = 0.1  # each read gets a byte in time; the whole reply would take minutes
    server.script = {im[0]: ["trickle", "ok"], im[1]: ["trickle*"]}
    args = ("--timeout", "0.5", "--max-retries", "1", "--limit", "2")
    res = cli("describe", "--annotations", "mpii", *live(server, template, *args, *(("--lean-http",) * lean)))
    assert res.exit_code == 2 and "1 of 2 rows failed" in res.output and "--timeout 0.5 s" in res.output
    rows = journal(store_root).execute("SELECT image, status, attempts, latency_s FROM results").fetchall()
    by_image = {image: (status, attempts) for image, status, attempts, _ in rows}
    assert by_image == {im[0]: ("ok", 2), im[1]: ("error", 2)}  # the client goes on after a cut-off attempt
    # Two attempts ended by the 0.5 s deadline (a loaded machine may add seconds, never the reply's minutes).
    latency = next(seconds for image, *_, seconds in rows if image == im[1])
    assert 0.9 <= latency < 10, latency


def test_a_run_with_no_ok_row_publishes_nothing_unless_allowed(setup, cli):
    server, store_root, template, _ = setup
    server.default = "meta"  # "I'm an AI model designed to ...": invalid at the gate
    res = cli("describe", "--annotations", "mpii", *live(server, template))
    assert res.exit_code == 2 and f"no row is ok ({N} invalid" in res.output
    assert "--retry invalid" in res.output and "--allow-partial" in res.output
    assert not (store_root / "descriptions" / "mpii").exists()
    sent = len(server.requests)
    allowed = cli("describe", "--annotations", "mpii", *live(server, template, "--allow-partial"))
    assert allowed.exit_code == 0, allowed.output
    assert len(server.requests) == sent  # the journal kept every reply paid for
    assert json.loads((store_root / "descriptions/mpii/meta.json").read_text())["counts"]["ok"] == 0


BAD_NUMBERS = {
    "--timeout": ["0", "-1", "nan"], "--rpm": ["0", "-5"], "--tpm": ["nan"], "--backoff": ["-1", "nan"],
    "--max-cost": ["-1", "inf"], "--price-input": ["-3"], "--price-output": ["nan"],
    "--temperature": ["nan", "3"], "--max-tokens": ["0"], "--top-p": ["7"], "--frequency-penalty": ["inf"],
    "--poll-interval": ["0"], "--max-contradicted": ["nan", "1.5"], "--min-pose-claims": ["-1"],
    "--concurrency": ["0"], "--samples": ["0"], "--max-retries": ["-1"], "--limit": ["-1"],
    "--retry-invalid": ["-1"], "--max-error-share": ["2"],
}  # fmt: skip


def test_every_numeric_option_is_checked_before_anything_is_sent(setup, cli):
    server, store_root, template, _ = setup
    assert set(BAD_NUMBERS) == set(NUMBER_OPTIONS)
    for option, values in BAD_NUMBERS.items():
        for value in values:
            res = cli("describe", "--annotations", "mpii", *live(server, template, option, value))
            lines = res.output.strip().splitlines()
            assert res.exit_code == 2 and len(lines) == 1, (option, value, res.output)
            assert lines[0].startswith(f"error: {option} ") and "must be a number" in lines[0], lines
    assert server.requests == [] and not (store_root / "descriptions").exists()
    ok = cli("describe", "--annotations", "mpii", *live(server, template, "--timeout", "30", "--rpm", "6000"))
    assert ok.exit_code == 0, ok.output
