"""`focus-pipeline describe`: annotations/<name> -> descriptions/<name> (see pipeline.describe).

    focus-pipeline describe --annotations mpii --backend rules
    OPENAI_API_KEY=... focus-pipeline describe --annotations mpii --backend openai --model gpt-4o-mini \
        --template grounded --concurrency 32 --max-cost 5 --dry-run
    focus-pipeline describe --annotations mpii --backend openai --base-url http://localhost:8000/v1 \
        --model llama-3-8b --retry-failed
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.app import app, state
from pipeline.describe import DescribeConfig, Shard, describe
from pipeline.describe.validate import Gate
from pipeline.records import FAILED_STATUSES


@app.command("describe")
def _describe(
    *,
    annotations: Annotated[str, typer.Option(help="Name of the annotations artifact to describe.")],
    backend: Annotated[
        str,
        typer.Option(
            help="openai (any OpenAI-compatible endpoint), rules (offline), or auto: openai when "
            "OPENAI_API_KEY, --base-url or --model is given, else rules."
        ),
    ] = "auto",
    model: Annotated[
        str | None, typer.Option(help="Model name sent to the endpoint.  [default: gpt-4o-mini]")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(envvar="OPENAI_BASE_URL", help="Endpoint, e.g. http://localhost:8000/v1 (vLLM)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="OPENAI_API_KEY", show_default=False, help="API key (never stored or logged)."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Prompt family under prompts/ (paper, grounded, rules) or a folder with system.j2 + user.j2 "
            "(or description.j2 for rules). Default: paper (openai), rules (rules)."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Sampling temperature. Default: the template's defaults.json (paper: 0.5), else 0.5."
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Completion token limit per request. Default: the template's (paper: 512), else 512."
        ),
    ] = None,
    frequency_penalty: Annotated[
        float | None,
        typer.Option(help="Frequency penalty. Default: the template's (paper: 1.0), else not sent."),
    ] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (not sent when unset).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (not sent when unset).")] = None,
    samples: Annotated[
        int, typer.Option(help="Descriptions per image, kept apart by the sample column.")
    ] = 1,
    concurrency: Annotated[
        int, typer.Option(help="Requests in flight at most (AIMD backs off on 429/5xx).")
    ] = 16,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute limit.")] = None,
    tpm: Annotated[float | None, typer.Option(help="Tokens per minute limit (prompt + max_tokens).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request attempt.")] = 60.0,
    lean_http: Annotated[
        bool,
        typer.Option(
            help="A lean HTTP/1.1 transport for a plain-http local server (less client CPU above a few "
            "hundred requests/s; ignores proxy settings). Default: the openai client's own transport."
        ),
    ] = False,
    max_retries: Annotated[int, typer.Option(help="Retries per request after the first attempt.")] = 5,
    backoff: Annotated[
        float,
        typer.Option(help="First retry wait in seconds (exponential, jittered; a Retry-After header wins)."),
    ] = 0.5,
    max_cost: Annotated[
        float | None,
        typer.Option(
            help="USD for this artifact, all runs together (the journal counts what was spent): no request "
            "starts past it, the run stops resumably. Needs a known price."
        ),
    ] = None,
    price_input: Annotated[
        float | None, typer.Option(help="USD per 1M prompt tokens (overrides the table).")
    ] = None,
    price_output: Annotated[float | None, typer.Option(help="USD per 1M completion tokens.")] = None,
    prices: Annotated[
        str | None, typer.Option(help="JSON file {model: {input, output}} of USD per 1M tokens.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Describe only the first K images.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: this machine's share of the images (by hash).")
    ] = None,
    retry: Annotated[
        list[str] | None, typer.Option(help="Send rows with this status again (repeatable).")
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="Send every row that is not ok again.")] = False,
    retry_invalid: Annotated[
        int,
        typer.Option(
            help="Re-ask a reply judged invalid or truncated up to N times (seed + k, warmer); every ask is "
            "journaled and paid for, the row keeps its best."
        ),
    ] = 0,
    min_pose_claims: Annotated[
        int,
        typer.Option(help="Checkable pose claims a description needs to be ok (capped at what is known)."),
    ] = Gate().min_pose_claims,
    max_contradicted: Annotated[
        float, typer.Option(help="Share of checked claims that may contradict the keypoints.")
    ] = Gate().max_contradicted,
    max_error_share: Annotated[
        float,
        typer.Option(help="More error rows than this share: not published, non-zero exit (journal kept)."),
    ] = 0.02,
    allow_partial: Annotated[
        bool, typer.Option(help="Publish even when more rows than --max-error-share failed.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Render and count tokens, report cache hits and estimated cost; send and write nothing."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Discard the journal and start over.")] = False,
    batch: Annotated[bool, typer.Option(help="Use the OpenAI Batch API (half price, within 24 h).")] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between two batch status checks.")] = 30.0,
    name: Annotated[str | None, typer.Option(help="Artifact name (default: the annotations name).")] = None,
) -> None:
    """Describe every image's pose: one single-shot LLM prompt per image, or the offline rules describer."""
    statuses = tuple(dict.fromkeys([*(retry or []), *(FAILED_STATUSES if retry_failed else ())]))
    cfg = DescribeConfig(
        annotations=annotations, backend=backend, name=name, model=model, base_url=base_url, api_key=api_key,
        template=template, temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed,
        frequency_penalty=frequency_penalty, lean_http=lean_http,
        samples=samples, concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout, max_retries=max_retries,
        backoff=backoff, max_cost=max_cost, price_input=price_input, price_output=price_output, prices=prices,
        limit=limit, shard=Shard.parse(shard) if shard else None, retry=statuses, dry_run=dry_run,
        overwrite=overwrite, batch=batch, poll_interval=poll_interval, retry_invalid=retry_invalid,
        gate=Gate(min_pose_claims=min_pose_claims, max_contradicted=max_contradicted),
        max_error_share=max_error_share, allow_partial=allow_partial,
    )  # fmt: skip
    summary = describe(cfg, state.store)
    typer.echo(json.dumps(summary, indent=2))
