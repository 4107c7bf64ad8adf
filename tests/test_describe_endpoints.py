"""describe over several endpoints: real chat-completions servers on 127.0.0.1 (tests/fake_openai.py), with
faults injected: one dead (nothing listens on its port), one answering 500s, one slow."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from fake_openai import FakeOpenAI
from test_describe_resume import CLI_ENV, ROOT, journal_rows, run_and_kill_9
from test_describe_rules import csv_annotations, put_annotations

from pipeline.describe import DescribeConfig, describe
from pipeline.describe.endpoints import BENCH_AFTER, Endpoint, EndpointPool, LatencyHistogram
from pipeline.describe.prompting import PROMPTS_DIR
from pipeline.describe.rate_limits import AIMDWindow
from pipeline.describe.stage import settle
from pipeline.errors import PipelineError

N = 24


@pytest.fixture
def tagged(tmp_path):
    """The paper prompt with the image name in the user message (to tell which rows a server saw)."""
    folder = tmp_path / "tagged"
    folder.mkdir()
    for part in ("system.j2", "defaults.json"):
        if (PROMPTS_DIR / "paper" / part).is_file():
            (folder / part).write_text((PROMPTS_DIR / "paper" / part).read_text())
    (folder / "user.j2").write_text("Image {{ image }}\n{{ input_json }}\n")
    return str(folder)


@pytest.fixture
def mpii(store, shared_data):
    put_annotations(store, "mpii", csv_annotations(shared_data, N))
    return store


def dead_url() -> str:
    """An endpoint nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def cfg(urls: list[str], template: str, **kw) -> DescribeConfig:
    base = {
        "annotations": "mpii", "backend": "openai", "base_url": urls[0], "replica_urls": tuple(urls[1:]),
        "model": "fake", "template": template, "concurrency": 6, "timeout": 5, "max_retries": 5,
        "backoff": 0.01,
    }  # fmt: skip
    return DescribeConfig(**(base | kw))


def endpoint_stats(store) -> dict[str, dict]:
    return {e["url"]: e for e in store.meta("descriptions", "mpii")["run"]["endpoints"]}


def images_seen(server: FakeOpenAI) -> list[str]:
    return [r["user"].split("\n", 1)[0].removeprefix("Image ") for r in server.requests]


def test_pool_picks_fewest_in_flight_and_benches_a_failing_endpoint():
    a, b, c = (Endpoint(name, [], AIMDWindow(2)) for name in "abc")
    pool = EndpointPool([a, b, c])

    def fail(endpoint: Endpoint, sick: bool = True) -> float | None:
        endpoint.in_flight += 1
        return pool.failed(endpoint, sick)

    assert [pool.choose().url for _ in range(4)] == ["a", "b", "c", "a"]
    assert pool.choose().url == "b"  # a's window (2) is full: b and c have room, b comes first
    pool.succeeded(a, 0.1)
    assert pool.choose().url == "a" and (a.in_flight, b.in_flight, c.in_flight) == (2, 2, 1)
    for endpoint in (a, a, b, b, c):
        pool.cancelled(endpoint)
    # Sick failures in a row bench b; a 429-like failure in between starts the count again.
    assert fail(b) is None and fail(b, sick=False) is None
    assert [fail(b) for _ in range(BENCH_AFTER)] == [None] * (BENCH_AFTER - 1) + [5.0] and b.benched == 1
    assert "b" not in {pool.choose().url for _ in range(6)}
    # After the cool-down b takes one attempt (a probe) until it succeeds; a failed probe benches it longer.
    a.in_flight = c.in_flight = 3
    b.benched_until = 0.0
    assert pool.choose().url == "b" and pool.choose().url != "b"
    assert pool.failed(b, sick=True) == 10.0
    b.benched_until = 0.0
    assert pool.choose().url == "b"
    pool.succeeded(b, 0.2)
    assert {pool.choose().url for _ in range(2)} == {"b"} and b.bench_s == 5.0  # back in full
    # Every endpoint benched: the one back soonest still gets the attempt (the rows fail as with one).
    now = time.monotonic()
    a.benched_until, b.benched_until, c.benched_until = now + 30, now + 5, now + 60
    assert pool.choose().url == "b"
    # One endpoint is never benched: it is asked as before.
    (only,) = solo = [Endpoint("x", [], AIMDWindow(4))]
    single = EndpointPool(solo)
    for _ in range(10):
        single.choose()
        assert single.failed(only, sick=True) is None
    stats = single.stats()[0]
    assert stats["requests"] == stats["errors"] == 10 and stats["latency_p50_s"] is None


def test_latency_percentiles_within_five_percent():
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.add(ms / 1000)
    assert abs(hist.quantile(0.5) - 0.5) < 0.025 and abs(hist.quantile(0.95) - 0.95) < 0.05
    assert len(hist.counts) < 200  # buckets, not samples


def test_rows_spread_by_requests_in_flight(mpii, tagged):
    with FakeOpenAI(latency=0.02) as a, FakeOpenAI(latency=0.02) as b, FakeOpenAI(latency=0.4) as slow:
        summary = describe(cfg([a.url, b.url, slow.url], tagged), mpii)
    assert summary["ok"] == N
    seen = [len(s.requests) for s in (a, b, slow)]
    assert sum(seen) == N and min(seen) >= 1
    assert seen[2] < min(seen[:2])  # the slow server holds its requests longer, so it is sent fewer
    for server in (a, b, slow):  # 6 in flight over 3 servers: never more than 2 (+1 for timing) at one
        assert server.peak_in_flight <= 3
    stats = endpoint_stats(mpii)
    assert [stats[s.url]["requests"] for s in (a, b, slow)] == seen
    assert stats[slow.url]["latency_p50_s"] > stats[a.url]["latency_p50_s"]
    assert summary["endpoints"] == list(stats.values())


def test_benched_endpoints_rows_are_finished_by_the_others(mpii, tagged):
    dead = dead_url()
    key = "sk-endpointtest0123456789abcdef"
    with FakeOpenAI(latency=0.01) as good, FakeOpenAI(default="500") as broken:
        urls = [dead, broken.url, good.url]
        summary = describe(cfg(urls, tagged, api_key=key, concurrency=4), mpii)
    assert summary["ok"] == N and summary["error"] == 0
    stats = endpoint_stats(mpii)
    assert stats[good.url]["ok"] == N and stats[good.url]["errors"] == 0
    for url in (dead, broken.url):
        assert stats[url]["ok"] == 0 and stats[url]["errors"] >= BENCH_AFTER and stats[url]["benched"] >= 1
    # Benched after BENCH_AFTER failures in a row: after them only the attempts already in flight (at most
    # --concurrency 4), and one probe per cool-down (5 s, then 10 s) should the run outlast it.
    assert len(broken.requests) <= BENCH_AFTER + 4 + 2
    assert stats[good.url]["retries"] >= 1  # rows that failed elsewhere were finished here
    meta_text = (mpii.path("descriptions", "mpii") / "meta.json").read_text()
    assert key not in meta_text  # the 500s echo the Authorization header


def test_endpoint_list_is_run_only_and_kept_out_of_secrets(mpii, tagged):
    with FakeOpenAI() as a, FakeOpenAI() as b, FakeOpenAI() as c:
        describe(cfg([a.url, b.url, c.url], tagged), mpii)
        inputs = [mpii.ref("annotations", "mpii")]

        def current(urls: list[str]) -> bool:
            return mpii.is_current(
                "descriptions", "mpii", config=settle(cfg(urls, tagged)).recorded(), inputs=inputs
            )

        assert current([a.url, c.url]) and current([a.url]) and current([a.url, b.url, c.url, dead_url()])
        assert not current([b.url, a.url])  # rows are keyed under the first endpoint
    recorded = settle(
        cfg(["http://user:pw1@127.0.0.1:9/v1?key=q1", "http://u:pw2@127.0.0.1:8/v1?api-key=q2"], tagged)
    ).recorded()
    secret = recorded.config
    assert "replica_urls" in recorded.run_only
    assert (
        secret["replica_urls"] == ["http://127.0.0.1:8/v1"] and secret["base_url"] == "http://127.0.0.1:9/v1"
    )
    one = settle(cfg(["http://127.0.0.1:9/v1"], tagged)).recorded()
    assert "replica_urls" not in one.config  # one endpoint: as before
    with pytest.raises(PipelineError, match="listed twice"):
        cfg(["http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/"], tagged)
    with pytest.raises(PipelineError, match="--batch sends one file"):
        cfg(["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"], tagged, batch=True)


def test_every_endpoint_failing_exits_non_zero_and_keeps_paid_work(mpii, store_root, tagged, cli):
    with FakeOpenAI(default="500") as a, FakeOpenAI(default="500") as b:
        a.faults, b.faults = ["ok"] * 4, ["ok"] * 4  # each answers its first 4 requests, then only 500s
        args = ["describe", "--annotations", "mpii", "--model", "fake", "--template", tagged,
                "--base-url", a.url, "--base-url", b.url,
                "--concurrency", "2", "--max-retries", "2", "--backoff", "0.01"]  # fmt: skip
        failed = cli(*args)
        assert failed.exit_code == 2 and "rows failed" in failed.output, failed.output
        assert not mpii.exists("descriptions", "mpii")
        paid = journal_rows(store_root / "descriptions" / ".staging" / "mpii" / "journal.sqlite")
        paid = {image: rid for image, rid in paid.items() if rid}
        assert len(paid) == 8

        sent = (len(a.requests), len(b.requests))
        a.default = b.default = "ok"
        resumed = cli(*args, "--retry", "error")
        assert resumed.exit_code == 0, resumed.output
        again = images_seen(a)[sent[0] :] + images_seen(b)[sent[1] :]
    df = pd.read_parquet(mpii.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert (df.status == "ok").all() and len(df) == N
    assert all(df.loc[image, "response_id"] == rid for image, rid in paid.items())  # nothing bought twice
    assert len(again) == N - len(paid) and not set(again) & set(paid)


@pytest.mark.slow  # two CLI processes: ~20 s on a loaded 2-core machine
def test_kill_9_then_resume_with_the_list_reordered_buys_nothing_twice(mpii, store_root, tagged):
    with FakeOpenAI(latency=0.08) as a, FakeOpenAI(latency=0.08) as b, FakeOpenAI(latency=0.08) as c:
        servers = (a, b, c)

        def command(urls: list[str]) -> list[str]:
            return [sys.executable, "-c", "from pipeline.cli import main; main()", "--store", str(store_root),
                    "describe", "--annotations", "mpii", "--model", "fake", "--template", tagged,
                    "--concurrency", "3", *(arg for url in urls for arg in ("--base-url", url))]  # fmt: skip

        class Seen:  # run_and_kill_9 watches one server's requests: here, all three
            @property
            def requests(self) -> list:
                return [r for s in servers for r in s.requests]

        run_and_kill_9(command([a.url, b.url, c.url]), Seen(), N // 3, timeout=30)
        before = journal_rows(store_root / "descriptions" / ".staging" / "mpii" / "journal.sqlite")
        assert 0 < len(before) < N
        sent = [len(s.requests) for s in servers]
        # The journal rows are keyed under a; the resumed run names c first, and still finds them.
        done = subprocess.run(
            command([c.url, b.url, a.url]), cwd=ROOT, env=CLI_ENV, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        resent = [image for s, n in zip(servers, sent, strict=True) for image in images_seen(s)[n:]]
    df = pd.read_parquet(mpii.path("descriptions", "mpii") / "descriptions.parquet").set_index("image")
    assert len(df) == N and (df.status == "ok").all()
    assert all(df.loc[image, "response_id"] == rid for image, rid in before.items())
    assert not set(resent) & set(before) and len(resent) == N - len(before)
    assert json.loads(done.stdout)["endpoints"][0]["url"] == c.url


def test_base_urls_file_with_comments_and_a_bad_line(mpii, tagged, tmp_path, cli):
    with FakeOpenAI() as a, FakeOpenAI() as b:
        listing = tmp_path / "endpoints.txt"
        listing.write_text(f"# two replicas of one model\n\n{b.url}   # the second GPU\n")
        result = cli("describe", "--annotations", "mpii", "--model", "fake", "--template", tagged,
                     "--base-url", a.url, "--base-urls-file", listing)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(a.requests) + len(b.requests) == N and a.requests and b.requests
    config = mpii.meta("descriptions", "mpii")["config"]
    assert config["base_url"] == a.url and config["replica_urls"] == [b.url]
    listing.write_text(f"{a.url}\n# fine\nlocalhost:8000/v1\n")
    bad = cli("describe", "--annotations", "mpii", "--model", "fake", "--base-urls-file", listing)
    assert bad.exit_code == 2 and f"{listing}:3:" in bad.output, bad.output
