#!/usr/bin/env bash
# The GPU check: on one H100/H200, in under 8 minutes, the CUDA tests and the GPU benchmarks, gathered into
# one JSON and one markdown table.
#
#   benchmarks/gpu_check.sh [OUT]              # on the GPU machine; OUT defaults to gpu-check/
#   benchmarks/gpu_check.sh --dry-run OUT      # on a CPU at tiny sizes: checks the kit itself (the test suite
#                                              # runs this: tests/test_gpu_check.py); its figures mean nothing
#
# Steps (time limit each; 465 s in all):
#   cuda_tests         pytest -m gpu: the tests that need CUDA (skipped without one)              60 s
#   paper_step         benchmarks/paper_step.py, FocusCLIP-ViT-B-16-BERT, fp32 and bf16, batch 32:
#                      samples/s, peak memory, MFU against the precision's peak                   100 s
#   train_throughput   benchmarks/train_throughput.py ViT-B-16 bf16 batch 256: our CLIP and FocusCLIP
#                      steps against open_clip_train on the same data, MFU                        170 s
#   eval_throughput    benchmarks/eval_throughput.py ViT-B-16: batched zero-shot against a loop    55 s
#   stream_throughput  benchmarks/stream_throughput.py: stream vs cache vs open_clip_train's
#                      webdataset loader feeding the GPU, 8 workers                                80 s
# OUT/ gets gpu_check.json (every step's figures, exit status and seconds), gpu_check.md (the table), and
# each step's log and JSON. A failed step is recorded and the others still run; the script exits 1 if any
# step failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
OUT=${1:-gpu-check}
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" FOCUS_PROGRESS=0
mkdir -p "$OUT"
: > "$OUT/steps.jsonl"

step() { # step NAME LIMIT_S COMMAND...: run under a time limit, keep its log, record its exit status and time
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '{"step": "%s", "rc": %d, "seconds": %d, "limit_s": %d}\n' "$name" "$rc" $((SECONDS - t0)) "$limit" \
    >> "$OUT/steps.jsonl"
  echo "$name: exit $rc after $((SECONDS - t0)) s (log: $OUT/$name.log)"
}

if [ "$DRY" = 1 ]; then
  step cuda_tests 300 "$PY" -m pytest -q -p no:cacheprovider -m gpu --junitxml "$OUT/cuda_tests.xml" \
    tests/test_train_gpu.py tests/test_heatmaps.py
  step paper_step 300 "$PY" benchmarks/paper_step.py --tiny --device cpu --batch-size 1 --steps 1 \
    --precision fp32 bf16 --json "$OUT/paper_step.json"
  step train_throughput 300 "$PY" benchmarks/train_throughput.py --device cpu --arch focus-tiny \
    --precision fp32 --batch-size 8 --steps 4 --warmup-steps 2 --images 16 --image-size 32 --workers 0 \
    --threads 1 --skip-open-clip --json "$OUT/train_throughput.json"
  step eval_throughput 300 "$PY" benchmarks/eval_throughput.py --arch focus-tiny --images 16 --size 32 \
    --batch-size 8 --workers 0 --device cpu --json "$OUT/eval_throughput.json"
  step stream_throughput 300 "$PY" benchmarks/stream_throughput.py --images 64 --size 48 40 --image-size 32 \
    --batch-size 8 --workers 1 --steps 2 --warmup 1 --repeats 1 --json "$OUT/stream_throughput.json"
else
  step cuda_tests 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu --junitxml "$OUT/cuda_tests.xml" tests
  step paper_step 100 "$PY" benchmarks/paper_step.py --device cuda --batch-size 32 --steps 5 \
    --precision fp32 bf16 --json "$OUT/paper_step.json"
  step train_throughput 170 "$PY" benchmarks/train_throughput.py --device cuda --arch ViT-B-16 \
    --precision bf16 --batch-size 256 --steps 40 --warmup-steps 10 --images 2048 --workers 8 \
    --json "$OUT/train_throughput.json"
  step eval_throughput 55 "$PY" benchmarks/eval_throughput.py --arch ViT-B-16 --images 2048 --batch-size 256 \
    --workers 8 --device cuda --threads 4 --json "$OUT/eval_throughput.json"
  step stream_throughput 80 "$PY" benchmarks/stream_throughput.py --device cuda --images 2048 \
    --size 480 360 --batch-size 128 --workers 8 --steps 12 --warmup 2 --repeats 1 \
    --json "$OUT/stream_throughput.json"
fi

# One JSON and one markdown table from the steps' records and figures.
"$PY" - "$OUT" <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(sys.argv[1])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line]
report = {"steps": steps}
for s in steps:
    figures = out / f"{s['step']}.json"
    report[s["step"]] = json.loads(figures.read_text()) if figures.is_file() else None
junit = out / "cuda_tests.xml"
if junit.is_file():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    report["cuda_tests"] = counts
(out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


rows = ["| step | exit | seconds | figures |", "|---|---|---|---|"]
for s in steps:
    r, name = report.get(s["step"]) or {}, s["step"]
    if name == "cuda_tests" and r:
        text = f"{r['passed']} passed, {r['failures'] + r['errors']} failed, {r['skipped']} skipped"
    elif name == "paper_step" and r:
        text = "; ".join(
            f"{x['precision']}: {x['samples_per_s']:.1f} samples/s, {x['peak_memory_gib']:.1f} GiB, MFU {pct(x['mfu'])}"
            for x in r["results"]
        ) + f" ({r['arch']}, batch {r['batch']}, {r['device']})"
    elif name == "train_throughput" and r:
        sps = r["samples_per_s_best_mean"]
        ratio = r["ratio_clip_vs_open_clip_train"]
        text = ", ".join(f"{k} {v:.1f}" for k, v in sps.items()) + " samples/s"
        text += f"; ours CLIP / open_clip_train {ratio:.2f}x" if ratio else ""
        text += "".join(f"; MFU {k} {pct(v)}" for k, v in r["mfu"].items())
    elif name == "eval_throughput" and r:
        text = (
            f"batched {r['batched_images_per_s']:.1f} vs loop {r['per_image_loop_images_per_s']:.1f} images/s "
            f"({r['ratio']:.2f}x), top-1 agreement {pct(r['top1_agreement'])}"
        )
    elif name == "stream_throughput" and r:
        text = ", ".join(f"{k} {v:.1f}" for k, v in r["samples_per_s"].items()) + " samples/s"
        text += f"; stream / cache {r['ratio_stream_vs_cache']:.2f}x"
        text += f", stream / open_clip_train {r['ratio_stream_vs_open_clip_train']:.2f}x"
    else:
        text = "no figures (see the log)"
    rows.append(f"| {name} | {s['rc']} | {s['seconds']} | {text} |")
total = sum(s["seconds"] for s in steps)
(out / "gpu_check.md").write_text("# GPU check\n\n" + "\n".join(rows) + f"\n\nTotal: {total} s.\n")
print((out / "gpu_check.md").read_text())
EOF

if grep -qv '"rc": 0,' "$OUT/steps.jsonl"; then
  echo "gpu_check: a step failed; see $OUT/" >&2
  exit 1
fi
