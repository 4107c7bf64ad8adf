"""The describe stage: annotations/<name> -> descriptions/<name> (journal + descriptions.parquet + meta.json).

    from pipeline.describe import DescribeConfig, describe
    summary = describe(DescribeConfig(annotations="mpii", backend="rules"), store)

Every (image, sample) becomes a request with a content cache key; the journal in the artifact's staging
folder answers every key it already holds, the backend answers the rest, and the parquet is exported
from the journal, so a crashed or stopped run resumes where it stopped and a re-run pays nothing twice.
With --with-image each row also carries its image (pipeline.describe.image_input), whose bytes and sending
settings are part of the key.
Every reply is judged by the quality gate (pipeline.describe.validate); a run whose rows all failed, or more
than --max-error-share of them, is not published (the journal stays for the re-run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import annotations, descriptions
from pipeline.artifacts.descriptions import STATUSES, DescriptionResult
from pipeline.describe.captions import describe_captions
from pipeline.describe.config import (
    IMAGE_TEMPLATE,
    DescribeConfig,
    DescriptionRequest,
    is_local,
    public_base_url,
)
from pipeline.describe.image_input import JPEG_QUALITY, RENDERING, prepare
from pipeline.describe.journal import FILE as JOURNAL_FILE
from pipeline.describe.journal import Journal
from pipeline.describe.pricing import Price, estimate_prompt_tokens, price_for
from pipeline.describe.prompting import TemplateSet, image_context, load_template
from pipeline.describe.rules import rules_description
from pipeline.describe.validate import judge
from pipeline.errors import PipelineError
from pipeline.log import progress
from pipeline.records import ImageAnnotation
from pipeline.store import Recorded, Store

log = logging.getLogger(__name__)


def cache_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shard_of(image: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(image.encode()).digest()[:8], "big") % count


def select(rows: list[ImageAnnotation], cfg: DescribeConfig) -> list[ImageAnnotation]:
    if cfg.shard is not None:
        rows = [r for r in rows if shard_of(r.image, cfg.shard.count) == cfg.shard.index]
    return rows if cfg.limit is None else rows[: cfg.limit]


def build_requests(
    rows: list[ImageAnnotation], tpl: TemplateSet, cfg: DescribeConfig
) -> list[DescriptionRequest]:
    """Render every prompt (or rules description) and key it by everything that determines the answer;
    with --with-image, find, hash and size each row's image (pipeline.describe.image_input)."""
    rules = cfg.backend == "rules"
    model = "rules" if rules else cfg.model
    source = ("rules" if tpl.name == "rules" else f"rules/{tpl.name}") if rules else f"{cfg.model}/{tpl.name}"
    base = {"template_hash": tpl.hash}
    if not rules:
        base |= {"model": cfg.model, "sampling": cfg.sampling(), "base_url": public_base_url(cfg.base_url)}
    settings = cfg.image_settings()
    # What a prompt may say about the image (grounded-image: the marks drawn, the size the keypoints are in).
    image_vars = {"with_image": cfg.with_image, "image_mark": cfg.image_mark if cfg.with_image else "none"}
    out, with_facts = [], tpl.uses_facts
    for ann in progress(rows, desc="render", unit="img"):
        ctx = image_context(ann, with_facts=with_facts)
        recorded = (ann.width, ann.height) if ann.width and ann.height else None
        image = prepare(ann.image, settings, recorded) if settings else None
        if rules:
            text = rules_description(tpl, ctx)
            messages, tokens = None, 0
        else:
            size = list(image.source_size) if image and image.source_size else None
            text, messages = None, tpl.messages(ctx | image_vars | {"image_size": size})
            tokens = estimate_prompt_tokens(messages) + (image.tokens if image else 0)
        for sample in range(cfg.samples):
            payload = base | {"image": ann.image, "sample": sample, "messages": messages, "text": text}
            if image is not None:  # only image rows: a text-only key is what it always was
                payload["image_input"] = image.key()
            out.append(
                DescriptionRequest(
                    image=ann.image,
                    sample=sample,
                    source=source,
                    model=model,
                    template=tpl.name,
                    template_hash=tpl.hash,
                    cache_key=cache_key(payload),
                    annotation=ann,
                    facts=[p["facts"] for p in ctx["people"]] if with_facts else None,
                    messages=messages,
                    text=text,
                    prompt_tokens=tokens,
                    image_input=image,
                    key_payload=payload,
                )
            )
    return out


def carry_over(
    requests: list[DescriptionRequest], done: dict[str, DescriptionResult]
) -> list[DescriptionResult]:
    """Journal rows of an earlier version of the template files whose request equals today's, re-keyed.

    A key hashes the template files' hash beside the rendered messages, so any edit of a template folder (a
    comment, a branch for other skeletons) changes every key, even where the messages sent are byte for byte
    the same. Such a row was paid for: the key it had is today's payload with the hash it recorded, and a hit
    there proves the same messages, model, sampling, endpoint and image went out, so it answers again.
    """
    earlier = {r.template_hash for r in done.values() if r.template_hash} - {
        r.template_hash for r in requests
    }
    out = []
    for req in requests:
        if req.cache_key in done or req.key_payload is None:
            continue
        for old_hash in earlier:
            row = done.get(cache_key(req.key_payload | {"template_hash": old_hash}))
            if row is not None and row.template == req.template:
                out.append(dataclasses.replace(row, cache_key=req.cache_key, template_hash=req.template_hash))
                break
    if out:
        log.info("%d journal rows carried over from earlier versions of the template files", len(out))
    return out


def rules_result(req: DescriptionRequest, cfg: DescribeConfig) -> DescriptionResult:
    status, reason = judge(req.text, "stop", req.annotation, cfg.gate, facts=req.facts)
    return DescriptionResult(
        cache_key=req.cache_key,
        image=req.image,
        source=req.source,
        sample=req.sample,
        description=req.text or None,
        status=status,
        model=req.model,
        template=req.template,
        template_hash=req.template_hash,
        finish_reason="stop",
        attempts=1,
        error=reason,
    )


def rejudge(
    requests: list[DescriptionRequest], recorded: dict[str, DescriptionResult], cfg: DescribeConfig
) -> list[DescriptionResult]:
    """Journal rows answered by an earlier run, judged again by this run's gate (its thresholds or rules may
    have changed since): the ok / invalid rows whose verdict changes. Refused, truncated and error rows
    were decided by the reply's shape, not its content."""
    out = []
    for req in requests:
        row = recorded[req.cache_key]
        if row.status not in ("ok", "invalid"):
            continue
        status, reason = judge(
            row.description, row.finish_reason, req.annotation, cfg.gate, prompt=req.prompt, facts=req.facts,
            saw_image=req.image_input is not None,
        )  # fmt: skip
        if (status, reason) != (row.status, row.error):
            out.append(dataclasses.replace(row, status=status, error=reason))
    if out:
        log.info("%d journal rows change status under this run's quality gate", len(out))
    return out


def _load_rows(cfg: DescribeConfig, store: Store) -> list[ImageAnnotation]:
    rows = annotations.read(store, cfg.annotations)
    if not rows:
        path = store.path("annotations", cfg.annotations) / annotations.FILE
        raise PipelineError(f"{path}: no images to describe")
    return rows


def _template(cfg: DescribeConfig) -> TemplateSet:
    default = "rules" if cfg.backend == "rules" else IMAGE_TEMPLATE if cfg.with_image else "paper"
    tpl = load_template(cfg.template or default)
    if cfg.backend == "rules" and not tpl.is_rules:
        raise PipelineError(f"--template {tpl.folder}: the rules backend needs a description.j2 template")
    if cfg.backend == "openai" and not (tpl.folder / "user.j2").is_file():
        raise PipelineError(
            f"--template {tpl.folder}: the openai backend needs user.j2 (+ optional system.j2)"
        )
    return tpl


def _refuse_failed_run(
    cfg: DescribeConfig, counts: dict[str, Any], results: list[DescriptionResult], staging: Path
) -> None:
    """No silent success: a run whose rows all failed, more than --max-error-share of them, or that has no ok
    row at all, is not published (the journal stays in the staging folder, so a re-run sends only what is
    missing and nothing paid for is lost)."""
    errors = counts["error"]
    if not errors or (errors / counts["rows"] <= cfg.max_error_share):
        _refuse_no_ok_row(cfg, counts, results, staging)
        return
    first = next(r.error for r in results if r.status == "error")
    if errors == counts["rows"]:
        raise PipelineError(
            f"every request failed ({errors} rows, e.g. {first}); nothing published, the journal is kept in "
            f"{staging}: fix the cause (the endpoint, or the images) and re-run with --retry error"
        )
    if not cfg.allow_partial:
        raise PipelineError(
            f"{errors} of {counts['rows']} rows failed (> --max-error-share {cfg.max_error_share:g}; e.g. "
            f"{first}); not published, the journal is kept: re-run with --retry error, or pass "
            f"--allow-partial to publish them as they are"
        )
    log.warning("publishing with %d error rows of %d (--allow-partial)", errors, counts["rows"])


def _refuse_no_ok_row(
    cfg: DescribeConfig, counts: dict[str, Any], results: list[DescriptionResult], staging: Path
) -> None:
    """Replies that all failed the gate (invalid, refused, truncated) make a dataset with nothing in it."""
    if counts["ok"]:
        return
    by_status = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    first = next((f"{r.status}: {r.error}" for r in results if r.error), "no reason recorded")
    if not cfg.allow_partial:
        raise PipelineError(
            f"no row is ok ({by_status}; e.g. {first}); nothing published, the journal is kept in {staging}: "
            f"send them again with {' '.join(f'--retry {s}' for s in STATUSES if counts[s])} (or try "
            f"another --model or --template), or pass --allow-partial to publish them as they are"
        )
    log.warning("publishing with no ok row (%s; --allow-partial)", by_status)


def _existing_journal(store: Store, name: str) -> tuple[dict[str, DescriptionResult], float]:
    """What a run would find: the rows and spending of the staging journal of an interrupted run, else of
    the published one."""
    for folder in (
        store.staging_dir("descriptions", name),
        store.path("descriptions", name) if store.exists("descriptions", name) else None,
    ):
        if folder is not None and (folder / JOURNAL_FILE).is_file():
            with Journal(folder / JOURNAL_FILE, readonly=True) as journal:
                return journal.load(), journal.spent()
    return {}, 0.0


def plan(
    cfg: DescribeConfig,
    requests: list[DescriptionRequest],
    done: dict[str, DescriptionResult],
    spent: float,
    price: Price,
) -> dict[str, Any]:
    """--dry-run: what a run would send and cost (and what the artifact has cost so far, which --max-cost
    counts); nothing is sent or written."""
    done = done | {r.cache_key: r for r in carry_over(requests, done)}
    todo = [r for r in requests if r.cache_key not in done or done[r.cache_key].status in cfg.retry]
    prompt_tokens = sum(r.prompt_tokens for r in todo)
    seen = [d.completion_tokens for d in done.values() if d.status == "ok" and d.completion_tokens]
    # Completion length: the mean of this journal's replies when there are some, else half of max_tokens.
    per_reply = sum(seen) / len(seen) if seen else cfg.max_tokens / 2
    out = {
        "dry_run": True,
        "rows": len(requests),
        "cache_hits": len(requests) - len(todo),
        "new_requests": 0 if cfg.backend == "rules" else len(todo),
        "prompt_tokens": prompt_tokens,
        "completion_tokens_estimate": round(per_reply * len(todo)),
        "estimated_cost_usd": round(price.cost(prompt_tokens, round(per_reply * len(todo))), 6),
        "max_cost_usd": round(price.cost(prompt_tokens, cfg.max_tokens * len(todo)), 6),
        "spent_so_far_usd": round(spent, 6),
        "price_per_1m": {"input": price.input, "output": price.output, "known": price.known},
    }
    if cfg.with_image:
        out["image_input"] = image_plan(cfg, todo, price)
    return out


def image_plan(cfg: DescribeConfig, todo: list[DescriptionRequest], price: Price) -> dict[str, Any]:
    """The images' share of a --dry-run plan, with what it assumes said in words (prompt_tokens above already
    includes these image tokens)."""
    images = {r.image: r.image_input for r in todo}
    tokens = sum(r.image_input.tokens for r in todo)
    measured = sum(i.size_known for i in images.values())
    annotated = sum(not i.size_known and i.annotated_size is not None for i in images.values())
    blocked = [i for i in images.values() if i.problem]
    family, family_assumed = cfg.counted_family
    if family_assumed:
        family += f" (assumed: no family matches model {cfg.model!r}; pass --image-family)"
    detail = cfg.image_detail
    if detail == "auto":
        detail += " (budgeted as high: the provider picks low or high per image)"
    url_base = cfg.image_settings().url_base
    sent = (
        f"URL {url_base}<image name>, fetched and resized by the provider"
        if url_base
        else f"data URL: JPEG quality {JPEG_QUALITY}, long side at most {cfg.image_size} px, mark "
        f"{cfg.image_mark}"
    )
    w, h = cfg.assume_image_size
    return {
        "sent_as": sent,
        "family": family,
        "detail": detail,
        "images": len(images),
        "sizes_read": measured,
        "sizes_from_annotations": annotated,
        "sizes_assumed": len(images) - measured - annotated,
        "assumed_size": f"{w}x{h} (--assume-image-size), for every image whose size neither its file nor "
        "the annotations give"
        if measured + annotated < len(images)
        else None,
        "not_sendable_now": len(blocked),
        "not_sendable_example": blocked[0].problem if blocked else None,
        "not_sendable_note": "priced above as if they were there: a real run records them as error rows and "
        "sends nothing for them"
        if blocked
        else None,
        "image_tokens": tokens,
        "image_tokens_per_request": round(tokens / len(todo), 1) if todo else 0,
        "text_prompt_tokens": sum(r.prompt_tokens for r in todo) - tokens,
        "image_cost_usd": round(price.cost(tokens, 0), 6),
    }


def _price(cfg: DescribeConfig) -> Price:
    if cfg.backend == "rules":
        return Price(0.0, 0.0)
    price = price_for(
        cfg.model, price_input=cfg.price_input, price_output=cfg.price_output, prices_file=cfg.prices
    )
    if cfg.max_cost is not None and not price.known:
        raise PipelineError(
            f"--max-cost {cfg.max_cost}: no price known for model {cfg.model!r}, so spending cannot be "
            f"counted; pass --price-input and --price-output (USD per 1M tokens, 0 for a free server) "
            f"or --prices"
        )
    return price


def _check_unique(rows: list[ImageAnnotation], cfg: DescribeConfig) -> None:
    seen: set[str] = set()
    for i, ann in enumerate(rows):
        if ann.image in seen:
            raise PipelineError(
                f"annotations/{cfg.annotations} row {i}: image {ann.image!r} appears twice "
                f"(each image must be one row)"
            )
        seen.add(ann.image)


@dataclass(frozen=True, slots=True)
class Settled:
    """A run's config with its template family's defaults filled in, its template and its price."""

    cfg: DescribeConfig
    tpl: TemplateSet
    price: Price

    def recorded(self) -> Recorded:
        """What a run records in meta.json (what store.is_current compares): the config and what it derives
        from the template, the endpoint and the price list (the price only counts this run's spending)."""
        cfg, price = self.cfg, self.price
        derived = {
            "template_name": self.tpl.name,
            "template_hash": self.tpl.hash,
            "sampling": cfg.sampling(),
            "base_url": None if cfg.backend == "rules" else public_base_url(cfg.base_url),
        }
        out = cfg.recorded().add(derived)
        out = out.add(
            {"price_per_1m": {"input": price.input, "output": price.output}}, run_only=["price_per_1m"]
        )
        if cfg.with_image:
            family, assumed = cfg.counted_family
            image = {"jpeg_quality": JPEG_QUALITY, "rendering": RENDERING, "family": family,
                     "family_assumed": assumed}  # fmt: skip
            out = out.add({"image": image})
        return out


def settle(cfg: DescribeConfig) -> Settled:
    """What a run of `cfg` uses: the template, the sampling defaults it fills in, and the price."""
    tpl = _template(cfg)
    cfg = cfg.with_defaults(tpl.defaults)
    return Settled(cfg, tpl, _price(cfg))


def _send(todo: list[DescriptionRequest], cfg: DescribeConfig, price: Price, journal: Journal) -> dict:
    """Describe the rows still to do into the journal, with the configured backend; returns its stats."""
    if cfg.backend == "rules":
        journal.record_many([rules_result(r, cfg) for r in todo])
        return {"requests_sent": 0}
    # openai and tenacity take seconds to import, and the CLI imports this module at start-up: only the LLM
    # backend needs them
    if cfg.batch:
        from pipeline.describe.batch import run_batch

        return run_batch(todo, cfg, price, journal)
    from pipeline.describe.openai_backend import run_requests

    return run_requests(todo, cfg, price, journal)


def _run(
    requests: list[DescriptionRequest], cfg: DescribeConfig, price: Price, journal: Journal, name: str
) -> tuple[dict[str, DescriptionResult], int, dict]:
    """Send what the journal lacks, re-judge the rest under this run's gate; (rows by key, todo, stats)."""
    done = journal.load()
    carried = carry_over(requests, done)
    journal.record_many(carried)
    done |= {r.cache_key: r for r in carried}
    todo = [r for r in requests if r.cache_key not in done or done[r.cache_key].status in cfg.retry]
    log.info(
        "describe %s -> descriptions/%s: %d rows, %d from the journal, %d to do (%s backend)",
        cfg.annotations, name, len(requests), len(requests) - len(todo), len(todo), cfg.backend,
    )  # fmt: skip
    run_stats = _send(todo, cfg, price, journal)
    recorded = journal.load()
    fresh = {r.cache_key for r in todo}
    rejudged = rejudge([r for r in requests if r.cache_key not in fresh], recorded, cfg)
    journal.record_many(rejudged)
    journal.checkpoint()
    return recorded | {r.cache_key: r for r in rejudged}, len(todo), run_stats


def describe(cfg: DescribeConfig, store: Store) -> dict[str, Any]:
    """Run the stage; returns a summary (the plan under --dry-run)."""
    rows = select(_load_rows(cfg, store), cfg)
    if not rows:
        raise PipelineError(f"annotations/{cfg.annotations}: no image left after --shard/--limit")
    if cfg.backend == "openai" and not (cfg.api_key or is_local(cfg.base_url) or cfg.dry_run):
        raise PipelineError(
            f"--model {cfg.model} at {public_base_url(cfg.base_url)} needs OPENAI_API_KEY (a local "
            f"--base-url needs none); --backend rules describes offline"
        )
    if cfg.backend == "captions":  # the source's human captions: no prompt, journal or gate
        _check_unique(rows, cfg)
        return describe_captions(rows, cfg, store)
    settled = settle(cfg)
    cfg, tpl, price = settled.cfg, settled.tpl, settled.price
    _check_unique(rows, cfg)
    requests = build_requests(rows, tpl, cfg)
    name = cfg.artifact_name
    if cfg.dry_run:
        done, spent = ({}, 0.0) if cfg.overwrite else _existing_journal(store, name)
        return plan(cfg, requests, done, spent, price)

    with store.create(
        "descriptions",
        name,
        stage="describe",
        config=settled.recorded(),
        overwrite=cfg.overwrite,
        inputs=[store.ref("annotations", cfg.annotations)],
        resumable=True,
        seed_from_existing=not cfg.overwrite,
    ) as writer:
        if cfg.overwrite:
            for stale in writer.dir.glob(JOURNAL_FILE + "*"):
                stale.unlink()
        started = time.monotonic()
        with Journal(writer.dir / JOURNAL_FILE) as journal:
            recorded, todo, run_stats = _run(requests, cfg, price, journal, name)
        results = [recorded[r.cache_key] for r in requests]
        counts = descriptions.totals(results)
        _refuse_failed_run(cfg, counts, results, writer.dir)
        descriptions.write(writer.dir / descriptions.FILE, results)
        writer.counts.update(counts)
        summary = {
            "artifact": f"descriptions/{name}",
            "cache_hits": len(requests) - todo,
            "seconds": round(time.monotonic() - started, 3),
            **run_stats,
            **counts,
        }
        writer.extra["run"] = {k: v for k, v in summary.items() if k not in counts}
    log.info("descriptions/%s: %s", name, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return summary
