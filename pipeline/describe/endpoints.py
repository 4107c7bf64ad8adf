"""Many endpoints for one describe run (`--base-url` repeated, `--base-urls-file`): each HTTP attempt goes to
the endpoint with the fewest requests in flight; one that keeps failing is benched for a while and the rows
go to the others.

    pool = EndpointPool([Endpoint(url, clients, AIMDWindow(64)) for url, clients in ...])
    endpoint = pool.choose()      # in flight there until pool.succeeded / failed / cancelled(endpoint, ...)
    pool.stats()                  # per endpoint: requests, ok, errors, retries, latency p50/p95, benched

Why fewest in flight (join-the-shortest-queue): a slower or busier server holds its requests longer, so it is
sent fewer without knowing its speed; one whose AIMD window is full (it answered 429/5xx) is passed over while
another has room.

Benching, with two or more endpoints (one endpoint is always asked, as before): BENCH_AFTER attempts in a row
that failed in a way that says the server is sick (no connection, dropped connection, timeout, 5xx, a reply
that is not JSON) bench it for BENCH_S seconds, doubled each time it is benched again with no success in
between, up to BENCH_MAX_S. Not 429 (the server pacing us: the window and Retry-After handle it) and not other
4xx (the request's fault, or fatal). Without benching, a dead server that refuses connections at once would
always have the fewest in flight and draw most attempts. It is benched for a cool-down rather than for good
because a vLLM server that restarts, or a network that recovers, is worth having back on a long run: after the
cool-down one attempt probes it, and a success returns it to the pool (a failure benches it again, longer).
While every endpoint is benched, an attempt goes to the one whose cool-down ends first: the rows fail after
--max-retries as they do against one dead endpoint, and the run ends as such a run does (error rows, nothing
charged, not published, non-zero exit unless --allow-partial).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import openai

from pipeline.describe.rate_limits import AIMDWindow

BENCH_AFTER = 3  # sick attempts in a row
BENCH_S = 5.0  # first cool-down; doubles per re-bench without a success in between
BENCH_MAX_S = 120.0
_STEPS_PER_DECADE = 50  # latency histogram resolution: 10 ** (1 / 50) - 1 = 4.7 % per bucket


class LatencyHistogram:
    """Attempt latencies in log-spaced buckets: percentiles within 4.7 %, memory bounded by the range of
    latencies seen, not by the number of requests."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.n = 0

    def add(self, seconds: float) -> None:
        self.counts[round(_STEPS_PER_DECADE * math.log10(max(seconds, 1e-4)))] += 1
        self.n += 1

    def quantile(self, q: float) -> float | None:
        """Seconds below which a share q of the latencies lie (the bucket's centre), None when empty."""
        if not self.n:
            return None
        rank, seen = q * self.n, 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return round(10 ** (bucket / _STEPS_PER_DECADE), 4)
        raise AssertionError("unreachable: the counts sum to n")


@dataclass(slots=True, eq=False)
class Endpoint:
    """One server of the run: its clients (see openai_backend.make_clients), its own AIMD window (a 5xx storm
    at one server does not slow the others) and what it did."""

    url: str  # public form (public_base_url): no credentials, no query
    clients: list[openai.AsyncOpenAI]
    window: AIMDWindow
    in_flight: int = 0  # attempts assigned here (waiting for its window or on the wire)
    requests: int = 0
    ok: int = 0
    errors: int = 0
    retries: int = 0  # attempts here that retried an earlier failed attempt (here or elsewhere)
    benched: int = 0  # times benched
    failing: int = 0  # sick attempts in a row
    bench_s: float = BENCH_S
    benched_until: float = 0.0
    probation: bool = False  # back from the bench, no success yet: one attempt at a time
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    _next_client: int = 0

    def client(self) -> openai.AsyncOpenAI:
        """The endpoint's clients in turn (each pool then holds about concurrency / len(clients))."""
        self._next_client = (self._next_client + 1) % len(self.clients)
        return self.clients[self._next_client]

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "retries": self.retries,
            "latency_p50_s": self.latency.quantile(0.5),
            "latency_p95_s": self.latency.quantile(0.95),
            "benched": self.benched,
            "window_decreases": self.window.decreases,
        }


class EndpointPool:
    def __init__(self, endpoints: list[Endpoint]):
        self.endpoints = endpoints
        self.benching = len(endpoints) > 1

    def choose(self, retry: bool = False) -> Endpoint:
        """The endpoint for the next attempt: not benched, then with room in its window, then the fewest in
        flight (the first listed on a tie); one back from the bench takes one attempt until it succeeds; none
        ready: the one back soonest."""
        now = time.monotonic()
        ready = [e for e in self.endpoints if e.benched_until <= now and not (e.probation and e.in_flight)]
        if ready:
            chosen = min(ready, key=lambda e: (e.in_flight >= int(e.window.limit), e.in_flight))
        else:
            chosen = min(self.endpoints, key=lambda e: e.benched_until)
        chosen.in_flight += 1
        chosen.requests += 1
        chosen.retries += retry
        return chosen

    def succeeded(self, endpoint: Endpoint, seconds: float) -> None:
        endpoint.in_flight -= 1
        endpoint.ok += 1
        endpoint.latency.add(seconds)
        endpoint.failing = 0
        endpoint.bench_s = BENCH_S
        endpoint.probation = False

    def failed(self, endpoint: Endpoint, sick: bool) -> float | None:
        """Count a failed attempt; the cool-down in seconds when it benches the endpoint, else None."""
        endpoint.in_flight -= 1
        endpoint.errors += 1
        endpoint.failing = endpoint.failing + 1 if sick else 0
        now = time.monotonic()
        # Attempts already in flight when it was benched fail too: they do not bench it again.
        if not (self.benching and endpoint.failing >= BENCH_AFTER and endpoint.benched_until <= now):
            return None
        cool_down = endpoint.bench_s
        endpoint.benched_until = now + cool_down
        endpoint.benched += 1
        endpoint.failing = BENCH_AFTER - 1  # on probation: one more sick attempt benches it again
        endpoint.probation = True
        endpoint.bench_s = min(BENCH_MAX_S, 2 * cool_down)
        return cool_down

    def cancelled(self, endpoint: Endpoint) -> None:
        """An attempt given up by the run (the run is stopping): neither a success nor a failure."""
        endpoint.in_flight -= 1

    def stats(self) -> list[dict[str, Any]]:
        return [e.stats() for e in self.endpoints]

    @property
    def window_limit(self) -> int:
        return sum(int(e.window.limit) for e in self.endpoints)

    @property
    def window_decreases(self) -> int:
        return sum(e.window.decreases for e in self.endpoints)
