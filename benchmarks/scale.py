"""The scale rehearsal: the whole pipeline on N synthetic images through the real CLI, one stage at a time,
with each stage's wall time, throughput, peak RSS per process and disk, and the extrapolation to 100k, 1M
and 10M images.

    .venv/bin/python benchmarks/scale.py                                   # 100,000 images (hours on a CPU)
    .venv/bin/python benchmarks/scale.py --images 2000 --steps 20          # = make bench (minutes)
    .venv/bin/python benchmarks/scale.py --images 40000 --store /big/disk/scale --keep \
        --json scale-40k.json --fit-with scale-10k.json                    # two sizes: fixed + per-image fit

Stages, each one subprocess (the CLI, as a user runs it; `torchrun --standalone` with gloo for 2
processes): generate the synthetic sample (pipeline/synthetic/sample.py at --sample-size px, plus its fixed
Stanford 40-layout test set) -> convert -> describe (rules backend) -> build-dataset -> train FocusCLIP
--steps steps in cache mode and in stream mode (--data), with 1 and 2 processes -> eval the first run on
the synthetic action test set. Everything lives under --store (a temporary folder unless given; removed at
the end unless --keep): DIR/sample, DIR/store (the artifact store, its decoded train cache inside it).

Peak RSS: a sampler reads VmHWM (the kernel's own high-water mark of each process's RSS) from
/proc/<pid>/status for the stage's process and all its descendants every --sample-every seconds, and
os.wait4 adds the kernel's ru_maxrss of the stage's process tree, so a peak is missed only by a
descendant that lived less than one sampling interval. RSS counts the shared pages of a memory-mapped
cache in every process that touched them (PSS would split them; tests/test_train_cache.py measures that).
Disk: `du -sk` of what the stage wrote (the cache mode's train rows include the decoded cache).

Extrapolation: generate, convert, describe and build-dataset are linear in N (wall and disk); a train run
is its loop (steps x global batch / the run's steady samples/s: depends on the steps, not on N) plus its
start-up, which in cache mode reads every row's texts and keypoints and decodes (or maps) the cache, so it
counts as linear in N (imports and model build included: an upper bound), and in stream mode reads the
shards' footers (fixed); the decoded cache's disk is linear in N, a run's checkpoint fixed; eval is fixed
(its test set does not grow with N). With --fit-with (the JSON of a run at another N), each linear part is
fitted as a + b*N through the two points instead of scaled in proportion to N (a + b*N separates the fixed
start-up of each stage from its per-image cost).

    .venv/bin/python benchmarks/scale.py --report scale-40k.json --fit-with scale-15k.json   # no run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.synthetic import SampleConfig, generate_sample  # noqa: E402

NAME = "scale"  # the artifacts' name in the rehearsal's store
TARGETS = (100_000, 1_000_000, 10_000_000)  # the 100x MPII, and beyond
MB = 1024 * 1024


# ---- peak RSS of a process tree ------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/<pid>/stat (field 4, after the parenthesised command name)."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _tree(root: int) -> dict[int, int]:
    """pid -> parent pid for root and all its descendants."""
    children, found, todo = _children_map(), {root: 0}, [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found[child] = pid
            todo.append(child)
    return found


def _hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass(slots=True)
class Proc:
    pid: int
    parent: int
    command: str  # the first words of its command line
    peak_mb: float = 0.0


class Watch(threading.Thread):
    """Samples VmHWM of a process tree until stop(); prints a heartbeat line every `heartbeat` seconds."""

    def __init__(self, root: int, title: str, every: float, heartbeat: float = 60.0):
        super().__init__(daemon=True)
        self.root, self.title, self.every, self.heartbeat = root, title, every, heartbeat
        self.procs: dict[int, Proc] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        started = last = time.monotonic()
        while not self._halt.wait(self.every):
            for pid, parent in _tree(self.root).items():
                kb = _hwm_kb(pid)
                if kb is None:
                    continue
                if pid not in self.procs:
                    self.procs[pid] = Proc(pid, parent, _command(pid))
                self.procs[pid].peak_mb = max(self.procs[pid].peak_mb, kb / 1024)
            if time.monotonic() - last >= self.heartbeat:
                last = time.monotonic()
                peak = max((p.peak_mb for p in self.procs.values()), default=0)
                print(f"[scale] {self.title}: {last - started:.0f} s, {len(self.procs)} processes so far, "
                      f"largest peak RSS {peak:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in argv if a)[:300]


# ---- one stage ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Stage:
    name: str
    scaling: str  # "linear" (in N), "steps" (a train run: loop by steps, start-up as noted) or "fixed"
    wall_s: float
    items: int
    unit: str
    processes: list[Proc]
    peak_mb: float  # the largest peak RSS of any one process of the stage
    sum_peaks_mb: float  # the processes' peaks added up (an upper bound of the stage's total)
    disk_mb: float
    linear_s: float = 0.0  # the part of wall_s that grows with N (linear_seconds)
    linear_disk_mb: float = 0.0  # the part of disk_mb that grows with N (train: the decoded cache)
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("nan")


def du_mb(*paths: Path) -> float:
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0.0
    out = subprocess.run(["du", "-skc", *existing], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0]) / 1024


def run_stage(title: str, cmd: list[str], env: dict[str, str], every: float) -> tuple[float, list[Proc]]:
    """Run cmd (its output goes to this terminal: the stages' own progress bars); returns wall seconds and
    each process's peak RSS. A failing stage stops the rehearsal."""
    print(f"[scale] {title}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    watch = Watch(proc.pid, title, every)
    watch.start()
    # wait4, not Popen.wait: it hands back the kernel's ru_maxrss of the process and its reaped descendants
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    watch.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"scale.py: stage {title!r} failed (exit code {proc.returncode}): {' '.join(cmd)}")
    procs = sorted(watch.procs.values(), key=lambda p: p.pid)
    top = next((p for p in procs if p.pid == proc.pid), None)
    if top is None:  # finished before the first sample
        top = Proc(proc.pid, 0, cmd[0])
        procs.insert(0, top)
    # ru_maxrss (KiB on Linux) is the largest of the tree's reaped processes: a lower bound of the max
    if usage.ru_maxrss / 1024 > max(p.peak_mb for p in procs):
        top.peak_mb = max(top.peak_mb, usage.ru_maxrss / 1024)
    print(f"[scale] {title}: {wall:.1f} s", file=sys.stderr, flush=True)
    return wall, procs


# ---- the rehearsal --------------------------------------------------------------------------------------
@dataclass(slots=True)
class Plan:
    images: int
    steps: int
    batch_size: int
    image_size: int
    sample_size: int
    build_workers: int
    threads: int
    processes: tuple[int, ...]
    modes: tuple[str, ...]
    seed: int
    sample_every: float
    eval_limit: int | None


class Rehearsal:
    def __init__(self, plan: Plan, work: Path, json_path: Path | None):
        self.plan, self.work, self.json_path = plan, work, json_path
        self.sample, self.store = work / "sample", work / "store"
        self.stages: list[Stage] = []
        bindir = Path(sys.executable).parent
        self.cli, self.torchrun = str(bindir / "focus-pipeline"), str(bindir / "torchrun")
        self.env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads), "PYTHONPATH": str(ROOT)}
        self.env.pop("FOCUS_CACHE", None)  # the decoded cache goes inside the store, where du sees it
        self.env.pop("FOCUS_STORE", None)

    def focus(self, *args: str) -> list[str]:
        return [self.cli, "--store", str(self.store), *args]

    def add(self, name: str, scaling: str, cmd: list[str], items: int, unit: str, disk: list[Path],
            **kw) -> Stage:  # fmt: skip
        if self.json_path:  # what is measured so far survives a stage that fails or never ends
            partial = {
                "plan": asdict(self.plan),
                "complete": False,
                "stages": [asdict(s) for s in self.stages],
            }
            self.json_path.write_text(json.dumps(partial, indent=2) + "\n")
        wall, procs = run_stage(name, cmd, self.env, self.plan.sample_every)
        stage = Stage(name=name, scaling=scaling, wall_s=wall, items=items, unit=unit, processes=procs,
                      peak_mb=max(p.peak_mb for p in procs), sum_peaks_mb=sum(p.peak_mb for p in procs),
                      disk_mb=du_mb(*disk), **kw)  # fmt: skip
        if scaling == "linear":
            stage.linear_s, stage.linear_disk_mb = linear_seconds(stage), stage.disk_mb
        self.stages.append(stage)
        return stage

    def run(self) -> list[Stage]:
        p, n = self.plan, self.plan.images
        art = self.store
        self.add("generate", "linear", [sys.executable, __file__, "--generate-only", str(self.sample),
                 "--images", str(n), "--sample-size", str(p.sample_size), "--seed", str(p.seed)],
                 n, "img", [self.sample])  # fmt: skip
        mat = next((self.sample / "mpii").glob("*.mat"))
        self.add("convert", "linear", self.focus("convert", str(mat), "--name", NAME), n, "img",
                 [art / "annotations" / NAME])  # fmt: skip
        self.add("describe (rules)", "linear",
                 self.focus("describe", "--annotations", NAME, "--backend", "rules", "--name", NAME),
                 n, "img", [art / "descriptions" / NAME])  # fmt: skip
        self.add("build-dataset", "linear",
                 self.focus("build-dataset", "--annotations", NAME, "--descriptions", NAME, "--images",
                            str(self.sample / "mpii" / "images"), "--name", NAME, "--origin", "synthetic",
                            "--workers", str(p.build_workers)),
                 n, "img", [art / "datasets" / NAME])  # fmt: skip
        for mode in p.modes:
            for procs in p.processes:
                self.train(mode, procs)
        first = f"{NAME}-{p.modes[0]}-{p.processes[0]}p"
        test = f"stanford40={self.sample / 'eval' / 'stanford40'}"
        cmd = self.focus("eval", "--run", first, "--tasks", "stanford40-action", "--path", test,
                         "--workers", "0", "--device", "cpu", "--name", NAME)  # fmt: skip
        if p.eval_limit:
            cmd += ["--limit", str(p.eval_limit)]
        stage = self.add("eval", "fixed", cmd, 0, "img", [art / "evals" / NAME])
        results = json.loads((art / "evals" / NAME / "results.json").read_text())
        stage.items = sum(r["n_samples"] for r in results)
        metrics = [(r["task"], k, v) for r in results for k, v in r["metrics"].items() if "@" in k]
        accuracies = [f"{task} {k} {v:.3f}" for task, k, v in metrics]
        stage.note = f"run {first}; " + ", ".join(accuracies)
        return self.stages

    def train(self, mode: str, procs: int) -> Stage:
        p = self.plan
        run = f"{NAME}-{mode}-{procs}p"
        caches = self.store / ".cache" / "train-cache"
        had_cache = caches.exists() and _decode_seconds(caches) is not None
        args = ["train", "--dataset", NAME, "--model-type", "focusclip", "--arch", "focus-small",
                "--name", run, "--max-steps", str(p.steps), "--batch-size", str(p.batch_size),
                "--image-size", str(p.image_size), "--context-length", "32", "--threads", str(p.threads),
                "--device", "cpu", "--seed", str(p.seed), "--data", mode]  # fmt: skip
        cmd = self.focus(*args)
        if procs > 1:
            cmd = [self.torchrun, "--standalone", f"--nproc-per-node={procs}", "--no-python", *cmd]
        built = mode == "cache" and not had_cache
        disk = [self.store / "runs" / run] + ([caches] if built else [])
        samples = p.steps * p.batch_size * procs
        stage = self.add(f"train {mode} {procs}p", "steps", cmd, samples, "sample", disk)
        summary = json.loads((self.store / "runs" / run / "meta.json").read_text())["summary"]
        loop_s = summary["steps"] * summary["global_batch"] / summary["samples_per_s"]
        decode_s = _decode_seconds(caches) if built else None
        if built:
            stage.linear_disk_mb = du_mb(caches)
        # the ranks: the stage's process, or torchrun's children (stream's DataLoader workers are theirs)
        top = stage.processes[0].pid
        ranks = [q for q in stage.processes if (q.parent == top if procs > 1 else q.pid == top)]
        peaks = ", ".join(f"{q.peak_mb:,.0f}" for q in ranks)
        stage.note = f"loop {summary['samples_per_s']:.1f} samples/s ({loop_s:.0f} s)"
        if mode == "cache":
            stage.note += f"; decoded the cache in {decode_s:.0f} s" if built else "; cache reused"
        stage.note += f"; ranks' peak RSS {peaks} MB"
        stage.extra = {"loop_s": loop_s, "built_cache": built, "decode_s": decode_s, "summary": summary,
                       "ranks_peak_mb": [q.peak_mb for q in ranks]}  # fmt: skip
        stage.linear_s = linear_seconds(stage)
        return stage


def linear_seconds(stage: Stage) -> float:
    """The part of a stage's wall time that grows with N: all of a linear stage; of a cache-mode train run,
    everything but its loop (the start-up reads every row's texts and keypoints and decodes or maps the cache;
    this counts its imports and model build too, an upper bound); nothing of a stream run (its start-up
    reads the shards' footers) or of eval."""
    if stage.scaling == "linear":
        return stage.wall_s
    if stage.name.startswith("train cache"):
        return max(stage.wall_s - stage.extra["loop_s"], 0.0)
    return 0.0


def _decode_seconds(caches: Path) -> float | None:
    """How long the decoded cache took to build: from its lock file's creation (training/cache.py takes the
    lock first) to its done.json (written last)."""
    # training.cache imports torch (~0.7 GB of RSS): the sample's subprocess, which runs this file, must not
    from training.cache import DONE

    done = next(caches.glob(f"*/*/{DONE}"), None)
    if done is None:
        return None
    lock = done.parent.with_name(done.parent.name + ".lock")
    return done.stat().st_mtime - lock.stat().st_mtime


# ---- the report -----------------------------------------------------------------------------------------
def table(stages: list[Stage]) -> str:
    lines = [
        "| Stage | Wall (s) | Items | Items/s | Processes | Peak RSS, largest process (MB) "
        "| Sum of peaks (MB) | Disk (MB) | Notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in stages:
        lines.append(
            f"| {s.name} | {s.wall_s:.1f} | {s.items:,} {s.unit} | {s.rate:,.1f} | {len(s.processes)} "
            f"| {s.peak_mb:,.0f} | {s.sum_peaks_mb:,.0f} | {s.disk_mb:,.1f} | {s.note} |"
        )
    total_wall = sum(s.wall_s for s in stages)
    lines.append(f"| total | {total_wall:.1f} | | | | | | {sum(s.disk_mb for s in stages):,.1f} | |")
    return "\n".join(lines)


def _scaled(value: float, n: int, target: int, other: tuple[float, int] | None) -> float:
    """value measured at n, at `target` images: a + b*N through (other, this), or proportional to N without
    a second point or when the two points disagree with linear growth (b < 0, or a < 0: on a shared host the
    load can change between two runs more than the work does)."""
    if other is not None and other[1] != n:
        b = (value - other[0]) / (n - other[1])
        if b >= 0 and value - b * n >= 0:
            return value + b * (target - n)
    return value * target / n


def extrapolate(stages: list[Stage], n: int, previous: dict | None) -> list[dict]:
    """Per stage: what it scales with, and its wall seconds and disk MB at each of TARGETS, from the model
    in the module docstring."""
    prev = {s.name: s for s in _stages(previous)} if previous else {}
    n_prev = previous["plan"]["images"] if previous else None
    rows = []
    for s in stages:
        o = prev.get(s.name)
        how = {"linear": "N", "fixed": "nothing (fixed test set)"}.get(s.scaling, "steps")
        if s.name.startswith("train cache"):
            how = "steps + N (start-up: rows, cache)"
        row = {"stage": s.name, "scales_with": how, "at": {}}
        for t in TARGETS:
            wall = s.wall_s - s.linear_s + _scaled(s.linear_s, n, t, (o.linear_s, n_prev) if o else None)
            grown = _scaled(s.linear_disk_mb, n, t, (o.linear_disk_mb, n_prev) if o else None)
            row["at"][t] = {"wall_s": wall, "disk_mb": s.disk_mb - s.linear_disk_mb + grown}
            if o:  # memory has a fixed part (imports, the model) that dwarfs small N: two points or nothing
                b = max((s.peak_mb - o.peak_mb) / (n - n_prev), 0.0)
                row["at"][t]["peak_mb"] = s.peak_mb + b * (t - n)
        rows.append(row)
    return rows


def extrapolation_table(rows: list[dict], n: int, previous: dict | None) -> str:
    head = "| Stage | Scales with | " + " | ".join(f"Wall at {t:,} | Disk at {t:,}" for t in TARGETS) + " |"
    lines = [head, "|---|---|" + "---:|---:|" * len(TARGETS)]
    for r in rows:
        cells = [f"{_duration(r['at'][t]['wall_s'])} | {_size(r['at'][t]['disk_mb'])}" for t in TARGETS]
        lines.append(f"| {r['stage']} | {r['scales_with']} | " + " | ".join(cells) + " |")
    totals = [
        (sum(r["at"][t]["wall_s"] for r in rows), sum(r["at"][t]["disk_mb"] for r in rows)) for t in TARGETS
    ]
    lines.append("| total | | " + " | ".join(f"{_duration(w)} | {_size(d)}" for w, d in totals) + " |")
    if previous:
        basis = (f"fitted as a + b*N through N = {previous['plan']['images']:,} and {n:,} (in proportion "
                 "to N where the two points do not fit a line with a, b >= 0)")  # fmt: skip
    else:
        basis = f"scaled in proportion to N from N = {n:,}"
    text = "\n".join(lines) + f"\n\nThe parts that grow with N are {basis}; the rest is as measured."
    if previous:
        lines = ["| Stage | " + " | ".join(f"Peak RSS at {t:,}" for t in TARGETS) + " |",
                 "|---|" + "---:|" * len(TARGETS)]  # fmt: skip
        lines += [f"| {r['stage']} | " + " | ".join(_size(r["at"][t]["peak_mb"]) for t in TARGETS) + " |"
                  for r in rows]  # fmt: skip
        text += ("\n\nThe largest process's peak RSS, a + b*N through the two runs (b >= 0; a cache-mode "
                 "rank's RSS counts the mapped cache pages it touched):\n\n" + "\n".join(lines))  # fmt: skip
    return text


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _size(mb: float) -> str:
    return f"{mb:,.0f} MB" if mb < 10 * 1024 else f"{mb / 1024:,.1f} GB"


def _machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} at the end"


# ---- command line -----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per train run")
    ap.add_argument("--batch-size", type=int, default=32, help="per process")
    ap.add_argument("--image-size", type=int, default=64, help="training resolution")
    ap.add_argument("--sample-size", type=int, default=96, help="side of the generated images")
    ap.add_argument("--build-workers", type=int, default=2, help="build-dataset --workers")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per process")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", choices=["cache", "stream"], default=["cache", "stream"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-limit", type=int, help="eval --limit (default: the whole test set of 300)")
    ap.add_argument("--sample-every", type=float, default=0.5, help="seconds between RSS samples")
    ap.add_argument("--store", type=Path, help="an empty or new folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep --store's contents afterwards")
    ap.add_argument("--json", type=Path, help="write the measurements here (for --fit-with)")
    ap.add_argument("--fit-with", type=Path, help="the --json of a run at another --images")
    ap.add_argument("--report", type=Path, help="print the tables of a saved --json (no run)")
    ap.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)  # the first stage's subprocess
    args = ap.parse_args()
    if args.report:
        reprint(args.report, args.fit_with)
        return
    if args.generate_only:
        side = args.sample_size
        cfg = SampleConfig(seed=args.seed, images=args.images, image_size=(side, side))
        generate_sample(cfg, args.generate_only)
        return
    if args.images < 10 or args.steps < 1 or args.batch_size < 2:
        ap.error("--images >= 10 (one per activity), --steps >= 1 and --batch-size >= 2")
    if args.images < args.batch_size * max(args.processes):
        ap.error(f"--images {args.images}: fewer than one global batch (--batch-size x most --processes)")
    if args.store and args.store.exists() and any(args.store.iterdir()):
        ap.error(f"--store {args.store}: not empty (the rehearsal needs a folder of its own)")
    if args.fit_with and not args.fit_with.is_file():
        ap.error(f"--fit-with {args.fit_with}: no such file")
    plan = Plan(images=args.images, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                sample_size=args.sample_size, build_workers=args.build_workers, threads=args.threads,
                processes=tuple(args.processes), modes=tuple(args.modes), seed=args.seed,
                sample_every=args.sample_every, eval_limit=args.eval_limit)  # fmt: skip
    work = args.store or Path(tempfile.mkdtemp(prefix="focus-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    stages = Rehearsal(plan, work, args.json).run()
    record = {"plan": asdict(plan), "machine": _machine(), "command": " ".join(sys.argv), "complete": True,
              "stages": [asdict(s) for s in stages]}  # fmt: skip
    previous = json.loads(args.fit_with.read_text()) if args.fit_with else None
    record["extrapolation"] = extrapolate(stages, plan.images, previous)
    print(report(record, previous))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work)


def report(record: dict, previous: dict | None) -> str:
    """The measured table and the extrapolation, in Markdown."""
    plan = record["plan"]
    return "\n\n".join([
        f"## Scale rehearsal: {plan['images']:,} images, {plan['steps']} steps"
        + ("" if record.get("complete", True) else " (incomplete: the stages measured before it stopped)"),
        f"Machine: {record.get('machine', '-')}. Command: `{record.get('command', '-')}`",
        table(_stages(record)),
        "### Extrapolation",
        extrapolation_table(record["extrapolation"], plan["images"], previous),
    ]) + "\n"  # fmt: skip


def reprint(saved: Path, fit_with: Path | None) -> None:
    """--report: the table of a saved --json again, its extrapolation fitted anew (with --fit-with)."""
    record = json.loads(saved.read_text())
    previous = json.loads(fit_with.read_text()) if fit_with else None
    record["extrapolation"] = extrapolate(_stages(record), record["plan"]["images"], previous)
    print(report(record, previous))


def _stages(record: dict) -> list[Stage]:
    """A saved record's stages, their linear parts as linear_seconds() says now."""
    stages = [Stage(**{**s, "processes": [Proc(**p) for p in s["processes"]]}) for s in record["stages"]]
    for s in stages:
        s.linear_s = linear_seconds(s)
    return stages


if __name__ == "__main__":
    main()
