"""describe throughput against a local chat-completions server with a fixed latency per request.

    .venv/bin/python benchmarks/describe_throughput.py                      # all 17,372 CSV images
    .venv/bin/python benchmarks/describe_throughput.py --limit 3000 --concurrency 64 --latency 0.1
    .venv/bin/python benchmarks/describe_throughput.py --limit 3000 --endpoints 4 --server-concurrency 16

The bound is concurrency / latency (64 / 0.1 s = 640 requests/s): a client that adds nothing reaches it.
With --endpoints N, N servers each work on at most --server-concurrency requests at once (the rest wait
their turn, as on a GPU server), and the bound is the sum of each server's cap / latency (N x cap / latency,
capped by --concurrency, which defaults to N x cap); the per-endpoint requests and latencies are printed.
Prints, for the openai client's own transport (the default) and for --lean-http, the measured rate over
the request phase and its ratio to the bound; the CPU per request of the event loop, of the client's process
(the loop and its threads) and of the gate's process (pipeline.describe.judging), and the whole stage's CPU
per row (reading, facts, rendering, sending, judging, journaling, the parquet), so no cost is hidden by
moving it; and the rate of the paper-style baseline (one request at a time, the whole output JSON rewritten
after each reply) measured in the same run against the same server. The machine's load is printed before
and after: on a shared machine compare figures of one run only.
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
from pipeline.facts import pose_facts  # noqa: E402
from pipeline.records import ImageAnnotation  # noqa: E402
from pipeline.store import Store  # noqa: E402

# ../shared/data beside the checkout, or FOCUS_SHARED_DATA (as the tests read it)
SHARED_DATA = Path(os.environ.get("FOCUS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CSV = SHARED_DATA / "mpii" / "csv_activity" / "mpii_dataset.csv"


def put_annotations(store: Store, path: Path) -> list[ImageAnnotation]:
    """annotations/mpii from the real CSV through the convert stage."""
    convert(ConvertConfig(sources=[path], name="mpii"), store)
    return annotations.read(store, "mpii")


def start_server(latency: float, cap: int | None = None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(latency)]
    proc = subprocess.Popen(
        command + (["--max-concurrent", str(cap)] if cap else []), stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_up(rows: list[ImageAnnotation], urls: list[str]) -> None:
    """One request per server before the clock starts: a server's first reply imports the rules describer
    (seconds on a loaded machine), which a real server, already serving, has long done."""
    import openai

    messages = load_template("paper").messages(image_context(pose_facts(rows[0])))
    for url in urls:
        client = openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0)
        client.chat.completions.create(model="fake", messages=messages, max_tokens=512)


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
            messages=tpl.messages(image_context(pose_facts(ann))),
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
    parser.add_argument("--concurrency", type=int, default=None, help="default: endpoints x cap, else 64")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server waits per request")
    parser.add_argument("--endpoints", type=int, default=1, help="servers, each a process of its own")
    parser.add_argument("--server-concurrency", type=int, default=None, help="each server's cap (none)")
    parser.add_argument("--template", default="paper")
    parser.add_argument("--baseline-requests", type=int, default=30)
    args = parser.parse_args()
    cap = args.server_concurrency
    if args.concurrency is None:
        args.concurrency = args.endpoints * cap if cap else 64
    served = args.endpoints * cap if cap else args.concurrency
    bound = min(args.concurrency, served) / args.latency

    print(f"load average before: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    servers = [start_server(args.latency, cap) for _ in range(args.endpoints)]
    urls = [url for _, url in servers]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store")
            rows = put_annotations(store, CSV)[: args.limit]
            warm_up(rows, urls)
            runs = {}
            for transport, lean in (("openai client's own transport", False), ("--lean-http", True)):
                cfg = DescribeConfig(
                    limit=args.limit,
                    annotations="mpii",
                    backend="openai",
                    base_url=urls[0],
                    replica_urls=tuple(urls[1:]),
                    model="fake",
                    template=args.template,
                    concurrency=args.concurrency,
                    timeout=30,
                    lean_http=lean,
                    overwrite=True,  # each transport sends every request itself (no journal reuse)
                )
                cpu, served = time.process_time(), sum(cpu_seconds(proc.pid) for proc, _ in servers)
                runs[transport] = describe(cfg, store)
                runs[transport]["stage_cpu_s"] = time.process_time() - cpu
                runs[transport]["server_cpu_s"] = sum(cpu_seconds(proc.pid) for proc, _ in servers) - served
            baseline = paper_baseline(rows, urls[0], args.baseline_requests, Path(tmp) / "baseline.json")
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()
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
    how = (
        f"{args.endpoints} servers x cap {args.server_concurrency} / latency {args.latency} s, client "
        f"concurrency {args.concurrency}"
        if args.server_concurrency
        else f"concurrency {args.concurrency} / latency {args.latency} s"
    )
    print(f"  request phase: {rate:.1f} req/s, bound {bound:.0f} req/s ({how}), ratio {rate / bound:.3f}")
    for e in summary["endpoints"]:
        print(
            f"    {e['url']}: {e['requests']} requests, {e['ok']} ok, {e['errors']} errors, latency p50 "
            f"{e['latency_p50_s']} s p95 {e['latency_p95_s']} s"
        )
    loop_ms = summary["loop_cpu_ms_per_request"]
    # What the event loop alone could sustain on one free core; the measured rate is lower when the machine
    # is shared (load average above its core count), since client, gate and server then wait for CPU.
    print(
        f"  CPU per request: event loop {loop_ms:.2f} ms (one free core would sustain {1000 / loop_ms:.0f} "
        f"req/s, ratio {min(1.0, 1000 / loop_ms / bound):.3f}), client process "
        f"{summary['client_cpu_ms_per_request']:.2f} ms, gate process "
        f"{summary['judge_cpu_ms_per_request']:.2f} ms"
    )
    judge_s = summary["judge_cpu_ms_per_request"] * summary["requests_sent"] / 1000
    print(
        f"  whole stage CPU per row: {1000 * (summary['stage_cpu_s'] + judge_s) / summary['rows']:.2f} ms "
        f"(the describe call's process and the gate's); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    # The servers share the machine with the client here: what they burn per request (writing the reply)
    # is CPU the client does not get. Client + gate + servers per request bounds the rate on the cores free.
    server_ms = 1000 * summary["server_cpu_s"] / summary["requests_sent"]
    total_ms = server_ms + summary["client_cpu_ms_per_request"] + summary["judge_cpu_ms_per_request"]
    print(
        f"  servers' CPU per request {server_ms:.2f} ms; client + gate + servers {total_ms:.2f} ms: one free "
        f"core would sustain {1000 / total_ms:.0f} req/s, the bound needs {bound * total_ms / 1000:.2f} "
        f"cores; this run got {rate * total_ms / 1000:.2f} cores"
    )


if __name__ == "__main__":
    main()
