"""The request/reply codec of describe, shared by the live runner (openai_backend.py) and --batch (batch.py):
what a request sends, what a reply's fields are, and the row a reply (or a request never sent) becomes.

    url, problem = render_image(req)                     # the row's image, off the event loop
    body = {"model": ..., "messages": request_messages(req, url), ...}
    c = parse_completion(reply)                          # MalformedResponse when it is not a chat completion
    row = completion_result(req, c, gate, cost_usd=reply_cost(req, c, price, max_tokens), attempts=1,
                            response_id=c.id)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import openai

from pipeline.artifacts.descriptions import DescriptionResult
from pipeline.describe.config import DescriptionRequest, scrub
from pipeline.describe.image_input import image_url, with_image
from pipeline.describe.pricing import MAX_REQUEST_TOKENS, Price
from pipeline.describe.validate import Gate, judge
from pipeline.instances import instances


class MalformedResponse(Exception):
    """A 200 reply that is not a chat completion (bad JSON, no choices): retried like a transient error."""


@dataclass(slots=True)
class Usage:
    """A reply's token counts as far as they can be trusted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False  # both counts reported (else the reply costs its worst case)
    problem: str | None = None  # a count that is not one a request can have (then both are 0)


@dataclass(slots=True)
class Completion:
    id: str | None
    text: str | None
    finish_reason: str | None
    usage: Usage


def read_usage(usage: Any) -> Usage:
    """A reply's `usage`: each count an integer in 0..MAX_REQUEST_TOKENS, or absent (some local servers
    report none); anything else is a problem, never a number to add to the spending."""
    if usage is None:
        return Usage()
    if not isinstance(usage, dict):
        return Usage(problem=f"usage is {type(usage).__name__}, not an object")
    counts = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if value is None:
            continue
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or not 0 <= value <= MAX_REQUEST_TOKENS:
            return Usage(problem=f"{key} {value!r} is not a token count in 0..{MAX_REQUEST_TOKENS:,}")
        counts[key] = int(value)
    return Usage(**counts, counted=len(counts) == 2)


def parse_completion(reply: Any) -> Completion:
    """The fields we keep from a chat.completion object; MalformedResponse when it is not one. A malformed
    usage is kept as its problem (the reply was paid for: the row is an error, not a retry)."""
    try:
        choice = reply["choices"][0]
        text = (choice.get("message") or {}).get("content")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"content is {type(text).__name__}")
        return Completion(
            id=reply.get("id"),
            text=text,
            finish_reason=choice.get("finish_reason"),
            usage=read_usage(reply.get("usage")),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise MalformedResponse(f"not a chat completion ({type(err).__name__}: {err})") from None


def reply_cost(req: DescriptionRequest, c: Completion, price: Price, max_tokens: int) -> float:
    """What a reply cost: its usage at the price, or the worst case the budget reserved for it (prompt
    estimate + max_tokens) when it reported no usage we can trust."""
    if c.usage.counted:
        return price.cost(c.usage.prompt_tokens, c.usage.completion_tokens)
    return price.cost(req.prompt_tokens, max_tokens)


def error_text(exc: BaseException, api_key: str | None) -> str:
    if isinstance(exc, openai.APIStatusError):
        return scrub(f"HTTP {exc.status_code}: {exc.message}", api_key)[:500]
    return scrub(f"{type(exc).__name__}: {exc}", api_key)[:500]


def request_fields(req: DescriptionRequest) -> dict[str, Any]:
    """The fields of a result row that identify its request (live and batch rows alike)."""
    return {
        "cache_key": req.cache_key,
        "image": req.image,
        "source": req.source,
        "sample": req.sample,
        "model": req.model,
        "template": req.template,
        "template_hash": req.template_hash,
        "image_input": req.image_input.record() if req.image_input else None,
    }


def unsendable_result(req: DescriptionRequest, reason: str) -> DescriptionResult:
    """The error row of a request that was never sent (its image is missing or cannot be read)."""
    fields = request_fields(req)
    return DescriptionResult(**fields, description=None, status="error", error=f"not sent: {reason}")


def render_image(req: DescriptionRequest) -> tuple[str | None, str | None]:
    """(image_url.url, None) for a row with an image, (None, why) when it cannot be sent, (None, None) for a
    text-only row. Reads and resizes the file: call it off the event loop."""
    inp = req.image_input
    if inp is None:
        return None, None
    if inp.problem:
        return None, inp.problem
    ann = req.annotation
    people = instances(ann)  # crowd regions are not drawn: the numbers are the prompt's instance numbers
    kps = np.stack([p.keypoints for p in people]) if people else np.zeros((0, ann.skeleton.num_joints, 3))
    try:
        return image_url(inp, kps, edges=ann.skeleton.edges), None
    except OSError as err:
        return None, f"image {inp.name!r} cannot be sent ({type(err).__name__}: {err})"


def request_messages(req: DescriptionRequest, url: str | None) -> list[dict[str, Any]]:
    """The messages a request sends: the image (when there is one) after the user message's text."""
    return req.messages if url is None else with_image(req.messages, url, req.image_input.settings.detail)


def completion_result(
    req: DescriptionRequest,
    c: Completion,
    gate: Gate,
    *,
    cost_usd: float,
    attempts: int,
    latency_s: float = 0.0,
    response_id: str | None,
) -> DescriptionResult:
    """A reply judged into its row: ok / truncated / refused / invalid, with usage and cost; an error row when
    its usage is malformed (an endpoint whose accounting is broken is not trusted with the text either)."""
    if c.usage.problem:
        status = "error"
        reason = f"malformed usage: {c.usage.problem} (charged at its worst case ${cost_usd:.6f})"
    else:
        status, reason = judge(
            c.text, c.finish_reason, req.annotation, gate, prompt=req.prompt, facts=req.facts,
            saw_image=req.image_input is not None,
        )  # fmt: skip
    return DescriptionResult(
        **request_fields(req),
        description=c.text.strip() if c.text and c.text.strip() and status != "error" else None,
        status=status,
        finish_reason=c.finish_reason,
        prompt_tokens=c.usage.prompt_tokens,
        completion_tokens=c.usage.completion_tokens,
        cost_usd=cost_usd,
        attempts=attempts,
        latency_s=latency_s,
        error=reason,
        response_id=response_id,
    )
