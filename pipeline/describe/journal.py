"""The journal: one SQLite row per request, committed the moment its response arrives.

It lives in the artifact (journal.sqlite), in WAL mode: a commit is an append to the write-ahead log, so
a crash, Ctrl-C or kill -9 loses at most the requests that were still in flight, and a re-run finds every
finished row by its cache key and sends nothing for it. Rows of earlier configurations stay as a cache,
so changing one parameter and changing it back costs nothing.

`results` holds each row's final answer (its best ask under --retry-invalid); `asks` holds every reply
paid for, re-asks and rows later sent again included, so `spent()` is what the artifact has cost over all
its runs (what --max-cost caps).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from pathlib import Path

from pipeline.artifacts.descriptions import DescriptionResult
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

FILE = "journal.sqlite"
_FIELDS = [f.name for f in dataclasses.fields(DescriptionResult)]
_TYPES = {
    "sample": "INTEGER",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "attempts": "INTEGER",
    "cost_usd": "REAL",
    "latency_s": "REAL",
}


def _row(result: DescriptionResult) -> tuple:
    # Not dataclasses.astuple: it deep-copies every field, which showed up in the throughput profile.
    return tuple(getattr(result, name) for name in _FIELDS)


class Journal:
    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as err:
            raise PipelineError(
                f"{self.path}: not a readable describe journal ({err}); move it aside or "
                f"pass --overwrite to start over"
            ) from None

    def _open(self, readonly: bool) -> None:
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives the process dying (kill -9); only a power cut may lose the last few.
            self.db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(
                f"{name} {_TYPES.get(name, 'TEXT')}" + (" PRIMARY KEY" if name == "cache_key" else "")
                for name in _FIELDS
            )
            self.db.execute(f"CREATE TABLE IF NOT EXISTS results ({cols}, recorded_at REAL)")
            # A journal from an earlier version lacks the newer fields (image_input): add them, empty.
            have = self._columns()
            for name in _FIELDS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE results ADD COLUMN {name} {_TYPES.get(name, 'TEXT')}")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS asks (cache_key TEXT, ask INTEGER, status TEXT, "
                "description TEXT, error TEXT, finish_reason TEXT, prompt_tokens INTEGER, "
                "completion_tokens INTEGER, cost_usd REAL, sampling TEXT, response_id TEXT, recorded_at REAL)"
            )
            # Batch API jobs submitted and not yet collected: a re-run polls them instead of paying again.
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, keys TEXT, "
                "submitted_at REAL, collected INTEGER DEFAULT 0)"
            )
        self._insert = (
            f"INSERT OR REPLACE INTO results ({', '.join(_FIELDS)}, recorded_at) "
            f"VALUES ({', '.join('?' * len(_FIELDS))}, ?)"
        )

    def _columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(results)")}

    def load(self) -> dict[str, DescriptionResult]:
        """Every recorded row by cache key (fields an older read-only journal lacks are None)."""
        try:
            have = self._columns()
            cols = ", ".join(name if name in have else "NULL" for name in _FIELDS)
            rows = self.db.execute(f"SELECT {cols} FROM results").fetchall()
        except sqlite3.OperationalError:  # a read-only journal from before the table existed
            return {}
        except sqlite3.DatabaseError as err:
            raise PipelineError(
                f"{self.path}: not a readable describe journal ({err}); move it aside or "
                f"pass --overwrite to start over"
            ) from None
        return {r[0]: DescriptionResult(*r) for r in rows}

    def record(self, result: DescriptionResult) -> None:
        self.db.execute(self._insert, (*_row(result), time.time()))

    def record_ask(self, result: DescriptionResult, ask: int, sampling: dict) -> None:
        """One reply paid for (before the row's best ask is chosen)."""
        self.db.execute(
            "INSERT INTO asks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (result.cache_key, ask, result.status, result.description, result.error, result.finish_reason,
             result.prompt_tokens, result.completion_tokens, result.cost_usd, json.dumps(sampling),
             result.response_id, time.time()),
        )  # fmt: skip

    def spent(self) -> float:
        """USD paid for every ask this journal recorded (0 for a journal from before asks were kept). A
        negative cost (a malformed usage recorded before usages were checked) counts 0: it never credits the
        budget."""
        try:
            total, negative = self.db.execute(
                "SELECT COALESCE(SUM(MAX(cost_usd, 0)), 0), COALESCE(SUM(cost_usd < 0), 0) FROM asks"
            ).fetchone()
        except sqlite3.OperationalError:
            return 0.0
        if negative:
            log.warning(
                "%s: %d asks recorded a negative cost (an endpoint's malformed usage): counted as $0",
                self.path, negative,
            )  # fmt: skip
        return float(total)

    def record_many(self, results: list[DescriptionResult]) -> None:
        """Many rows in one transaction (the rules describer produces them all at once)."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(self._insert, [(*_row(r), now) for r in results])

    def add_batch(self, batch_id: str, keys: list[str]) -> None:
        self.db.execute(
            "INSERT INTO batches (batch_id, keys, submitted_at) VALUES (?, ?, ?)",
            (batch_id, json.dumps(keys), time.time()),
        )

    def open_batches(self) -> list[tuple[str, list[str]]]:
        rows = self.db.execute("SELECT batch_id, keys FROM batches WHERE collected = 0 ORDER BY submitted_at")
        return [(b, json.loads(k)) for b, k in rows.fetchall()]

    def close_batch(self, batch_id: str) -> None:
        self.db.execute("UPDATE batches SET collected = 1 WHERE batch_id = ?", (batch_id,))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def checkpoint(self) -> None:
        """Fold the WAL into the main file, so the published artifact is one self-contained file."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
