"""The describe stage's typed configuration and the records that flow through it."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.artifacts.descriptions import STATUSES
from pipeline.describe.image_input import MAX_SIZE, MIN_SIZE, ImageInput, ImageSettings
from pipeline.describe.image_tokens import DETAILS, family_for, load_families
from pipeline.describe.validate import Gate
from pipeline.errors import PipelineError
from pipeline.facts import PoseFacts
from pipeline.marks import MARKS
from pipeline.store import Recorded, recorded, run_only, secret

BACKENDS = ("openai", "rules", "captions")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The DescribeConfig fields sent to the LLM as sampling parameters (and what a defaults.json may set).
SAMPLING_FIELDS = ("temperature", "max_tokens", "top_p", "seed", "frequency_penalty")
# What a run sends when neither the command line nor the template family sets it (the paper's values).
FALLBACK_SAMPLING = {"temperature": 0.5, "max_tokens": 512}
DEFAULT_MODEL = "gpt-4o-mini"
IMAGE_TEMPLATE = "grounded-image"  # the default family of --with-image
# The fields of --with-image; a text-only run records none of them, so its meta.json is what it was before.
IMAGE_FIELDS = ("with_image", "images", "image_url_base", "image_size", "image_detail", "image_mark",
                "image_family", "image_families", "assume_image_size")  # fmt: skip


def public_base_url(url: str | None) -> str:
    """The endpoint as it may appear in keys, meta and messages: no user:password@, no query (Azure puts
    keys there)."""
    parts = urlsplit(url or DEFAULT_BASE_URL)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def is_local(url: str | None) -> bool:
    """A loopback or private-network endpoint (a vLLM / llama.cpp server of one's own): no key needed."""
    host = urlsplit(url or DEFAULT_BASE_URL).hostname or ""
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        return ipaddress.ip_address(host).is_private  # loopback addresses are private too
    except ValueError:
        return False


def read_base_urls(path: str | Path) -> list[str]:
    """--base-urls-file: one endpoint URL per line; blank lines and `#` comments are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"--base-urls-file {path}: cannot read it ({err})") from None
    urls = []
    for number, line in enumerate(lines, 1):
        url = line.split("#", 1)[0].strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
            raise PipelineError(f"{path}:{number}: {url!r} is not an http(s) URL (one URL per line)")
        urls.append(url)
    if not urls:
        raise PipelineError(f"--base-urls-file {path}: no URL in it")
    return urls


# An Authorization / api-key header value as a server may echo it back in an error body.
_HEADER_SECRET = re.compile(
    r"((?:authorization|proxy-authorization|api-key|x-api-key)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+)?)"
    r"[^\s\"',;}]+",
    re.I,
)
_BEARER = re.compile(r"\b(bearer\s+)[\w.~+/=-]{6,}", re.I)
_OPENAI_KEY = re.compile(r"\bsk-[\w-]{16,}")


def scrub(text: str, api_key: str | None) -> str:
    """Error text safe to store or print: the API key and any Authorization / api-key value replaced."""
    if api_key:
        text = text.replace(api_key, "***")
    text = _HEADER_SECRET.sub(r"\1***", text)
    return _OPENAI_KEY.sub("sk-***", _BEARER.sub(r"\1***", text))


@dataclass(frozen=True, slots=True)
class Bounds:
    """The numbers an option takes: finite, from `low` (itself excluded when `open_low`) to `high`."""

    low: float
    high: float | None = None
    open_low: bool = False
    unit: str = ""  # " of seconds"
    note: str = ""  # " (leave it out for no limit)"

    def problem(self, value: float) -> str | None:
        above = value > self.low or (value == self.low and not self.open_low)
        if math.isfinite(value) and above and (self.high is None or value <= self.high):
            return None
        if self.high is not None:
            return f"must be a number{self.unit} from {self.low:g} to {self.high:g}{self.note}"
        return f"must be a number{self.unit} {'>' if self.open_low else '>='} {self.low:g}{self.note}"


# Every number a describe run takes, checked in one place before anything is read or sent (an unset option,
# None, is not): option -> (DescribeConfig attribute, its bounds). The sampling ranges are OpenAI's. The image
# options are checked with the other --with-image settings (_check_image_options).
NUMBER_OPTIONS: dict[str, tuple[str, Bounds]] = {
    "--temperature": ("temperature", Bounds(0, 2)),
    "--max-tokens": ("max_tokens", Bounds(1)),
    "--top-p": ("top_p", Bounds(0, 1)),
    "--frequency-penalty": ("frequency_penalty", Bounds(-2, 2)),
    "--samples": ("samples", Bounds(1)),
    "--concurrency": ("concurrency", Bounds(1)),
    "--rpm": ("rpm", Bounds(0, open_low=True, note=" (leave it out for no limit)")),
    "--tpm": ("tpm", Bounds(0, open_low=True, note=" (leave it out for no limit)")),
    "--timeout": ("timeout", Bounds(0, open_low=True, unit=" of seconds")),
    "--max-retries": ("max_retries", Bounds(0)),
    "--max-cost": ("max_cost", Bounds(0, unit=" of USD")),
    "--price-input": ("price_input", Bounds(0, unit=" of USD per 1M tokens")),
    "--price-output": ("price_output", Bounds(0, unit=" of USD per 1M tokens")),
    "--limit": ("limit", Bounds(0)),
    "--backoff": ("backoff", Bounds(0, unit=" of seconds")),
    "--poll-interval": ("poll_interval", Bounds(0, open_low=True, unit=" of seconds")),
    "--retry-invalid": ("retry_invalid", Bounds(0)),
    "--max-error-share": ("max_error_share", Bounds(0, 1)),
    "--min-pose-claims": ("gate.min_pose_claims", Bounds(0)),
    "--max-contradicted": ("gate.max_contradicted", Bounds(0, 1)),
}


@dataclass(frozen=True, slots=True)
class Shard:
    """Work split i of n: an image belongs to shard int(sha256(image)) % n (stable across machines)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise PipelineError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise PipelineError(f"--shard {text!r}: need 0 <= i < n")
        return cls(i, n)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(slots=True)
class DescribeConfig:
    annotations: str
    backend: str = "auto"  # openai | rules | captions | auto (openai when a key, base URL or model is given)
    name: str | None = None  # default: the annotations name (shards get a .shard-i-of-n suffix)
    model: str | None = None  # default DEFAULT_MODEL
    base_url: str | None = None  # the first endpoint: every row is keyed under it (see `endpoints`)
    # The endpoints after the first (--base-url repeated, --base-urls-file): replicas of it, same model; run
    # only, so adding or dropping one neither re-keys a row nor makes a finished artifact stale.
    replica_urls: tuple[str, ...] = run_only(())
    api_key: str | None = secret()  # from OPENAI_API_KEY; never stored or logged
    template: str | None = None  # a folder, or a family under prompts/ ("paper", "grounded", "rules")
    # Sampling: None takes the template family's defaults.json (with_defaults), then FALLBACK_SAMPLING.
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    samples: int = 1  # descriptions per image (kept apart by the sample column)
    # How the requests go out, not what comes back: run-only, so changing them keeps an artifact current.
    concurrency: int = run_only(16)
    rpm: float | None = run_only(None)  # requests per minute
    tpm: float | None = run_only(None)  # tokens per minute (prompt estimate + max_tokens per request)
    timeout: float = run_only(60.0)  # seconds per attempt: connect, send and the whole reply
    lean_http: bool = run_only(False)  # pipeline.describe.transport for a plain-http endpoint, not httpx's
    max_retries: int = run_only(5)  # retries after the first attempt
    backoff: float = run_only(0.5)  # seconds before the first retry; doubles per attempt, Retry-After wins
    # Accounting: prices change the cost_usd of rows bought from now on, not the rows already there.
    max_cost: float | None = run_only(None)  # USD for the artifact, all runs together (journal spending)
    price_input: float | None = run_only(None)  # USD per 1M prompt tokens (overrides the table)
    price_output: float | None = run_only(None)  # USD per 1M completion tokens
    prices: str | None = run_only(None)  # JSON {model: {"input": x, "output": y}} merged over the table
    limit: int | None = None  # first K images (after sharding)
    shard: Shard | None = None
    retry: tuple[str, ...] = run_only(())  # statuses whose journal rows are sent again (by this run)
    dry_run: bool = run_only(False)
    batch: bool = run_only(False)  # the OpenAI Batch API (half price, results within 24 h), not live requests
    batch_size: int = run_only(50_000)  # lines per batch file (the API's limit)
    poll_interval: float = run_only(30.0)  # seconds between two batch status checks
    overwrite: bool = run_only(False)  # discard the journal and start over
    gate: Gate = field(default_factory=Gate)  # what a reply needs to be ok (pipeline.describe.validate)
    retry_invalid: int = 0  # re-asks of an invalid / truncated reply (new seed, warmer), best one kept
    max_error_share: float = run_only(0.02)  # more error rows than this: not published, non-zero exit
    allow_partial: bool = run_only(False)  # publish even past max_error_share
    # --with-image: the image goes with the prompt (pipeline.describe.image_input).
    with_image: bool = False
    images: str | None = None  # folder of the source images
    image_url_base: str | None = None  # hosted images: URL = base + image name, no bytes read
    image_size: int = 768  # long side sent, never upscaled
    image_detail: str = "auto"  # low | high | auto (budgeted as high)
    image_mark: str = "none"  # none | box | skeleton drawn on the image sent
    # How the model counts image tokens (a pipeline.describe.image_tokens family); default: by model name.
    # (Not "image_tokens": meta.json hides the values of keys that look like secrets, "token" among them.)
    image_family: str | None = None
    image_families: str | None = None  # a JSON file of more families
    assume_image_size: tuple[int, int] = (1280, 720)  # width, height of an image whose size cannot be read

    def __post_init__(self) -> None:
        if self.backend == "auto":  # an endpoint, key or model given -> the LLM, else the offline describer
            self.backend = "openai" if (self.api_key or self.base_url or self.model) else "rules"
        if self.backend not in BACKENDS:
            raise PipelineError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        self._check_offline()
        # an offline backend's model is itself: meta.json then says what wrote the rows, as the rows do
        self.model = self.model or (DEFAULT_MODEL if self.backend == "openai" else self.backend)
        for status in self.retry:
            if status not in STATUSES:
                raise PipelineError(f"--retry {status!r}: choose among {', '.join(STATUSES)}")
        self._check_numbers()
        if self.backend == "captions" and self.dry_run:
            raise PipelineError("--backend captions sends no request: --dry-run does not apply")
        self._check_endpoints()
        if self.retry_invalid and self.batch:
            raise PipelineError(
                "--retry-invalid re-asks live requests; with --batch, re-run with --retry invalid instead"
            )
        self._check_image_options()

    def _check_offline(self) -> None:
        """An option only the LLM reads would be accepted and recorded, and do nothing, offline."""
        if self.backend == "openai":
            return
        given = {"--base-url": self.base_url, "--temperature": self.temperature,
                 "--max-tokens": self.max_tokens, "--top-p": self.top_p, "--seed": self.seed,
                 "--frequency-penalty": self.frequency_penalty, "--max-cost": self.max_cost}  # fmt: skip
        # the backend's own name is what an offline config records as its model
        given["--model"] = None if self.model == self.backend else self.model
        options = [option for option, value in given.items() if value is not None]
        options += ["--retry-invalid"] * bool(self.retry_invalid) + ["--batch"] * self.batch
        if options:
            raise PipelineError(
                f"{', '.join(options)}: for --backend openai; --backend {self.backend} sends no request"
            )

    def _check_endpoints(self) -> None:
        public = [public_base_url(url) for url in self.endpoints]
        if twice := next((url for i, url in enumerate(public) if url in public[:i]), None):
            raise PipelineError(f"--base-url {twice}: listed twice (each endpoint once)")
        if self.replica_urls and self.base_url is None:
            raise PipelineError("replica endpoints need a first --base-url")
        if self.replica_urls and self.batch:
            raise PipelineError("--batch sends one file to one endpoint: give a single --base-url")
        if self.lean_http and not all(url.startswith("http://") for url in public):
            raise PipelineError("--lean-http: only for a plain-http --base-url (a local server)")

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every endpoint of the run, the first (the one rows are keyed under) first."""
        return (self.base_url or DEFAULT_BASE_URL, *self.replica_urls)

    def _check_numbers(self) -> None:
        for option, (attribute, bounds) in NUMBER_OPTIONS.items():
            value = operator.attrgetter(attribute)(self)
            if value is not None and (problem := bounds.problem(value)):
                raise PipelineError(f"{option} {value:g}: {problem}")

    def _check_image_options(self) -> None:
        if not self.with_image:
            given = [f"--{f.replace('_', '-')}" for f in ("images", "image_url_base") if getattr(self, f)]
            if given:
                raise PipelineError(f"{', '.join(given)}: only with --with-image")
            if self.template == IMAGE_TEMPLATE:
                raise PipelineError(f"--template {IMAGE_TEMPLATE} describes a photograph: add --with-image")
            return
        if self.backend != "openai":
            raise PipelineError("--with-image needs an LLM (--backend openai): rules cannot see images")
        if not (self.images or self.image_url_base or self.dry_run):
            raise PipelineError("--with-image needs --images DIR (or --image-url-base URL for hosted images)")
        if self.image_url_base:
            if urlsplit(self.image_url_base).scheme not in ("http", "https"):
                raise PipelineError(f"--image-url-base {self.image_url_base}: needs an http(s) URL")
            if self.image_mark != "none":
                raise PipelineError("--image-mark draws on the image sent: not with --image-url-base")
        if self.images and not Path(self.images).is_dir():
            raise PipelineError(f"--images {self.images}: no such folder")
        if not MIN_SIZE <= self.image_size <= MAX_SIZE:
            raise PipelineError(f"--image-size must be between {MIN_SIZE} and {MAX_SIZE} pixels")
        if self.image_detail not in DETAILS:
            raise PipelineError(f"--image-detail {self.image_detail!r}: choose one of {', '.join(DETAILS)}")
        if self.image_mark not in MARKS:
            raise PipelineError(f"--image-mark {self.image_mark!r}: choose one of {', '.join(MARKS)}")
        families = load_families(self.image_families)
        if self.image_family is not None and self.image_family not in families:
            raise PipelineError(f"--image-family {self.image_family!r}: choose one of {', '.join(families)}")
        if min(self.assume_image_size) < 1:
            raise PipelineError("--assume-image-size: both sides must be at least 1 pixel")

    @property
    def counted_family(self) -> tuple[str, bool]:
        """The image token family counted, and whether it was only assumed (a model no family matches)."""
        if self.image_family:
            return self.image_family, False
        found = family_for(self.model, self.image_families)
        return (found, False) if found else ("gpt-4o", True)

    def image_settings(self) -> ImageSettings | None:
        """What pipeline.describe.image_input needs, or None for a text-only run."""
        if not self.with_image:
            return None
        url_base = self.image_url_base
        if url_base and not url_base.endswith("/"):
            url_base += "/"
        return ImageSettings(
            images=Path(self.images) if self.images else None,
            url_base=url_base,
            size=self.image_size,
            detail=self.image_detail,
            mark=self.image_mark,
            family=self.counted_family[0],
            families_file=self.image_families,
            assume_size=tuple(self.assume_image_size),
        )

    @property
    def artifact_name(self) -> str:
        base = self.name or self.annotations
        if self.shard is not None and self.shard.count > 1:
            return f"{base}.shard-{self.shard.index}-of-{self.shard.count}"
        return base

    def with_defaults(self, defaults: dict[str, Any]) -> DescribeConfig:
        """This config with every sampling field it leaves unset taken from a template family's defaults,
        then from FALLBACK_SAMPLING: `describe --template paper` sends frequency_penalty 1.0, and
        `--frequency-penalty 0` still wins."""
        if self.backend != "openai":  # nothing is sampled offline, so no sampling is recorded
            return self
        unset = {k: v for k, v in (FALLBACK_SAMPLING | defaults).items() if getattr(self, k) is None}
        return dataclasses.replace(self, **unset)

    def sampling(self, ask: int = 0) -> dict[str, Any]:
        """Every parameter that changes an LLM's answer (ask 0's are part of each row's cache key); unset
        ones are not sent. Re-ask k > 0 (--retry-invalid) sends seed + k and a temperature 0.2 * k warmer
        (up to 1.0), so that a deterministic server does not give the same reply again."""
        params = {k: getattr(self, k) for k in SAMPLING_FIELDS if getattr(self, k) is not None}
        if ask:
            base = params.get("temperature", FALLBACK_SAMPLING["temperature"])
            params["temperature"] = round(min(max(1.0, base), base + 0.2 * ask), 3)
            params["seed"] = (self.seed or 0) + ask
        return params

    def recorded(self) -> Recorded:
        """The config as meta.json records it: shard as text; a text-only run records no image field and a
        one-endpoint run no replica list, so their meta.json is what it was before those options existed.
        (What a run derives from its template and prices is added by pipeline.describe.stage.Settled.)"""
        leave_out = ("replica_urls",) + (() if self.with_image else IMAGE_FIELDS)
        out = recorded(self, leave_out=leave_out).add(
            {"shard": None if self.shard is None else str(self.shard)}
        )
        # the replicas without credentials or query keys
        replicas = (
            {"replica_urls": [public_base_url(url) for url in self.replica_urls]} if self.replica_urls else {}
        )
        return out.add(replicas, run_only=("replica_urls",))


@dataclass(slots=True)
class DescriptionRequest:
    """One (image, sample) to describe: the rendered messages (LLM) or text (rules) and its cache key."""

    image: str
    sample: int
    source: str
    model: str
    template: str
    template_hash: str
    cache_key: str
    facts: PoseFacts  # the image's keypoints and their facts (the prompt's, the gate's), one per image
    messages: list[dict[str, str]] | None = None  # text only: the image part is added when it is sent
    text: str | None = None  # the rules describer's output
    prompt_tokens: int = 0  # estimate (image included), for plans, budgets and rate limits
    image_input: ImageInput | None = None  # --with-image: the image sent with the prompt
    key_payload: dict[str, Any] | None = None  # what cache_key hashes (pipeline.describe.stage.carry_over)

    @property
    def prompt(self) -> tuple[str, ...]:
        """The texts of the messages (the gate's echo check); none for the rules describer."""
        return () if self.messages is None else tuple(m["content"] for m in self.messages)
