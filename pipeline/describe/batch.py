"""--batch: the same requests through the OpenAI Batch API (JSONL upload, poll, download), same journal.

    focus-pipeline describe --annotations mpii --backend openai --batch --max-cost 20

Each line's custom_id is its cache key, so results land in the journal exactly like live replies. Every
submitted batch id is journaled before polling starts: a run that is stopped while waiting polls the same
batch again when re-run instead of paying for a second one. Both the output file and the error file are
read; failed lines (non-200 status, batch_expired, missing) are resubmitted in a new batch up to
--max-retries times, then recorded with status error. Batch prices are half the live ones. Usage is checked
as for live replies (codec.parse_completion): a malformed one is an error row charged at its worst case.

With --with-image each line carries its image (a data URL of about 50-150 KB for a 768 px JPEG, or the
hosted URL), so an input file is also cut at BATCH_FILE_BYTES (the API takes files up to 200 MB); a row whose
image cannot be rendered is an error row at once and is not submitted.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import openai

from pipeline.artifacts.descriptions import DescriptionResult
from pipeline.describe.codec import (
    MalformedResponse,
    completion_result,
    parse_completion,
    render_image,
    reply_cost,
    request_fields,
    request_messages,
    unsendable_result,
)
from pipeline.describe.config import DescribeConfig, DescriptionRequest, scrub
from pipeline.describe.journal import Journal
from pipeline.describe.pricing import Price
from pipeline.errors import PipelineError
from pipeline.log import progress

log = logging.getLogger(__name__)

BATCH_DISCOUNT = 0.5  # https://platform.openai.com/docs/guides/batch: 50% of the synchronous price
_TERMINAL = ("completed", "failed", "expired", "cancelled")
BATCH_FILE_BYTES = 190 * 2**20  # https://platform.openai.com/docs/guides/batch: input files up to 200 MB


def _line(req: DescriptionRequest, cfg: DescribeConfig, url: str | None = None) -> str:
    body = {"model": cfg.model, "messages": request_messages(req, url), **cfg.sampling()}
    return json.dumps(
        {"custom_id": req.cache_key, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


def _base(req: DescriptionRequest, attempts: int) -> dict[str, Any]:
    return {**request_fields(req), "attempts": attempts}


def _result(
    req: DescriptionRequest, line: dict[str, Any], price: Price, attempts: int, cfg: DescribeConfig
) -> tuple[DescriptionResult, bool]:
    """A result row from one output/error line, and whether it is a reply (paid for: journaled as an ask,
    never submitted again); status error (scrubbed text) for a failed line."""
    base = _base(req, attempts)
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code") != 200:
        err = line.get("error") or (response.get("body") or {}).get("error") or {}
        code = err.get("code") or f"HTTP {response.get('status_code')}"
        error = scrub(f"{code}: {err.get('message')}", cfg.api_key)
        return DescriptionResult(**base, description=None, status="error", error=error), False
    try:
        c = parse_completion(response.get("body"))
    except MalformedResponse as exc:
        return DescriptionResult(**base, description=None, status="error", error=str(exc)), False
    result = completion_result(
        req,
        c,
        cfg.gate,
        cost_usd=reply_cost(req, c, price, cfg.max_tokens) * BATCH_DISCOUNT,
        attempts=attempts,
        response_id=response.get("request_id") or line.get("id"),
    )
    return result, True


class BatchRunner:
    def __init__(self, cfg: DescribeConfig, price: Price, journal: Journal):
        self.cfg, self.price, self.journal = cfg, price, journal
        self.client = openai.OpenAI(
            api_key=cfg.api_key or "not-needed",
            base_url=cfg.base_url,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout,
        )
        self.submitted = 0
        self.batches = 0

    def files(self, reqs: list[DescriptionRequest]) -> Iterator[tuple[list[DescriptionRequest], bytes]]:
        """(requests, JSONL bytes) of input files under BATCH_FILE_BYTES; a row whose image cannot be
        rendered is journaled as an error here and left out."""
        group, lines, size = [], [], 0
        for r in reqs:
            url, problem = render_image(r)
            if problem:
                self.journal.record(unsendable_result(r, problem))
                continue
            line = (_line(r, self.cfg, url) + "\n").encode()
            if group and size + len(line) > BATCH_FILE_BYTES:
                yield group, b"".join(lines)
                group, lines, size = [], [], 0
            group.append(r)
            lines.append(line)
            size += len(line)
        if group:
            yield group, b"".join(lines)

    def submit(self, reqs: list[DescriptionRequest], data: bytes) -> str:
        upload = self.client.files.create(file=("describe.jsonl", io.BytesIO(data)), purpose="batch")
        batch = self.client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        self.journal.add_batch(batch.id, [r.cache_key for r in reqs])  # before waiting: never submit twice
        self.submitted += len(reqs)
        self.batches += 1
        log.info("submitted batch %s: %d requests", batch.id, len(reqs))
        return batch.id

    def wait(self, batch_id: str) -> Any:
        while True:
            batch = self.client.batches.retrieve(batch_id)
            if batch.status in _TERMINAL:
                return batch
            time.sleep(self.cfg.poll_interval)

    def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self.client.files.content(file_id).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def collect(
        self, batch_id: str, keys: list[str], by_key: dict[str, DescriptionRequest], attempts: Counter
    ) -> list[str]:
        """Journal every line of a finished batch; the keys that failed and may be sent again."""
        batch = self.wait(batch_id)
        seen, retry = set(), []
        for line in self.lines(batch.output_file_id) + self.lines(batch.error_file_id):
            key = line.get("custom_id")
            if key not in by_key or key in seen:
                continue
            seen.add(key)
            result, replied = _result(by_key[key], line, self.price, attempts[key], self.cfg)
            if replied:
                self.journal.record_ask(result, 0, self.cfg.sampling())
            if result.status == "error" and not replied and attempts[key] <= self.cfg.max_retries:
                retry.append(key)
            else:
                self.journal.record(result)
        why = scrub(
            f"batch {batch_id} ended {batch.status}" + (f": {batch.errors}" if batch.errors else ""),
            self.cfg.api_key,
        )
        for key in keys:
            if key in by_key and key not in seen:  # a failed/cancelled batch, or a line it never reported
                if attempts[key] <= self.cfg.max_retries:
                    retry.append(key)
                else:
                    base = _base(by_key[key], attempts[key])
                    error = f"{why}; no result for this line"
                    self.journal.record(
                        DescriptionResult(**base, description=None, status="error", error=error)
                    )
        self.journal.close_batch(batch_id)
        return retry

    def run(self, todo: list[DescriptionRequest]) -> None:
        by_key = {r.cache_key: r for r in todo}
        attempts: Counter[str] = Counter()
        pending = [(b, keys) for b, keys in self.journal.open_batches() if any(k in by_key for k in keys)]
        waiting = {k for _, keys in pending for k in keys}
        queue = [k for k in by_key if k not in waiting]
        bar = progress(total=len(todo), desc="describe (batch)", unit="req")
        while queue or pending:
            if queue:
                budget = self._affordable([by_key[k] for k in queue])
                for start in range(0, len(budget), self.cfg.batch_size):
                    for chunk, data in self.files(budget[start : start + self.cfg.batch_size]):
                        for r in chunk:
                            attempts[r.cache_key] += 1
                        pending.append((self.submit(chunk, data), [r.cache_key for r in chunk]))
                stopped = len(budget) < len(queue)
                queue = []
            else:
                stopped = False
            retry: list[str] = []
            for batch_id, keys in pending:
                before = len(self.journal)
                retry += self.collect(batch_id, keys, by_key, attempts)
                bar.update(len(self.journal) - before)
            pending = []
            if stopped:
                bar.close()
                raise PipelineError(
                    f"stopped at --max-cost ${self.cfg.max_cost} (the artifact's total): the journal is "
                    f"kept, re-run with a higher --max-cost to continue"
                )
            queue = retry
        bar.close()

    def _affordable(self, reqs: list[DescriptionRequest]) -> list[DescriptionRequest]:
        """The prefix whose worst-case cost (prompt + max_tokens, at batch prices) fits what --max-cost
        leaves after the artifact's earlier spending."""
        if self.cfg.max_cost is None:
            return reqs
        spent, out = self.journal.spent(), []
        for r in reqs:
            spent += self.price.cost(r.prompt_tokens, self.cfg.max_tokens) * BATCH_DISCOUNT
            if spent > self.cfg.max_cost:
                break
            out.append(r)
        return out


def run_batch(
    todo: list[DescriptionRequest], cfg: DescribeConfig, price: Price, journal: Journal
) -> dict[str, Any]:
    if not todo:
        return {"requests_sent": 0, "batches": 0}
    runner = BatchRunner(cfg, price, journal)
    try:
        runner.run(todo)
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
        raise PipelineError(
            f"Batch API: HTTP {exc.status_code}: {scrub(exc.message, cfg.api_key)} (submitted batches are "
            f"kept in the journal and polled again on the next run)"
        ) from None
    finally:
        runner.client.close()
    return {"requests_sent": runner.submitted, "batches": runner.batches}
