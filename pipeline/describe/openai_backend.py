"""The LLM backend: any OpenAI-compatible chat-completions endpoint through the official async client.

    stats = run_requests(todo, cfg, price, journal)      # every request ends as one journal row

How it stays fast and within limits:
- K workers share one AIMD window: every 429/5xx/timeout halves the number of requests allowed in flight
  (at most once per `_COOLDOWN`), every success adds 1/window, up to --concurrency.
- --rpm / --tpm are token buckets (a request costs its prompt estimate + max_tokens, what OpenAI counts).
- tenacity retries transient failures (429, 5xx, timeouts, dropped connections, unparsable replies) with
  full-jitter exponential backoff; a Retry-After / retry-after-ms header sets the wait instead. Bounded
  by --max-retries; after that the row is recorded with status error, never dropped.
- The client's own retries are off (max_retries=0) so every attempt is counted and journaled here.
- --timeout is a deadline on the whole attempt (connect, send, every read of the reply), on either transport:
  httpx's own timeouts bound each read, so a server that trickles a byte at a time would hold it for ever.
- --max-cost is the artifact's total: the journal's spending of earlier runs counts, and no new request
  (re-asks included) starts once spent + the worst case of those in flight would pass it; the run stops
  cleanly and a re-run continues from the journal. A reply's usage is checked (token counts are integers in
  0..MAX_REQUEST_TOKENS): a malformed one makes the row `error` and is charged at its worst case, one without
  usage is charged at its worst case too, so an endpoint's accounting can never credit the budget.
- --retry-invalid N: a reply the gate judges invalid or truncated is asked again (seed + k, warmer) up to N
  times; every ask is journaled and paid for, the row keeps its best one.
- --with-image: each row's image is rendered (read, checked against its hash, resized, marked, encoded) in a
  worker thread once per row, before its first ask; one that cannot be is an error row, and nothing is sent.
- Error texts are scrubbed of the API key and Authorization / api-key values before they are stored,
  logged or printed (a server may echo the request headers).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pipeline.artifacts.descriptions import RANK, DescriptionResult
from pipeline.describe.codec import (
    Completion,
    MalformedResponse,
    completion_result,
    error_text,
    parse_completion,
    render_image,
    reply_cost,
    request_fields,
    request_messages,
    unsendable_result,
)
from pipeline.describe.config import DescribeConfig, DescriptionRequest, public_base_url
from pipeline.describe.journal import Journal
from pipeline.describe.pricing import Price
from pipeline.describe.rate_limits import AIMDWindow, TokenBucket
from pipeline.describe.transport import LeanTransport
from pipeline.errors import PipelineError
from pipeline.log import progress

log = logging.getLogger(__name__)

_MAX_WAIT = 120.0  # longest single backoff, even when a server asks for more
_POOL_SIZE = 8  # connections per client (see Runner.__init__)
_FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class AttemptTimeout(Exception):
    """No complete reply within --timeout (connect, send and every read together): retried like a transient
    error."""


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, then Retry-After as seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    # openai's timeouts are connection errors
    return isinstance(exc, openai.APIConnectionError | MalformedResponse | AttemptTimeout)


def _congestion(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, openai.APITimeoutError | AttemptTimeout)


@dataclass(slots=True)
class RunStats:
    sent: int = 0  # HTTP attempts, retries included
    done: int = 0
    failures: int = 0  # rows whose status is not ok
    spent: float = 0.0  # the artifact's total: earlier runs (from the journal) + this one
    spent_before: float = 0.0
    in_flight_cost: float = 0.0
    reasks: int = 0
    tokens: int = 0
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Ask:
    """One ask of a row: the request body it sends, and how many HTTP attempts it took (retries included)."""

    req: DescriptionRequest
    client: openai.AsyncOpenAI
    body: bytes
    attempts: int = 0


@dataclass(slots=True)
class _Progress:
    """The run's progress bar; its postfix (tokens/s, cost, failures, window) is redrawn twice a second."""

    bar: Any
    started: float = field(default_factory=time.monotonic)
    last: float = 0.0

    def update(self, s: RunStats, window: AIMDWindow) -> None:
        self.bar.update(1)
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(
                f"tok/s={s.tokens / max(now - self.started, 1e-9):.0f} cost=${s.spent:.4f} "
                f"fail={s.failures} window={int(window.limit)}",
                refresh=False,
            )


def make_clients(cfg: DescribeConfig) -> list[openai.AsyncOpenAI]:
    """One client per _POOL_SIZE workers on the openai client's own transport, because httpcore scans its
    whole pool on every request and response (one pool of 64 connections costs more CPU than the HTTP
    exchange itself). With --lean-http (plain-http endpoints only): one client on the lean transport,
    which saves client CPU only above a few hundred requests/s and ignores proxy settings."""
    lean = cfg.lean_http
    return [
        openai.AsyncOpenAI(
            api_key=cfg.api_key or "not-needed",  # local servers take any key
            base_url=cfg.base_url,
            max_retries=0,  # tenacity retries, so every attempt is counted
            timeout=cfg.timeout,
            http_client=httpx2.AsyncClient(transport=LeanTransport(), timeout=cfg.timeout) if lean else None,
        )
        for _ in range(1 if lean else -(-cfg.concurrency // _POOL_SIZE))
    ]


class Runner:
    def __init__(self, cfg: DescribeConfig, price: Price, journal: Journal):
        self.cfg, self.price, self.journal = cfg, price, journal
        self.window = AIMDWindow(cfg.concurrency)
        self.rpm = TokenBucket(cfg.rpm) if cfg.rpm else None
        self.tpm = TokenBucket(cfg.tpm) if cfg.tpm else None
        spent = journal.spent()
        self.stats = RunStats(spent=spent, spent_before=spent)
        self.stopping = False
        self.clients = make_clients(cfg)

    # ---- one attempt --------------------------------------------------------------------------
    async def _attempt(self, req: DescriptionRequest, client: openai.AsyncOpenAI, body: bytes) -> Completion:
        if self.rpm:
            await self.rpm.take(1)
        if self.tpm:
            await self.tpm.take(req.prompt_tokens + self.cfg.max_tokens)
        await self.window.acquire()
        self.stats.sent += 1
        try:
            try:
                # client.post is the official client's own transport (auth, base URL, errors by status)
                # without chat.completions.create's TypedDict transform, deep copies and pydantic model
                # build, which cost more CPU than the HTTP exchange; `parse_completion` checks the reply
                # instead.
                async with asyncio.timeout(self.cfg.timeout):
                    reply = await client.post("/chat/completions", cast_to=object, content=body)
            except TimeoutError:
                raise AttemptTimeout(f"no complete reply within --timeout {self.cfg.timeout:g} s") from None
            except ValueError as err:  # the body was not JSON
                raise MalformedResponse(f"unparsable reply: {err}") from None
            completion = parse_completion(reply)
        except BaseException as exc:
            if _congestion(exc):
                self.window.congestion()
            raise
        finally:
            self.window.release()
        self.window.success()
        return completion

    def _delay(self, exc: BaseException | None, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        asked = retry_after(exc) if exc is not None else None
        if asked is not None:
            return min(_MAX_WAIT, asked + random.uniform(0, 0.1 * asked + 0.01))  # jitter spreads the herd
        # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
        return random.uniform(0, min(_MAX_WAIT, self.cfg.backoff * 2 ** (attempts - 1)))

    # ---- one ask: one HTTP request with its retries ---------------------------------------------
    async def _send(self, ask: _Ask) -> Completion:
        ask.attempts += 1
        return await self._attempt(ask.req, ask.client, ask.body)

    async def ask(
        self, req: DescriptionRequest, client: openai.AsyncOpenAI, k: int, url: str | None = None
    ) -> DescriptionResult:
        """Ask k of one row (0 = the first; k > 0 re-asks with cfg.sampling(k)); `url`: its image."""
        started = time.monotonic()
        messages = request_messages(req, url)
        body = json.dumps({"model": self.cfg.model, "messages": messages, **self.cfg.sampling(k)}).encode()
        ask = _Ask(req, client, body)

        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            log.debug(
                "%s: retry after %s", req.image, error_text(state.outcome.exception(), self.cfg.api_key)
            )

        try:
            try:
                # The first attempt runs outside tenacity: its bookkeeping is ~10% of the client's CPU per
                # request, and most requests succeed at once.
                completion = await self._send(ask)
            except Exception as first:
                if not is_transient(first) or self.cfg.max_retries == 0:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self._delay(first, ask.attempts))
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(self.cfg.max_retries),
                    wait=lambda state: self._delay(state.outcome.exception(), ask.attempts),
                    retry=retry_if_exception(is_transient),
                    before_sleep=before_sleep,
                    reraise=True,
                )
                completion = await retrying(self._send, ask)
        except _FATAL as exc:
            raise PipelineError(
                f"{public_base_url(self.cfg.base_url)}: {error_text(exc, self.cfg.api_key)} (check the key, "
                f"model and --base-url; finished rows are kept in the journal)"
            ) from None
        except (openai.APIError, MalformedResponse, AttemptTimeout) as exc:
            return DescriptionResult(
                **request_fields(req),
                description=None,
                status="error",
                attempts=ask.attempts,
                latency_s=round(time.monotonic() - started, 4),
                error=error_text(exc, self.cfg.api_key),
            )
        return completion_result(
            req,
            completion,
            self.cfg.gate,
            cost_usd=reply_cost(req, completion, self.price, self.cfg.max_tokens),
            attempts=ask.attempts,
            latency_s=round(time.monotonic() - started, 4),
            response_id=completion.id,
        )

    # ---- one row: its asks, the best one kept -------------------------------------------------------
    def affordable(self, worst: float) -> bool:
        s = self.stats
        return self.cfg.max_cost is None or s.spent + s.in_flight_cost + worst <= self.cfg.max_cost

    async def describe_one(self, req: DescriptionRequest, client: openai.AsyncOpenAI) -> DescriptionResult:
        """Ask, and re-ask an invalid / truncated reply up to --retry-invalid times while the budget lasts;
        the row is its best ask, with the attempts, tokens and cost of all of them."""
        url, problem = await asyncio.to_thread(render_image, req) if req.image_input else (None, None)
        if problem:
            return unsendable_result(req, problem)
        worst = self.price.cost(req.prompt_tokens, self.cfg.max_tokens)
        best: DescriptionResult | None = None
        attempts = prompt_tokens = completion_tokens = 0
        cost = latency = 0.0
        for k in range(1 + self.cfg.retry_invalid):
            if k and (self.stopping or not self.affordable(worst)):
                break
            self.stats.in_flight_cost += worst
            try:
                result = await self.ask(req, client, k, url)
            finally:
                self.stats.in_flight_cost -= worst
            self.stats.spent += result.cost_usd
            self.stats.reasks += k > 0
            self.journal.record_ask(result, k, self.cfg.sampling(k))
            attempts += result.attempts
            prompt_tokens += result.prompt_tokens
            completion_tokens += result.completion_tokens
            cost += result.cost_usd
            latency += result.latency_s
            if best is None or RANK[result.status] < RANK[best.status]:
                best = result
            if result.status not in ("invalid", "truncated"):
                break
        best.attempts, best.prompt_tokens, best.completion_tokens = attempts, prompt_tokens, completion_tokens
        best.cost_usd, best.latency_s = cost, round(latency, 4)
        return best

    # ---- the run ------------------------------------------------------------------------------
    async def run(self, todo: list[DescriptionRequest]) -> None:
        queue = iter(todo)  # one shared iterator: each request is taken by exactly one worker
        shown = _Progress(progress(total=len(todo), desc="describe", unit="req"))
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(min(self.cfg.concurrency, len(todo))):
                    client = self.clients[(i // _POOL_SIZE) % len(self.clients)]
                    group.create_task(self._worker(queue, client, shown))
        except* Exception as group_error:  # one worker's error (a fatal HTTP status) stops them all
            raise group_error.exceptions[0] from None
        finally:
            shown.bar.close()
            for client in self.clients:
                await client.close()

    async def _worker(
        self, queue: Iterator[DescriptionRequest], client: openai.AsyncOpenAI, shown: _Progress
    ) -> None:
        for req in queue:
            if not self.affordable(self.price.cost(req.prompt_tokens, self.cfg.max_tokens)):
                self.stopping = True
            if self.stopping:
                return
            result = await self.describe_one(req, client)
            self.journal.record(result)  # the moment it arrives: a crash after this loses nothing
            s = self.stats
            s.done += 1
            s.tokens += result.prompt_tokens + result.completion_tokens
            s.statuses[result.status] = s.statuses.get(result.status, 0) + 1
            s.failures += result.status != "ok"
            shown.update(s, self.window)


def run_requests(
    todo: list[DescriptionRequest], cfg: DescribeConfig, price: Price, journal: Journal
) -> dict[str, Any]:
    """Send every request (journaling each result as it arrives); the run's own numbers."""
    if not todo:
        return {"requests_sent": 0}
    runner = Runner(cfg, price, journal)
    started, cpu = time.monotonic(), time.process_time()
    asyncio.run(runner.run(todo))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    s = runner.stats
    stats = {
        "requests_sent": s.sent,
        "retries": s.retries,
        "rows_done": s.done,
        "reasks": s.reasks,
        "spent_usd": round(s.spent - s.spent_before, 6),
        "spent_total_usd": round(s.spent, 6),
        "requests_per_s": round(s.done / elapsed, 2) if elapsed > 0 else None,
        "window_decreases": runner.window.decreases,
        "client_cpu_ms_per_request": round(1000 * cpu / s.sent, 3) if s.sent else None,
    }
    if runner.stopping:
        raise PipelineError(
            f"stopped at --max-cost ${cfg.max_cost} (the artifact's total): spent ${s.spent:.4f} in all, "
            f"${s.spent - s.spent_before:.4f} this run, {s.done} of {len(todo)} rows done; the journal is "
            f"kept, re-run with a higher --max-cost to continue"
        )
    return stats
