"""describe --backend openai: the real openai client against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe import DescribeConfig, Shard, describe
from pipeline.describe.prompting import PROMPTS_DIR
from pipeline.describe.rate_limits import AIMDWindow, TokenBucket
from pipeline.errors import PipelineError

N = 16


@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def tagged(tmp_path):
    """The paper prompt with the image name in the user message, so the server can fault one image."""
    folder = tmp_path / "tagged"
    shutil.copytree(PROMPTS_DIR / "paper", folder)
    (folder / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")
    return str(folder)


@pytest.fixture
def rows(shared_data):
    return csv_annotations(shared_data, N)


@pytest.fixture
def mpii(store, rows):
    put_annotations(store, "mpii", rows)
    return store


def cfg(server, template, **kw) -> DescribeConfig:
    base = {
        "annotations": "mpii",
        "backend": "openai",
        "base_url": server.url,
        "model": "fake",
        "template": template,
        "concurrency": 4,
        "timeout": 0.5,
        "max_retries": 3,
        "backoff": 0.01,
    }
    return DescribeConfig(**(base | kw))


def table(store, name="mpii") -> pd.DataFrame:
    return pd.read_parquet(store.path("descriptions", name) / "descriptions.parquet")


def test_every_fault_ends_in_one_status(server, mpii, rows, tagged):
    im = [r.image for r in rows]
    server.script = {
        im[0]: ["429", "ok"],
        im[1]: ["500", "500", "ok"],
        im[2]: ["slow", "ok"],
        im[3]: ["drop", "ok"],
        im[4]: ["malformed", "ok"],
        im[5]: ["empty"],
        im[6]: ["length"],
        im[7]: ["refuse"],
        im[8]: ["500*"],
        im[9]: ["429s", "ok"],
    }
    server.retry_after_ms = 1000
    server.slow_s = 3.0
    started = time.monotonic()
    summary = describe(
        cfg(server, tagged, timeout=1.0, allow_partial=True), mpii
    )  # 1 s: a loaded CI box stays under it
    df = table(mpii).set_index("image")
    assert len(df) == N and df.index.is_unique and summary["rows"] == N
    assert df.loc[im[0:5], "status"].eq("ok").all() and df.loc[im[10:], "status"].eq("ok").all()
    assert list(df.loc[im[0:5], "attempts"]) == [2, 3, 2, 2, 2]
    assert df.loc[im[5], "status"] == "refused" and pd.isna(df.loc[im[5], "description"])
    assert "empty content" in df.loc[im[5], "error"]
    assert df.loc[im[6], "status"] == "truncated" and df.loc[im[6], "finish_reason"] == "length"
    assert df.loc[im[7], "status"] == "refused" and "refusal" in df.loc[im[7], "error"]
    # Bounded: 1 try + 3 retries, then status error with the last HTTP error kept.
    assert df.loc[im[8], "status"] == "error" and df.loc[im[8], "attempts"] == 4
    assert df.loc[im[8], "error"].startswith("HTTP 500") and pd.isna(df.loc[im[8], "description"])
    assert sum(im[8] in r["user"] for r in server.requests) == 4
    # Retry-After: 1 s was honoured (not the 10 ms backoff).
    sent = [r["t"] for r in server.requests if im[9] in r["user"]]
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.95
    assert time.monotonic() - started < 10
    assert not (df.description == "").any()
    ok = df[df.status == "ok"]
    assert ok.response_id.notna().all() and (ok.prompt_tokens > 0).all() and (ok.completion_tokens > 0).all()
    meta = mpii.meta("descriptions", "mpii")
    assert meta["counts"]["ok"] == N - 4 and meta["counts"]["error"] == 1 and meta["counts"]["refused"] == 2
    assert meta["config"]["sampling"] == {"temperature": 0.5, "max_tokens": 512, "frequency_penalty": 1.0}
    assert meta["config"]["template_hash"] == df.template_hash.iloc[0]


def test_rerun_resume_cache_and_retry_failed(server, mpii, rows, tagged):
    im = [r.image for r in rows]
    server.script = {im[3]: ["500*"]}
    first = describe(cfg(server, tagged, max_retries=1, allow_partial=True), mpii)
    assert first["error"] == 1 and len(server.requests) == N + 1

    # Same command: everything (errors too) comes from the journal.
    again = describe(cfg(server, tagged, max_retries=1, allow_partial=True), mpii)
    assert again["cache_hits"] == N and again["requests_sent"] == 0 and len(server.requests) == N + 1

    # --retry-failed sends only the failed row.
    server.script = {}
    fixed = describe(cfg(server, tagged, retry=("error", "invalid", "refused", "truncated")), mpii)
    assert fixed["requests_sent"] == 1 and fixed["ok"] == N and len(server.requests) == N + 2

    # One changed parameter re-runs its rows; changing it back costs nothing (the journal keeps both).
    hot = describe(cfg(server, tagged, temperature=0.9), mpii)
    assert hot["requests_sent"] == N and table(mpii).cache_key.nunique() == N
    back = describe(cfg(server, tagged), mpii)
    assert back["requests_sent"] == 0 and back["cache_hits"] == N and len(server.requests) == 2 * N + 2


def test_dry_run_plans_and_sends_nothing(server, mpii, tagged):
    plan = describe(cfg(server, tagged, dry_run=True, price_input=1.0, price_output=2.0), mpii)
    assert plan["new_requests"] == N and plan["cache_hits"] == 0 and plan["prompt_tokens"] > 100 * N
    assert plan["estimated_cost_usd"] == pytest.approx(
        (plan["prompt_tokens"] * 1.0 + plan["completion_tokens_estimate"] * 2.0) / 1e6, rel=1e-3
    )
    assert not server.requests and not mpii.exists("descriptions", "mpii")
    describe(cfg(server, tagged, limit=5), mpii)
    plan = describe(cfg(server, tagged, dry_run=True), mpii)
    assert plan["cache_hits"] == 5 and plan["new_requests"] == N - 5 and len(server.requests) == 5


def test_max_cost_stops_cleanly_and_resumes(server, mpii, tagged, store_root):
    # Each request's worst case is (prompt + 512 tokens) at $1000 per 1M: about $1, so $3 stops early.
    budget = cfg(server, tagged, price_input=1000.0, price_output=1000.0, max_cost=3.0, concurrency=1)
    with pytest.raises(PipelineError, match="stopped at --max-cost"):
        describe(budget, mpii)
    assert not mpii.exists("descriptions", "mpii")
    paid = len(server.requests)
    assert 1 <= paid < N
    rest = describe(cfg(server, tagged, price_input=1000.0, price_output=1000.0), mpii)
    assert rest["requests_sent"] == N - paid and rest["ok"] == N and rest["cost_usd"] > 3.0


def test_fatal_status_is_one_error_and_secrets_stay_out(server, mpii, tagged, cli, store_root):
    server.default = "401"
    res = cli(
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
        tagged,
        env={"OPENAI_API_KEY": "sk-test-SECRET-42"},
    )
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert (
        res.exit_code == 2 and len(errors) == 1 and "HTTP 401" in errors[0] and "Traceback" not in res.output
    )
    server.default = "ok"
    url = server.url.replace("http://", "http://user:PASSWORD@")
    res = cli(
        "describe",
        "--annotations",
        "mpii",
        "--base-url",
        url,
        "--model",
        "fake",
        "--template",
        tagged,
        env={"OPENAI_API_KEY": "sk-test-SECRET-42"},
    )
    assert res.exit_code == 0, res.output
    for f in (store_root / "descriptions" / "mpii").iterdir():
        data = f.read_bytes()
        assert b"SECRET-42" not in data and b"PASSWORD" not in data, f
    assert "SECRET-42" not in res.output and "PASSWORD" not in res.output
    assert (
        json.loads((store_root / "descriptions/mpii/meta.json").read_text())["config"]["backend"] == "openai"
    )


def test_shards_partition_and_samples_stay_apart(server, mpii, tagged):
    a = describe(cfg(server, tagged, shard=Shard(0, 2)), mpii)
    b = describe(cfg(server, tagged, shard=Shard(1, 2)), mpii)
    ia, ib = set(table(mpii, "mpii.shard-0-of-2").image), set(table(mpii, "mpii.shard-1-of-2").image)
    assert a["rows"] + b["rows"] == N and not ia & ib and len(ia | ib) == N
    two = describe(cfg(server, tagged, samples=2, name="two", limit=4), mpii)
    df = table(mpii, "two")
    assert two["rows"] == 8 and sorted(df["sample"].unique()) == [0, 1] and df.cache_key.is_unique


def test_rate_limit_and_aimd_window():
    async def bucket() -> float:
        tb = TokenBucket(6000)  # 100 per second, bursting to 100
        started = time.monotonic()
        for _ in range(150):
            await tb.take(1)
        return time.monotonic() - started

    assert 0.45 < asyncio.run(bucket()) < 2.0

    window = AIMDWindow(16)
    window.congestion()
    window.congestion()  # within the cooldown: one burst halves once
    assert window.limit == 8 and window.decreases == 1
    for _ in range(40):
        window.success()
    assert 11 < window.limit <= 16


def test_429_storm_backs_off_the_window(server, mpii, tagged):
    server.faults = ["429"] * 6
    summary = describe(cfg(server, tagged, concurrency=8, max_retries=6), mpii)
    assert summary["ok"] == N and summary["window_decreases"] >= 1 and summary["retries"] == 6


def test_lean_transport_is_opt_in():
    from pipeline.describe.openai_backend import make_clients
    from pipeline.describe.transport import LeanTransport

    plain = make_clients(DescribeConfig(annotations="x", base_url="http://127.0.0.1:9/v1", concurrency=16))
    assert len(plain) == 2 and not any(isinstance(c._client._transport, LeanTransport) for c in plain)
    (lean,) = make_clients(DescribeConfig(annotations="x", base_url="http://127.0.0.1:9/v1", lean_http=True))
    assert isinstance(lean._client._transport, LeanTransport)
    with pytest.raises(PipelineError, match="--lean-http: only for a plain-http"):
        DescribeConfig(annotations="x", base_url="https://api.example.com/v1", lean_http=True)


def test_lean_transport_reads_chunked_and_closing_replies():
    """The plain-http transport against a server that answers chunked, then closes the connection."""
    body = json.dumps(
        {
            "id": "c1",
            "choices": [{"message": {"content": "hello there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    ).encode()

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        half = len(body) // 2
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
            b"connection: close\r\n\r\n"
            + b"%x\r\n" % half
            + body[:half]
            + b"\r\n"
            + b"%x\r\n" % (len(body) - half)
            + body[half:]
            + b"\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def main():
        from pipeline.describe.openai_backend import make_clients

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        (client,) = make_clients(
            DescribeConfig(annotations="x", base_url=f"http://127.0.0.1:{port}/v1", lean_http=True)
        )
        replies = [await client.post("/chat/completions", content=b"{}", cast_to=object) for _ in range(2)]
        await client.close()
        server.close()
        return replies

    replies = asyncio.run(main())  # the second request needs a fresh connection: the first was closed
    assert [r["choices"][0]["message"]["content"] for r in replies] == ["hello there"] * 2


def test_batch_api_collects_output_and_error_files_and_resubmits(server, mpii, rows, tagged):
    im = [r.image for r in rows]
    server.script = {im[0]: ["500", "ok"], im[1]: ["expire", "ok"], im[2]: ["500*"], im[3]: ["empty"]}
    server.batch_polls_to_finish = 2
    summary = describe(cfg(server, tagged, batch=True, poll_interval=0.01, max_retries=2,
                           price_input=1.0, price_output=1.0, allow_partial=True), mpii)  # fmt: skip
    df = table(mpii).set_index("image")
    assert len(df) == N and summary["batches"] == 3  # the first batch, then two resubmissions
    assert summary["requests_sent"] == N + 2 + 2  # retries: im0 and im1 once, im2 twice
    assert df.loc[im[0], "status"] == "ok" and df.loc[im[0], "attempts"] == 2
    assert df.loc[im[1], "status"] == "ok" and df.loc[im[1], "attempts"] == 2
    assert df.loc[im[2], "status"] == "error" and df.loc[im[2], "attempts"] == 3
    assert df.loc[im[2], "error"].startswith("HTTP 500")
    assert df.loc[im[3], "status"] == "refused"
    ok = df[df.status == "ok"]
    # Batch prices are half the live ones.
    assert ok.cost_usd.iloc[0] == pytest.approx(
        (ok.prompt_tokens.iloc[0] + ok.completion_tokens.iloc[0]) / 2e6
    )
    # Same cache keys as live requests: a live re-run finds everything in the journal.
    again = describe(
        cfg(server, tagged, max_retries=2, price_input=1.0, price_output=1.0, allow_partial=True), mpii
    )
    assert again["requests_sent"] == 0 and again["cache_hits"] == N


def test_batch_submitted_before_a_crash_is_polled_not_resubmitted(server, mpii, tagged, monkeypatch):
    from pipeline.describe import batch as batch_mod

    def crash(self, batch_id):
        raise KeyboardInterrupt  # the user stops the run while the batch is still being processed

    with monkeypatch.context() as m:
        m.setattr(batch_mod.BatchRunner, "wait", crash)
        with pytest.raises(KeyboardInterrupt):
            describe(cfg(server, tagged, batch=True, poll_interval=0.01), mpii)
    assert len(server.batches) == 1 and len(server.requests) == N
    summary = describe(cfg(server, tagged, batch=True, poll_interval=0.01), mpii)
    assert summary["ok"] == N and summary["batches"] == 0 and len(server.batches) == 1


def test_a_template_edit_that_sends_the_same_messages_buys_nothing_again(server, mpii, tagged):
    first = describe(cfg(server, tagged), mpii)
    assert first["requests_sent"] == N and len(server.requests) == N
    before = set(table(mpii).description)

    # A comment changes the folder's hash (and so every key) but not one byte of what is sent.
    user = Path(tagged) / "user.j2"
    user.write_text("{#- why this prompt: ... -#}\n" + user.read_text())
    plan = describe(cfg(server, tagged, dry_run=True), mpii)
    assert plan["cache_hits"] == N and plan["new_requests"] == 0
    again = describe(cfg(server, tagged), mpii)
    assert again["requests_sent"] == 0 and again["cache_hits"] == N and len(server.requests) == N
    assert set(table(mpii).description) == before and table(mpii).template_hash.nunique() == 1

    # A change of what is sent is asked again.
    user.write_text(user.read_text().replace("Image {{ image }}", "Photo {{ image }}"))
    changed = describe(cfg(server, tagged), mpii)
    assert changed["requests_sent"] == N and len(server.requests) == 2 * N
