"""`focus-pipeline describe`: annotations/<name> -> descriptions/<name> (see pipeline.describe).

    focus-pipeline describe --annotations mpii --backend rules
    OPENAI_API_KEY=... focus-pipeline describe --annotations mpii --backend openai --model gpt-4o-mini \
        --template grounded --concurrency 32 --max-cost 5 --dry-run
    focus-pipeline describe --annotations mpii --backend openai --base-url http://localhost:8000/v1 \
        --model llama-3-8b --retry-failed
    focus-pipeline describe --annotations mpii --model gpt-4o --with-image --images mpii/images \
        --image-mark box --dry-run
    focus-pipeline describe --annotations coco --backend captions --name coco-captions
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.artifacts.descriptions import FAILED_STATUSES
from pipeline.cli.app import PanelCommand, app, state
from pipeline.describe import DescribeConfig, Shard, describe
from pipeline.describe.validate import Gate
from pipeline.errors import PipelineError

# --help groups the options into these panels, in the order of the command's parameters.
INPUT = "Input"
MODEL = "Model and endpoint"
PROMPT = "Prompt and sampling"
IMAGE = "Image input (--with-image)"
BUDGET = "Budget"
GATE = "Quality gate"
RUN = "Run control"
OUTPUT = "Output and re-runs"

# The command's options, one alias each, so the command itself reads as option -> config -> call.
Annotations = Annotated[
    str, typer.Option(help="Name of the annotations artifact to describe.", rich_help_panel=INPUT)
]
Backend = Annotated[
    str,
    typer.Option(
        help="openai (any OpenAI-compatible endpoint), rules (offline), captions (the images' human "
        "captions from convert --captions, no LLM), or auto: openai when OPENAI_API_KEY, --base-url or "
        "--model is given, else rules.",
        rich_help_panel=MODEL,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(help="Model name sent to the endpoint.  [default: gpt-4o-mini]", rich_help_panel=MODEL),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        envvar="OPENAI_BASE_URL",
        help="Endpoint, e.g. http://localhost:8000/v1 (vLLM).",
        rich_help_panel=MODEL,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        envvar="OPENAI_API_KEY",
        show_default=False,
        help="API key (never stored or logged).",
        rich_help_panel=MODEL,
    ),
]
Template = Annotated[
    str | None,
    typer.Option(
        help="Prompt family under prompts/ (paper, grounded, rules) or a folder with system.j2 + user.j2 "
        "(or description.j2 for rules). Default: paper (openai), rules (rules).",
        rich_help_panel=PROMPT,
    ),
]
Temperature = Annotated[
    float | None,
    typer.Option(
        help="Sampling temperature. Default: the template's defaults.json (paper: 0.5), else 0.5.",
        rich_help_panel=PROMPT,
    ),
]
MaxTokens = Annotated[
    int | None,
    typer.Option(
        help="Completion token limit per request. Default: the template's (paper: 512), else 512.",
        rich_help_panel=PROMPT,
    ),
]
FrequencyPenalty = Annotated[
    float | None,
    typer.Option(
        help="Frequency penalty. Default: the template's (paper: 1.0), else not sent.", rich_help_panel=PROMPT
    ),
]
TopP = Annotated[
    float | None, typer.Option(help="Nucleus sampling (not sent when unset).", rich_help_panel=PROMPT)
]
Seed = Annotated[
    int | None, typer.Option(help="Sampling seed (not sent when unset).", rich_help_panel=PROMPT)
]
Samples = Annotated[
    int, typer.Option(help="Descriptions per image, kept apart by the sample column.", rich_help_panel=PROMPT)
]
Concurrency = Annotated[
    int, typer.Option(help="Requests in flight at most (AIMD backs off on 429/5xx).", rich_help_panel=RUN)
]
Rpm = Annotated[float | None, typer.Option(help="Requests per minute limit.", rich_help_panel=RUN)]
Tpm = Annotated[
    float | None, typer.Option(help="Tokens per minute limit (prompt + max_tokens).", rich_help_panel=RUN)
]
Timeout = Annotated[
    float,
    typer.Option(
        help="Seconds one attempt may take in all: connect, send and the whole reply.", rich_help_panel=RUN
    ),
]
LeanHttp = Annotated[
    bool,
    typer.Option(
        help="A lean HTTP/1.1 transport for a plain-http local server (less client CPU above a few "
        "hundred requests/s; ignores proxy settings). Default: the openai client's own transport.",
        rich_help_panel=RUN,
    ),
]
MaxRetries = Annotated[
    int, typer.Option(help="Retries per request after the first attempt.", rich_help_panel=RUN)
]
Backoff = Annotated[
    float,
    typer.Option(
        help="First retry wait in seconds (exponential, jittered; a Retry-After header wins).",
        rich_help_panel=RUN,
    ),
]
MaxCost = Annotated[
    float | None,
    typer.Option(
        help="USD for this artifact, all runs together (the journal counts what was spent): no request "
        "starts past it, the run stops resumably. Needs a known price.",
        rich_help_panel=BUDGET,
    ),
]
PriceInput = Annotated[
    float | None, typer.Option(help="USD per 1M prompt tokens (overrides the table).", rich_help_panel=BUDGET)
]
PriceOutput = Annotated[
    float | None, typer.Option(help="USD per 1M completion tokens.", rich_help_panel=BUDGET)
]
Prices = Annotated[
    str | None,
    typer.Option(help="JSON file {model: {input, output}} of USD per 1M tokens.", rich_help_panel=BUDGET),
]
Limit = Annotated[int | None, typer.Option(help="Describe only the first K images.", rich_help_panel=INPUT)]
ShardOpt = Annotated[
    str | None, typer.Option(help="i/n: this machine's share of the images (by hash).", rich_help_panel=INPUT)
]
Retry = Annotated[
    list[str] | None,
    typer.Option(help="Send rows with this status again (repeatable).", rich_help_panel=OUTPUT),
]
RetryFailed = Annotated[
    bool, typer.Option(help="Send every row that is not ok again.", rich_help_panel=OUTPUT)
]
RetryInvalid = Annotated[
    int,
    typer.Option(
        help="Re-ask a reply judged invalid or truncated up to N times (seed + k, warmer); every ask is "
        "journaled and paid for, the row keeps its best.",
        rich_help_panel=GATE,
    ),
]
MinPoseClaims = Annotated[
    int,
    typer.Option(
        help="Checkable pose claims a description needs to be ok (capped at what is known).",
        rich_help_panel=GATE,
    ),
]
MaxContradicted = Annotated[
    float,
    typer.Option(help="Share of checked claims that may contradict the keypoints.", rich_help_panel=GATE),
]
MaxErrorShare = Annotated[
    float,
    typer.Option(
        help="More error rows than this share: not published, non-zero exit (journal kept).",
        rich_help_panel=OUTPUT,
    ),
]
AllowPartial = Annotated[
    bool,
    typer.Option(help="Publish even when more rows than --max-error-share failed.", rich_help_panel=OUTPUT),
]
DryRun = Annotated[
    bool,
    typer.Option(
        help="Render and count tokens, report cache hits and estimated cost; send and write nothing.",
        rich_help_panel=BUDGET,
    ),
]
Overwrite = Annotated[bool, typer.Option(help="Discard the journal and start over.", rich_help_panel=OUTPUT)]
Batch = Annotated[
    bool, typer.Option(help="Use the OpenAI Batch API (half price, within 24 h).", rich_help_panel=RUN)
]
PollInterval = Annotated[
    float, typer.Option(help="Seconds between two batch status checks.", rich_help_panel=RUN)
]
Name = Annotated[
    str | None, typer.Option(help="Artifact name (default: the annotations name).", rich_help_panel=OUTPUT)
]
WithImage = Annotated[
    bool,
    typer.Option(
        help="Send each image with its prompt (an OpenAI image_url content part) to a vision model; the "
        "template defaults to grounded-image (the keypoints and pose facts as grounding).",
        rich_help_panel=IMAGE,
    ),
]
Images = Annotated[
    str | None,
    typer.Option(
        metavar="DIR",
        help="Folder of the images (--with-image); links out of it are refused.",
        rich_help_panel=IMAGE,
    ),
]
ImageUrlBase = Annotated[
    str | None,
    typer.Option(
        help="Hosted images: send the URL base + image name instead of the bytes (the URL is the cache key).",
        rich_help_panel=IMAGE,
    ),
]
ImageSize = Annotated[
    int, typer.Option(help="Long side in pixels of the image sent (never upscaled).", rich_help_panel=IMAGE)
]
ImageDetail = Annotated[
    str,
    typer.Option(
        help="image_url detail: low, high or auto (auto is budgeted as high).", rich_help_panel=IMAGE
    ),
]
ImageMark = Annotated[
    str,
    typer.Option(
        help="Draw the annotated people on the image sent (numbered): none, box or skeleton.",
        rich_help_panel=IMAGE,
    ),
]
ImageFamily = Annotated[
    str | None,
    typer.Option(
        help="How the model counts image tokens (estimates, budgets): gpt-4o, gpt-4o-mini, gpt-4.1-mini, "
        "gpt-4.1-nano, o4-mini, qwen2-vl, llava-1.5, or one from --image-families. Default: by model name.",
        rich_help_panel=IMAGE,
    ),
]
ImageFamilies = Annotated[
    str | None,
    typer.Option(
        metavar="FILE", help="JSON of more image token families (same layout).", rich_help_panel=IMAGE
    ),
]
AssumeImageSize = Annotated[
    str,
    typer.Option(
        metavar="WxH", help="Size counted for an image whose size cannot be read.", rich_help_panel=IMAGE
    ),
]
BackgroundPeople = Annotated[
    str,
    typer.Option(
        help="People the annotations do not have (a crowd, another player): reject the description, or allow "
        "them as scene (their clauses are not checked as pose claims).",
        rich_help_panel=GATE,
    ),
]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PipelineError(f"--assume-image-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return w, h


@app.command("describe", cls=PanelCommand)
def _describe(
    *,
    annotations: Annotations,
    limit: Limit = None,
    shard: ShardOpt = None,
    backend: Backend = "auto",
    model: Model = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    template: Template = None,
    temperature: Temperature = None,
    max_tokens: MaxTokens = None,
    frequency_penalty: FrequencyPenalty = None,
    top_p: TopP = None,
    seed: Seed = None,
    samples: Samples = 1,
    with_image: WithImage = False,
    images: Images = None,
    image_url_base: ImageUrlBase = None,
    image_size: ImageSize = 768,
    image_detail: ImageDetail = "auto",
    image_mark: ImageMark = "none",
    image_family: ImageFamily = None,
    image_families: ImageFamilies = None,
    assume_image_size: AssumeImageSize = "1280x720",
    max_cost: MaxCost = None,
    price_input: PriceInput = None,
    price_output: PriceOutput = None,
    prices: Prices = None,
    dry_run: DryRun = False,
    retry_invalid: RetryInvalid = 0,
    min_pose_claims: MinPoseClaims = Gate().min_pose_claims,
    max_contradicted: MaxContradicted = Gate().max_contradicted,
    background_people: BackgroundPeople = "reject",
    concurrency: Concurrency = 16,
    rpm: Rpm = None,
    tpm: Tpm = None,
    timeout: Timeout = 60.0,
    lean_http: LeanHttp = False,
    max_retries: MaxRetries = 5,
    backoff: Backoff = 0.5,
    batch: Batch = False,
    poll_interval: PollInterval = 30.0,
    name: Name = None,
    overwrite: Overwrite = False,
    retry: Retry = None,
    retry_failed: RetryFailed = False,
    max_error_share: MaxErrorShare = 0.02,
    allow_partial: AllowPartial = False,
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
        gate=Gate(min_pose_claims=min_pose_claims, max_contradicted=max_contradicted,
                  background_people=background_people),
        max_error_share=max_error_share, allow_partial=allow_partial,
        with_image=with_image, images=images, image_url_base=image_url_base, image_size=image_size,
        image_detail=image_detail, image_mark=image_mark, image_family=image_family,
        image_families=image_families, assume_image_size=_size(assume_image_size),
    )  # fmt: skip
    summary = describe(cfg, state.store)
    typer.echo(json.dumps(summary, indent=2))
