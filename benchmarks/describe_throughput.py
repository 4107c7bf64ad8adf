"""describe throughput against a local chat-completions server with a fixed latency per request.

    .venv/bin/python benchmarks/describe_throughput.py                      # all 17,372 CSV images
    .venv/bin/python benchmarks/describe_throughput.py --limit 3000 --concurrency 64 --latency 0.1

The bound is concurrency / latency (64 / 0.1 s = 640 requests/s): a client that adds nothing reaches it.
Prints, for the openai client's own transport (the default) and for --lean-http, the measured rate over
the request phase, its ratio to the bound and the client's CPU per request, and the rate of the
paper-style baseline (one request at a time, the whole output JSON rewritten after each reply) measured
in the same run against the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.artifacts import annotations  # noqa: E402
from pipeline.convert import ConvertConfig, convert  # noqa: E402
from pipeline.describe import DescribeConfig, describe  # noqa: E402
from pipeline.describe.prompting import image_context, load_template  # noqa: E402
from pipeline.records import ImageAnnotation  # noqa: E402
from pipeline.store import Store  # noqa: E402

# ../shared/data beside the checkout, or FOCUS_SHARED_DATA (as the tests read it)
SHARED_DATA = Path(os.environ.get("FOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CSV = SHARED_DATA / "mpii" / "csv_activity" / "mpii_dataset.csv"


def put_annotations(store: Store, path: Path) -> list[ImageAnnotation]:
    """annotations/mpii from the real CSV through the convert stage."""
    convert(ConvertConfig(sources=[path], name="mpii"), store)
    return annotations.read(store, "mpii")


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def paper_baseline(rows: list[ImageAnnotation], url: str, requests: int, out: Path) -> float:
    """The reference scripts' loop: sequential requests, the whole results JSON rewritten after each one."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0)
    tpl = load_template("paper")
    results: dict[str, str] = {}
    started = time.perf_counter()
    for ann in rows[:requests]:
        reply = client.chat.completions.create(
            model="fake",
            messages=tpl.messages(image_context(ann)),
            temperature=0.5,
            max_tokens=512,
            frequency_penalty=1.0,
        )
        results[ann.image] = reply.choices[0].message.content
        out.write_text(json.dumps(results, indent=2))
    return len(results) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="images (default: all 17,372)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server waits per request")
    parser.add_argument("--template", default="paper")
    parser.add_argument("--baseline-requests", type=int, default=30)
    args = parser.parse_args()

    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store")
            rows = put_annotations(store, CSV)[: args.limit]
            runs = {}
            for transport, lean in (("openai client's own transport", False), ("--lean-http", True)):
                cfg = DescribeConfig(
                    limit=args.limit,
                    annotations="mpii",
                    backend="openai",
                    base_url=url,
                    model="fake",
                    template=args.template,
                    concurrency=args.concurrency,
                    timeout=30,
                    lean_http=lean,
                    overwrite=True,  # each transport sends every request itself (no journal reuse)
                )
                runs[transport] = describe(cfg, store)
            baseline = paper_baseline(rows, url, args.baseline_requests, Path(tmp) / "baseline.json")
    finally:
        proc.terminate()
        proc.wait()
    bound = args.concurrency / args.latency
    for transport, summary in runs.items():
        report(transport, summary, len(rows), bound, args)
    rate = runs["openai client's own transport"]["requests_per_s"]
    print(
        f"paper-style sequential baseline: {baseline:.1f} req/s ({args.baseline_requests} requests); "
        f"speed-up {rate / baseline:.1f}x (default transport)"
    )


def report(transport: str, summary: dict, images: int, bound: float, args: argparse.Namespace) -> None:
    rate = summary["requests_per_s"]
    print(
        f"[{transport}] images {images}, ok {summary['ok']}, errors {summary['error']}, requests sent "
        f"{summary['requests_sent']}, total stage time {summary['seconds']:.1f} s"
    )
    print(
        f"  request phase: {rate:.1f} req/s, bound {bound:.0f} req/s (concurrency {args.concurrency} / "
        f"latency {args.latency} s), ratio {rate / bound:.3f}"
    )
    cpu_ms = summary["client_cpu_ms_per_request"]
    # What the client alone could sustain on one free core; the measured rate is lower when the machine is
    # shared (load average above its core count), since client and server then wait for CPU.
    print(
        f"  client CPU per request: {cpu_ms:.2f} ms (one free core would sustain {1000 / cpu_ms:.0f} req/s, "
        f"ratio {min(1.0, 1000 / cpu_ms / bound):.3f}); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
