"""The artifact store: atomic publication, one writer at a time, stale locks, lineage, redaction, fsspec."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.errors import ArtifactBusyError, PipelineError
from pipeline.store import Recorded, Store, file_sha256, fingerprint_dir, recorded, redact, run_only, secret

ROOT = Path(__file__).resolve().parents[1]


def _write(store: Store, name: str, text: str = "hello", **kwargs) -> None:
    with store.create("annotations", name, stage="test", config={"n": 1}, **kwargs) as w:
        (w.dir / "data.txt").write_text(text)
        w.counts["rows"] = 1


def test_exception_inside_create_leaves_no_artifact(store):
    with (
        pytest.raises(RuntimeError, match="boom"),
        store.create("annotations", "x", stage="t", config={}) as w,
    ):
        (w.dir / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert not store.exists("annotations", "x")
    assert not (store.root / "annotations" / "x").exists()
    assert not store.staging_dir("annotations", "x").exists()
    assert store.list() == []
    _write(store, "x")  # the lock was released: a retry works
    assert (store.path("annotations", "x") / "data.txt").read_text() == "hello"


def test_resumable_keeps_staging_and_overwrite_replaces(store):
    with (
        pytest.raises(KeyboardInterrupt),
        store.create("runs", "r", stage="t", config={}, resumable=True) as w,
    ):
        (w.dir / "checkpoint.pt").write_text("step 5")
        raise KeyboardInterrupt
    with store.create("runs", "r", stage="t", config={}, resumable=True) as w:
        assert (w.dir / "checkpoint.pt").read_text() == "step 5"
    _write(store, "a", "one")
    with pytest.raises(PipelineError, match="already exists"):
        _write(store, "a", "two")
    _write(store, "a", "two", overwrite=True)
    assert (store.path("annotations", "a") / "data.txt").read_text() == "two"
    assert not list((store.root / "annotations").glob(".trash-*"))


HOLDER = """
import sys, time
from pathlib import Path
from pipeline.store import Store
store, ready, release = Store(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with store.create("annotations", "busy", stage="holder", config={}) as w:
    (w.dir / "data.txt").write_text("from the first writer")
    ready.write_text("ready")
    while not release.exists():
        time.sleep(0.02)
"""


def test_concurrent_second_writer_gets_a_clear_error(store, tmp_path):
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), str(ready), str(release)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "holder process did not start"
            time.sleep(0.02)
        with pytest.raises(ArtifactBusyError) as err:
            _write(store, "busy", "from the second writer")
        msg = str(err.value)
        assert "annotations/busy is being written by another process" in msg and f"pid {proc.pid}" in msg
        assert "\n" not in msg
    finally:
        release.write_text("go")
        assert proc.wait(timeout=60) == 0
    # The first writer's artifact is whole, untouched by the refused second writer.
    assert (store.path("annotations", "busy") / "data.txt").read_text() == "from the first writer"
    assert store.meta("annotations", "busy")["stage"] == "holder"


def test_lock_of_a_writer_killed_with_sigkill_is_taken_over(store, tmp_path, caplog):
    ready, release = tmp_path / "ready", tmp_path / "never"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), str(ready), str(release)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "holder process did not start"
            time.sleep(0.02)
        with pytest.raises(ArtifactBusyError, match=f"pid {proc.pid} on"):
            _write(store, "busy")
    finally:
        proc.kill()
        proc.wait()
    lock = store.staging_dir("annotations", "busy").with_name("busy.lock")
    assert lock.exists()  # the dead writer's file stays, but the kernel released its lock
    with caplog.at_level("WARNING"):
        _write(store, "busy")
    assert store.exists("annotations", "busy") and not lock.exists()
    assert f"previous writer (pid {proc.pid} on" in caplog.text


# Run in a fresh interpreter that imports only the store: forking a pytest process that has torch loaded
# costs ~20 s for these 240 forks instead of ~4.
RACE = """
import json, multiprocessing as mp, os, sys, time
from collections import Counter
from pathlib import Path
from pipeline.errors import ArtifactBusyError
from pipeline.store import Store

root, marks, trials = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

def contend(start):
    start.wait()
    try:
        with Store(root).create("descriptions", "race", stage="t", config={}, resumable=True):
            # O_EXCL on a marker: a second simultaneous holder fails to create it.
            fd = os.open(marks / "holder", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            time.sleep(0.02)
            os.close(fd)
            os.unlink(marks / "holder")
            raise KeyboardInterrupt  # leave without publishing, like an interrupted describe
    except KeyboardInterrupt:
        os._exit(0)
    except ArtifactBusyError:
        os._exit(3)
    except FileExistsError:
        os._exit(9)  # two holders at once

def die_holding():
    writing = Store(root).create("descriptions", "race", stage="t", config={}, resumable=True)
    writing.__enter__()  # kept referenced: a collected generator would run its cleanup and release
    os.kill(os.getpid(), 9)

ctx = mp.get_context("fork")
outcomes = Counter()
for _ in range(trials):
    dead = ctx.Process(target=die_holding)
    dead.start()
    dead.join()
    assert dead.exitcode == -9
    start = ctx.Event()
    procs = [ctx.Process(target=contend, args=(start,)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(30)
        outcomes[p.exitcode] += 1
print(json.dumps(outcomes))
"""


def test_stale_lock_race_never_has_two_holders(store, tmp_path):
    """The issue's case: a writer died holding the lock and 3 processes start at once (60 trials).

    With the old read-pid / delete / create lock, 13 to 81 of the 180 contenders held it alongside another
    (5 runs); with flock, none."""
    marks = tmp_path / "marks"
    marks.mkdir()
    race = subprocess.run(
        [sys.executable, "-c", RACE, str(store.root), str(marks), "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert race.returncode == 0, race.stderr[-2000:]
    outcomes = {int(k): v for k, v in json.loads(race.stdout).items()}
    assert outcomes.get(9, 0) == 0, f"two holders at once in {outcomes[9]} contenders: {outcomes}"
    assert outcomes[0] >= 60 and set(outcomes) <= {0, 3}, outcomes


def test_meta_lineage(store):
    _write(store, "src")
    ref = store.ref("annotations", "src")
    assert ref == {
        "kind": "annotations",
        "name": "src",
        "fingerprint": fingerprint_dir(store.path("annotations", "src")),
    }
    with store.create("descriptions", "d", stage="describe", config={"model": "m"}, inputs=[ref]) as w:
        (w.dir / "out.txt").write_text("x")
        w.counts["ok"] = 3
        w.extra["template_hash"] = "abc"
    meta = store.meta("descriptions", "d")
    assert meta["stage"] == "describe" and meta["kind"] == "descriptions" and meta["name"] == "d"
    assert meta["inputs"] == [ref] and meta["counts"] == {"ok": 3} and meta["template_hash"] == "abc"
    assert meta["config"] == {"model": "m"} and meta["version"] and meta["created_at"].endswith("+00:00")
    assert len(meta["fingerprint"]) == 64
    listed = store.list("descriptions")
    assert listed[0]["inputs"] == ["annotations/src"] and listed[0]["counts"] == {"ok": 3}


def test_secrets_are_redacted(store):
    secret = "sk-test-" + uuid.uuid4().hex
    config = {
        "api_key": secret,
        "nested": {"Authorization": f"Bearer {secret}", "access_token": secret},
        "base_url": f"https://user:{secret}@example.com/v1",
        "keep": "visible",
        "empty_token": None,
    }
    assert redact(config)["api_key"] == "***" and redact(config)["base_url"] == "https://example.com/v1"
    assert redact(config)["empty_token"] is None  # nothing to hide
    with store.create("descriptions", "sec", stage="t", config=config) as w:
        w.extra["headers"] = {"X-Api-Key": secret}
    text = (store.path("descriptions", "sec") / "meta.json").read_text()
    assert secret not in text and "visible" in text


def test_names_and_kinds_are_checked(store):
    with pytest.raises(PipelineError, match="invalid artifact name"):
        store.url("annotations", "../escape")
    for bad in ("name\n", "na\tme", "a\x00b", "", ".hidden"):
        with pytest.raises(PipelineError, match="invalid artifact name"):
            store.url("annotations", bad)
    with pytest.raises(PipelineError, match="unknown artifact kind"):
        store.url("weights", "x")
    with pytest.raises(PipelineError, match="unknown artifact kind 'run'"):  # not an empty listing
        store.list("run")
    with pytest.raises(PipelineError, match="no artifact annotations/none"):
        store.meta("annotations", "none")


def test_cli_refuses_names_with_control_characters(cli, store, tmp_path):
    """Before: a name with a trailing newline passed the check (`$` matches before a final newline)."""
    src = tmp_path / "a.json"
    src.write_text("[]")
    for bad in ("mpii\n", "mp\x1bii", "mpii\r"):
        res = cli("convert", src, "--name", bad)
        assert res.exit_code == 2 and f"invalid artifact name {bad!r}" in res.output, res.output
    assert store.list() == [] and not (store.root / "annotations").exists()


def test_fsspec_memory_root_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCUS_CACHE", str(tmp_path / "cache"))
    store = Store(f"memory://focus-test-{uuid.uuid4().hex[:8]}")
    assert not store.is_local
    with store.create("annotations", "remote", stage="t", config={"a": 1}) as w:
        (w.dir / "sub").mkdir()
        (w.dir / "sub" / "data.txt").write_text("remote data")
        w.counts["rows"] = 7
    assert store.exists("annotations", "remote")
    assert store.meta("annotations", "remote")["counts"] == {"rows": 7}
    local = store.path("annotations", "remote")
    assert (local / "sub" / "data.txt").read_text() == "remote data"
    assert str(local).startswith(str(tmp_path / "cache"))
    assert [r["name"] for r in store.list()] == ["remote"]
    store.delete("annotations", "remote")
    assert not store.exists("annotations", "remote")


def test_store_cli(cli, store):
    _write(store, "one")
    result = cli("store", "ls")
    assert result.exit_code == 0 and "annotations/one" in result.output and "rows=1" in result.output
    listed = json.loads(cli("store", "ls", "--json").stdout)
    assert listed[0]["name"] == "one" and listed[0]["stage"] == "test"
    shown = json.loads(cli("store", "show", "annotations", "one").stdout)
    assert shown["counts"] == {"rows": 1}
    assert cli("store", "rm", "annotations", "one").exit_code == 0
    assert "(no artifacts" in cli("store", "ls").output
    missing = cli("store", "show", "annotations", "one")
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: no artifact annotations/one")


def test_store_ls_has_a_header_and_aligned_columns(cli, store):
    _write(store, "one")
    _write(store, "a-much-longer-name")
    lines = cli("store", "ls").output.splitlines()
    assert lines[0].split() == ["ARTIFACT", "CREATED", "COUNTS", "INPUTS"]
    created = [ln.index(ln.split()[1]) for ln in lines]  # the second column starts at one offset
    assert len(set(created)) == 1


def test_store_rm_refuses_an_artifact_others_depend_on(cli, store):
    _write(store, "src")
    with store.create(
        "descriptions", "derived", stage="test", config={}, inputs=[store.ref("annotations", "src")]
    ) as w:
        (w.dir / "x.txt").write_text("x")
    assert store.dependents("annotations", "src") == ["descriptions/derived"]
    refused = cli("store", "rm", "annotations", "src")
    assert refused.exit_code == 2 and "descriptions/derived" in refused.output and "--force" in refused.output
    assert store.exists("annotations", "src")
    forced = cli("store", "rm", "annotations", "src", "--force")
    assert forced.exit_code == 0 and not store.exists("annotations", "src")


@pytest.mark.slow
def test_version_and_a_closed_pipe(store_root):
    exe = Path(sys.executable).with_name("focus-pipeline")
    if not exe.is_file():
        pytest.skip("focus-pipeline entry point not installed in this environment")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("focus-pipeline ")
    store = Store(store_root)
    for i in range(1200):
        _write(store, f"artifact-{i:03d}")
    # `store ls | head -1`: the reader closes the pipe early; no traceback, no error line
    shell = f"{exe} --store {store_root} store ls | head -1"
    res = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert res.stdout.startswith("ARTIFACT") and res.stderr == ""


def test_is_current_compares_recorded_config_inputs_and_source_files(store, tmp_path):
    source = tmp_path / "src.mat"
    source.write_bytes(b"one")
    _write(store, "a")
    config = {"sources": (Path("x.json"),), "seed": 0, "overwrite": False, "api_key": "sk-secret"}

    def rec(values: dict) -> Recorded:
        return Recorded.plain(values, run_only=["overwrite"])

    inputs = [store.ref("annotations", "a")]
    with store.create("datasets", "d", stage="t", config=rec(config), inputs=inputs) as w:
        (w.dir / "f.txt").write_text("d")
        w.extra["source_files"] = [{"path": str(source), "sha256": file_sha256(source)}]
    assert store.meta("datasets", "d")["run_only"] == ["overwrite"]
    # Tuples, paths and redacted secrets compare as meta.json records them; run-only keys do not count.
    rerun = rec(config | {"overwrite": True})
    assert store.is_current("datasets", "d", config=rerun, inputs=inputs, files=[source])
    # what meta.json calls run-only counts even when the config asked about does not say so
    assert store.is_current("datasets", "d", config=config | {"overwrite": True}, inputs=inputs)
    assert not store.is_current("datasets", "d", config=rec(config | {"seed": 1}), inputs=inputs)
    assert not store.is_current("datasets", "d", config=rec({**config, "new_key": 1}), inputs=inputs)
    assert not store.is_current("datasets", "d", config=rec(config), inputs=[])
    assert not store.is_current("datasets", "nope", config=rec(config), inputs=inputs)
    source.write_bytes(b"two")
    assert not store.is_current("datasets", "d", config=rec(config), inputs=inputs, files=[source])
    _write(store, "a", "changed", overwrite=True)
    assert not store.is_current("datasets", "d", config=rec(config), inputs=[store.ref("annotations", "a")])


@dataclass
class _Inner:
    depth: int = 2
    token: str | None = secret("hidden")


@dataclass
class _Config:
    name: str
    paths: tuple[Path, ...] = (Path("a.json"),)
    inner: _Inner = field(default_factory=_Inner)
    workers: int = run_only(0)
    api_key: str | None = secret()


def test_recorded_keeps_content_marks_run_only_and_drops_secrets():
    got = recorded(_Config("x", api_key="sk-" + uuid.uuid4().hex))
    assert got.config == {"name": "x", "paths": ["a.json"], "inner": {"depth": 2}, "workers": 0}
    assert got.run_only == {"workers"}
    assert recorded(_Config("x"), leave_out=["paths"]).config.keys() == {"name", "inner", "workers"}
    more = got.add({"paths": None, "derived": (1, 2)}, run_only=["derived"])
    assert list(more.config) == ["name", "paths", "inner", "workers", "derived"]  # keys keep their place
    assert more.config["derived"] == [1, 2] and more.run_only == {"workers", "derived"}
    assert "api_key" not in repr(_Config("x", api_key="sk-shown"))


def test_an_artifact_written_before_fields_were_marked_stays_current(store):
    """meta.json without a run_only list (older versions): a key that is run-only now never makes it stale."""
    with store.create("annotations", "old", stage="t", config=recorded(_Config("x", workers=4))) as w:
        (w.dir / "f.txt").write_text("x")
    meta_path = store.path("annotations", "old") / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["run_only"]
    meta_path.write_text(json.dumps(meta))
    assert store.is_current("annotations", "old", config=recorded(_Config("x", workers=1)))
    assert not store.is_current("annotations", "old", config=recorded(_Config("y", workers=4)))
    # and the other way round: what the recorded artifact calls run-only is ignored too
    meta["run_only"] = ["name"]
    meta_path.write_text(json.dumps(meta))
    assert store.is_current(
        "annotations", "old", config=Recorded.plain(recorded(_Config("y", workers=4)).config)
    )
    meta["run_only"] = "name"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PipelineError, match="run_only that is not a list"):
        store.meta("annotations", "old")


def test_check_replace(store):
    store.check_replace("annotations", "a", overwrite=False)
    _write(store, "a")
    with pytest.raises(PipelineError, match=r"annotations/a already exists .*--overwrite"):
        store.check_replace("annotations", "a", overwrite=False)
    store.check_replace("annotations", "a", overwrite=True)
    with pytest.raises(PipelineError, match="invalid artifact name"):
        store.check_replace("annotations", "../x", overwrite=True)


def _derived(store: Store) -> None:
    """annotations/src and descriptions/derived made from it."""
    _write(store, "src")
    with store.create(
        "descriptions", "derived", stage="test", config={}, inputs=[store.ref("annotations", "src")]
    ) as w:
        (w.dir / "x.txt").write_text("x")


def test_a_corrupt_meta_is_listed_shown_removed_and_named_by_every_reader(cli, store):
    _derived(store)
    meta = store.root / "descriptions" / "derived" / "meta.json"
    meta.write_text('{"stage":\n')  # a truncated write
    listed = cli("store", "ls")
    assert listed.exit_code == 0, listed.output
    row = next(ln for ln in listed.output.splitlines() if ln.startswith("descriptions/derived"))
    assert "corrupt" in row and f"{meta}: not readable JSON" in row
    (entry,) = [r for r in json.loads(cli("store", "ls", "--json").stdout) if r["name"] == "derived"]
    assert entry["status"] == "corrupt" and entry["inputs"] is None and str(meta) in entry["problem"]
    shown = cli("store", "show", "descriptions", "derived")
    assert shown.exit_code == 2 and len(shown.output.strip().splitlines()) == 1
    assert shown.output.startswith(f"error: {meta}: not readable JSON (JSONDecodeError")
    assert "store rm descriptions derived --force" in shown.output
    # Another stage reading it: one line naming the file, not a bare JSONDecodeError.
    with pytest.raises(PipelineError, match=f"^{re.escape(str(meta))}: not readable JSON"):
        store.path("descriptions", "derived")
    removed = cli("store", "rm", "descriptions", "derived", "--force")
    assert removed.exit_code == 0 and not store.exists("descriptions", "derived")
    # An input read by a stage: `describe` of annotations whose meta.json is a JSON list.
    (store.root / "annotations" / "src" / "meta.json").write_text("[]")
    described = cli("describe", "--annotations", "src", "--backend", "rules")
    assert described.exit_code == 2 and len(described.output.strip().splitlines()) == 1
    assert "annotations/src/meta.json: holds a JSON list, not an object" in described.output


def test_rm_refuses_while_a_dependent_has_no_readable_inputs(cli, store):
    _derived(store)
    (store.root / "descriptions" / "derived" / "meta.json").write_text("{}")
    refused = cli("store", "rm", "annotations", "src")
    assert refused.exit_code == 2 and "may be an input of descriptions/derived" in refused.output
    assert "lacks a valid stage, config, inputs, counts, fingerprint" in refused.output
    assert store.exists("annotations", "src")
    forced = cli("store", "rm", "annotations", "src", "--force")
    assert forced.exit_code == 0 and not store.exists("annotations", "src")
