"""The artifact store: one root, one folder per stage kind, named artifacts that appear atomically.

    store = Store.from_env("./artifacts")          # or FOCUS_STORE / --store; any fsspec URL works
    with store.create("annotations", "mpii", stage="convert", config=cfg.recorded(), inputs=[]) as w:
        annotations.write(w.dir / annotations.FILE, rows)
        w.counts["images"] = len(rows)
    store.meta("annotations", "mpii")["counts"]      # lineage, config, fingerprints, counts

Layout: <root>/<kind>/<name>/{meta.json, ...}. A stage writes into a hidden staging folder
(<root>/<kind>/.staging/<name>) under an exclusive lock file, then renames it into place, so a crash never
leaves a half artifact that a later stage would read as whole: an artifact exists iff its meta.json does.
Remote roots (s3://, gs://, memory://) stage locally and upload meta.json last.

A meta.json damaged afterwards (truncated, edited by hand) makes its artifact `corrupt`: reading it is a
one-line error naming the file, `store ls` lists it as corrupt, `store rm --force` removes it, and since its
inputs are unknown, no artifact it may have been built from is removed without --force.

Whether a finished artifact can be reused is decided here (is_current), from the config as its stage recorded
it: `recorded(cfg)` walks a config dataclass, and its fields say what they are. A field made with
`run_only(...)` says how a stage runs, not what it makes (workers, device, --overwrite): it is recorded but
never makes an artifact stale. A field made with `secret(...)` (an API key) is never recorded at all.

    @dataclass
    class BuildConfig:
        annotations: str
        workers: int = run_only(0)

        def recorded(self) -> Recorded:
            return recorded(self)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import ArtifactBusyError, PipelineError

log = logging.getLogger(__name__)

KINDS = ("annotations", "descriptions", "datasets", "runs", "evals", "reports")
DEFAULT_ROOT = "./artifacts"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# What every published meta.json holds (Store._publish) and readers rely on, with its JSON type.
_META_FIELDS = {"stage": str, "config": dict, "inputs": list, "counts": dict, "fingerprint": str}
# Config keys whose values never reach meta.json or logs.
_SECRET = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)


def redact(config: Any) -> Any:
    """Copy of a config with every secret-looking value replaced, and URL credentials stripped."""
    if isinstance(config, Mapping):
        # Only strings can be secrets: numbers under such keys (max_tokens, prompt_tokens) are kept.
        return {
            k: ("***" if _SECRET.search(str(k)) and isinstance(v, str) and v else redact(v))
            for k, v in config.items()
        }
    if isinstance(config, list | tuple):
        return [redact(v) for v in config]
    if isinstance(config, str) and "://" in config and "@" in config.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = config.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    if isinstance(config, Path):
        return str(config)
    return config


def _plain(value: Any) -> Any:
    """A value as it reads back from meta.json (tuples as lists, paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def run_only(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A config field that says how a stage runs, not what it makes (workers, device, --overwrite): recorded
    in meta.json, never a reason to make an artifact again."""
    return field(default=default, default_factory=default_factory, metadata={"run_only": True})


def secret(default: Any = None) -> Any:
    """A config field that is never recorded, logged or shown (an API key)."""
    return field(default=default, repr=False, metadata={"secret": True})


@dataclass(frozen=True, slots=True)
class Recorded:
    """A config as meta.json records it: `config` (plain JSON, no secret) and the names of its run-only keys,
    which is_current ignores. Made by `recorded(cfg)`, or by `Recorded.plain(dict)` for an ad hoc config."""

    config: dict[str, Any]
    run_only: frozenset[str] = frozenset()

    @classmethod
    def plain(cls, config: Mapping[str, Any], run_only: Iterable[str] = ()) -> Recorded:
        return cls(_plain(redact(dict(config))), frozenset(run_only))

    def add(self, values: Mapping[str, Any], *, run_only: Iterable[str] = ()) -> Recorded:
        """This record with more (derived) keys; a key already there keeps its place and takes the value."""
        extra = Recorded.plain(values, run_only)
        return Recorded(self.config | extra.config, self.run_only | extra.run_only)


def _field_value(value: Any) -> Any:
    """A field's value with nested config dataclasses as objects, their secret fields left out."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _field_value(getattr(value, f.name))
            for f in fields(value)
            if not f.metadata.get("secret")
        }
    return value


def recorded(cfg: Any, *, leave_out: Iterable[str] = ()) -> Recorded:
    """What the config dataclass `cfg` records: every field but its secret ones and `leave_out`, as plain
    JSON (paths as text, tuples as lists, a nested dataclass as an object), and its run-only field names."""
    skip = set(leave_out)
    kept = [f for f in fields(cfg) if f.name not in skip and not f.metadata.get("secret")]
    return Recorded.plain(
        {f.name: _field_value(getattr(cfg, f.name)) for f in kept},
        run_only=(f.name for f in kept if f.metadata.get("run_only")),
    )


def _as_recorded(config: Recorded | Mapping[str, Any]) -> Recorded:
    """A plain mapping (a test, a one-off tool) records every key as content."""
    return config if isinstance(config, Recorded) else Recorded.plain(config)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # fullmatch: `$` would let "x\n" through
        raise PipelineError(f"invalid artifact name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def fingerprint_dir(path: Path) -> str:
    """SHA-256 over every file's relative path and content (meta.json excluded): what later stages pin."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "meta.json"):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str | None, *, remedy: str) -> None:
    """One-line error naming the file when its content is not what was recorded when it was written."""
    if expected is None:
        raise PipelineError(f"{path}: no checksum was recorded for it, so it cannot be trusted; {remedy}")
    got = file_sha256(path)
    if got != expected:
        raise PipelineError(
            f"{path}: corrupt (sha256 {got[:12]}... differs from the {expected[:12]}... recorded when it "
            f"was written); {remedy}"
        )


def meta_problem(meta: Any) -> str | None:
    """What makes a parsed meta.json unusable (None when nothing does)."""
    if not isinstance(meta, dict):
        return f"holds a JSON {type(meta).__name__}, not an object"
    missing = [k for k, kind in _META_FIELDS.items() if not isinstance(meta.get(k), kind)]
    if missing:
        return f"lacks a valid {', '.join(missing)}"
    if not all(isinstance(i, dict) and isinstance(i.get("kind"), str) and isinstance(i.get("name"), str)
               for i in meta["inputs"]):  # fmt: skip
        return "has an input that is not {kind, name, fingerprint}"
    run_only = meta.get("run_only", [])  # absent in artifacts written before fields said so
    if not (isinstance(run_only, list) and all(isinstance(k, str) for k in run_only)):
        return "has a run_only that is not a list of config keys"
    return None


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(slots=True)
class ArtifactWriter:
    """What a stage fills while its artifact is being written: files under `dir`, counts, extra meta."""

    dir: Path
    ref: ArtifactRef
    counts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class _Lock:
    """An exclusive flock on a lock file; the kernel releases it when the holder exits, however it dies.

    The file holds the holder's host and pid, only for the busy message: whether a lock is held is the
    kernel's answer, so a writer killed with -9 never leaves a lock that two waiting processes could both
    take over. flock works across hosts on NFS (Linux emulates it with fcntl locks there); for fsspec roots
    the lock lives in the local staging area, so it keeps writers on one machine apart, not on several.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise ArtifactBusyError(
                    f"{self.path.parent.parent.name}/{self.path.stem} is being written by another process "
                    f"({holder}); wait for it to finish"
                ) from None
            except OSError as err:  # e.g. a FUSE mount without flock support
                os.close(fd)
                raise PipelineError(f"{self.path}: cannot be locked here ({err.strerror or err})") from None
            # A releasing holder unlinks the file while it still holds it: if that happened between our
            # open and flock, we hold a lock on a deleted file, which excludes nobody; open it again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self._holder(fd)
        if previous != "unknown holder":
            log.warning(
                "taking over %s: its previous writer (%s) ended without releasing it", self.path, previous
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(), 0)
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0))
            return f"pid {info['pid']} on {info['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "unknown holder"

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: see acquire
        os.close(self._fd)
        self._fd = None


class Store:
    """Named artifacts per kind under one root (a local folder or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT):
        root = str(root)
        self.is_local = "://" not in root or root.startswith("file://")
        if self.is_local:
            self.root = Path(root.removeprefix("file://")).expanduser().resolve()
            self._fs = None
        else:
            import fsspec

            self.root = root.rstrip("/")
            self._fs, _ = fsspec.core.url_to_fs(self.root)

    @classmethod
    def from_env(cls, root: str | None = None) -> Store:
        return cls(root or os.environ.get("FOCUS_STORE") or DEFAULT_ROOT)

    # ---- addresses -------------------------------------------------------------------------------
    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise PipelineError(f"unknown artifact kind {kind!r} (one of {', '.join(KINDS)})")

    def _check(self, kind: str, name: str) -> None:
        self._check_kind(kind)
        check_name(name)

    def url(self, kind: str, name: str) -> str:
        self._check(kind, name)
        return str(self.root / kind / name) if self.is_local else f"{self.root}/{kind}/{name}"

    def _local_base(self) -> Path:
        """Where staging, locks and caches live: inside the root when local, a per-root cache otherwise."""
        if self.is_local:
            return self.root
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        return Path(os.environ.get("FOCUS_CACHE", Path.home() / ".cache" / "focus-pipeline")) / digest

    def staging_dir(self, kind: str, name: str) -> Path:
        self._check(kind, name)
        return self._local_base() / kind / ".staging" / name

    def cache_dir(self, *parts: str) -> Path:
        """A local, persistent scratch folder for derived data (decoded image caches, video frames)."""
        path = self._local_base() / ".cache" / Path(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- reading ---------------------------------------------------------------------------------
    def exists(self, kind: str, name: str) -> bool:
        meta = f"{self.url(kind, name)}/meta.json"
        return Path(meta).is_file() if self.is_local else self._fs.exists(meta)

    def meta(self, kind: str, name: str) -> dict[str, Any]:
        """The artifact's meta.json; a one-line error naming the file when it is unreadable or incomplete."""
        if not self.exists(kind, name):
            raise PipelineError(
                f"no artifact {kind}/{name} in store {self.root} (see `focus-pipeline store ls`)"
            )
        meta, problem = self._read_meta(kind, name)
        if problem:
            raise PipelineError(
                f"{problem}; {kind}/{name} cannot be used: make it again, or remove it with "
                f"`focus-pipeline store rm {kind} {name} --force`"
            )
        return meta

    def _read_meta(self, kind: str, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """(meta, None), or (None, "<path>: what is wrong with it")."""
        path = f"{self.url(kind, name)}/meta.json"
        try:
            if self.is_local:
                meta = json.loads(Path(path).read_bytes())
            else:
                with self._fs.open(path, "rb") as fh:
                    meta = json.loads(fh.read())
        except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
            return None, f"{path}: not readable JSON ({type(err).__name__}: {err})"
        problem = meta_problem(meta)
        return (None, f"{path}: {problem}") if problem else (meta, None)

    def path(self, kind: str, name: str) -> Path:
        """A local folder holding the artifact's files (downloaded once per fingerprint for remote roots)."""
        meta = self.meta(kind, name)
        if self.is_local:
            return self.root / kind / name
        local = self._local_base() / ".downloads" / kind / name / meta["fingerprint"][:16]
        if not (local / "meta.json").is_file():
            tmp = local.with_name(local.name + f".tmp-{uuid.uuid4().hex[:8]}")
            self._fs.get(f"{self.url(kind, name)}/", str(tmp), recursive=True)
            tmp.rename(local)
        return local

    def check_replace(self, kind: str, name: str, overwrite: bool) -> None:
        """Raise unless kind/name may be written: it does not exist yet, or --overwrite was given."""
        self._check(kind, name)
        if not overwrite and self.exists(kind, name):
            raise PipelineError(
                f"artifact {kind}/{name} already exists in {self.root} (pass --overwrite, or "
                f"choose another --name)"
            )

    def is_current(
        self,
        kind: str,
        name: str,
        *,
        config: Recorded | Mapping[str, Any],
        inputs: Sequence[Mapping[str, str]] = (),
        files: Sequence[Path] = (),
    ) -> bool:
        """Whether kind/name exists and is what its stage would make now: its recorded config equals
        `config` (run-only keys aside), it was made from exactly `inputs` (store.ref fingerprints) and, for
        an artifact read from outside files (convert's sources), those files still have the recorded sha256.

            if not store.is_current("datasets", "mpii", config=cfg.recorded(), inputs=refs): build(cfg)

        A key is run-only when this config or the recorded one says so: an artifact written before its
        stage marked its fields (no run_only in meta.json) is still current when only such keys differ.
        """
        if not self.exists(kind, name):
            return False
        meta = self.meta(kind, name)
        wanted = _as_recorded(config)
        ignored = wanted.run_only | set(meta.get("run_only", []))
        have = {k: v for k, v in meta["config"].items() if k not in ignored}
        want = {k: v for k, v in wanted.config.items() if k not in ignored}
        changed = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
        if changed:
            log.info("%s/%s: config changed (%s), not current", kind, name, ", ".join(changed))
            return False
        have = {(i["kind"], i["name"]): i.get("fingerprint") for i in meta.get("inputs", [])}
        if have != {(i["kind"], i["name"]): i["fingerprint"] for i in inputs}:
            log.info("%s/%s: its inputs changed, not current", kind, name)
            return False
        recorded_files = [f.get("sha256") for f in meta.get("source_files", [])]
        if files and recorded_files != [file_sha256(f) for f in files]:
            log.info("%s/%s: its source files changed, not current", kind, name)
            return False
        return True

    def ref(self, kind: str, name: str) -> dict[str, str]:
        """How a later artifact records this one as an input: kind, name and content fingerprint."""
        return {"kind": kind, "name": name, "fingerprint": self.meta(kind, name)["fingerprint"]}

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """One row per artifact: kind, name, status (ok | corrupt), stage, created_at, counts, inputs
        ("kind/name"; None when unknown) and, for a corrupt one, `problem` (the file and what is wrong)."""
        if kind:
            self._check_kind(kind)
        out = []
        for k in [kind] if kind else KINDS:
            base = f"{self.root}/{k}"
            if self.is_local:
                names = sorted(p.name for p in Path(base).glob("*") if (p / "meta.json").is_file())
            else:
                names = sorted(
                    p.rsplit("/", 1)[-1]
                    for p in (self._fs.ls(base, detail=False) if self._fs.exists(base) else [])
                    if self._fs.exists(f"{p}/meta.json")
                )
            for n in names:
                m, problem = self._read_meta(k, n)
                if problem:
                    out.append({"kind": k, "name": n, "status": "corrupt", "stage": None, "created_at": None,
                                "counts": {}, "inputs": None, "problem": problem})  # fmt: skip
                    continue
                out.append(
                    {
                        "kind": k,
                        "name": n,
                        "status": "ok",
                        "stage": m["stage"],
                        "created_at": m.get("created_at"),
                        "counts": m["counts"],
                        "inputs": [f"{i['kind']}/{i['name']}" for i in m["inputs"]],
                    }
                )
        return out

    def dependents(self, kind: str, name: str) -> list[str]:
        """The artifacts ("kind/name") whose meta.json lists kind/name as an input."""
        if not self.exists(kind, name):
            raise PipelineError(f"no artifact {kind}/{name} in store {self.root}")
        me = f"{kind}/{name}"
        return [f"{r['kind']}/{r['name']}" for r in self.list() if me in (r["inputs"] or ())]

    def unknown_lineage(self, kind: str, name: str) -> list[str]:
        """The other artifacts whose inputs cannot be read (a corrupt meta.json): any of them may have been
        built from kind/name, so removing it is as unsafe as removing an input ("kind/name: the problem")."""
        return [
            f"{r['kind']}/{r['name']} ({r['problem']})"
            for r in self.list()
            if r["inputs"] is None and (r["kind"], r["name"]) != (kind, name)
        ]

    # ---- writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def create(
        self,
        kind: str,
        name: str,
        *,
        stage: str,
        config: Recorded | Mapping[str, Any],
        inputs: list[dict[str, str]] | None = None,
        overwrite: bool = False,
        resumable: bool = False,
        seed_from_existing: bool = False,
    ) -> Iterator[ArtifactWriter]:
        """Write an artifact aside and publish it atomically when the block exits cleanly.

        resumable: keep the staging folder when the block fails or is interrupted, so the next run of the
            same stage continues from what was already written (describe's journal, train's checkpoints).
        seed_from_existing: start the staging folder from the published artifact's files (describe re-runs
            with a changed parameter keep their journal).
        """
        self.check_replace(kind, name, overwrite or seed_from_existing)
        staging = self.staging_dir(kind, name)
        lock = _Lock(staging.with_name(name + ".lock"))
        lock.acquire()
        try:
            if staging.exists() and not resumable:
                shutil.rmtree(staging)
            if not staging.exists() and seed_from_existing and self.exists(kind, name):
                shutil.copytree(self.path(kind, name), staging)
                (staging / "meta.json").unlink(missing_ok=True)
            staging.mkdir(parents=True, exist_ok=True)
            writer = ArtifactWriter(dir=staging, ref=ArtifactRef(kind, name))
            try:
                yield writer
            except BaseException:
                if not resumable:
                    shutil.rmtree(staging, ignore_errors=True)
                raise
            self._publish(writer, stage=stage, config=_as_recorded(config), inputs=inputs or [])
        finally:
            lock.release()

    def _publish(
        self, writer: ArtifactWriter, *, stage: str, config: Recorded, inputs: list[dict[str, str]]
    ) -> None:
        kind, name = writer.ref.kind, writer.ref.name
        meta = {
            "kind": kind,
            "name": name,
            "stage": stage,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "version": __version__,
            "config": config.config,
            "run_only": sorted(config.run_only),
            "inputs": list(inputs),
            "counts": writer.counts,
            "fingerprint": fingerprint_dir(writer.dir),
            **redact(writer.extra),
        }
        tmp_meta = writer.dir / "meta.json.tmp"
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n")
        tmp_meta.rename(writer.dir / "meta.json")
        if self.is_local:
            final = self.root / kind / name
            final.parent.mkdir(parents=True, exist_ok=True)
            trash = None
            if final.exists():
                trash = final.with_name(f".trash-{name}-{uuid.uuid4().hex[:8]}")
                final.rename(trash)
            writer.dir.rename(final)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        else:
            # Object stores have no rename: upload everything, meta.json last, so a reader that sees
            # meta.json sees a complete artifact.
            dest = self.url(kind, name)
            if self._fs.exists(dest):
                self._fs.rm(dest, recursive=True)
            for f in sorted(p for p in writer.dir.rglob("*") if p.is_file() and p.name != "meta.json"):
                self._fs.put_file(str(f), f"{dest}/{f.relative_to(writer.dir).as_posix()}")
            self._fs.put_file(str(writer.dir / "meta.json"), f"{dest}/meta.json")
            shutil.rmtree(writer.dir, ignore_errors=True)
        log.info("wrote %s/%s -> %s", kind, name, self.url(kind, name))

    def delete(self, kind: str, name: str) -> None:
        if not self.exists(kind, name):
            raise PipelineError(f"no artifact {kind}/{name} in store {self.root}")
        if self.is_local:
            shutil.rmtree(self.root / kind / name)
        else:
            self._fs.rm(self.url(kind, name), recursive=True)
