"""The run ledger: experiment tracking in SQLite (WAL) at ``.mlprism/ledger.db``.

Tables:

- ``runs``       id, spec name, spec file, kind (``run`` or ``sweep``), parent (a sweep's id),
                 git commit, overrides (JSON), status, started/ended (epoch seconds), pid
- ``step_runs``  per run and step: status, exit code, duration, fingerprint, cache hit, attempts, error, log
- ``params``     per run: dotted param name -> JSON value
- ``metrics``    per run and step: flattened dotted key -> number
- ``artifacts``  per run: data, inputs and outputs with their hash and size
- ``lineage``    per run: edges ``path:<p> -> step:<s>`` (input) and ``step:<s> -> path:<p>`` (output)
- ``reports``    generic: id, run_id (nullable), kind, created, payload_json (used by drift, gates…)

Every write happens in a transaction; the executor commits once per scheduling
round, so a killed run leaves whole rows only (SQLite's journal does the rest).
A run left ``running`` by a killed process is marked ``interrupted`` by the
next run of the project.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, did_you_mean
from mlprism.runtime.sqlitedb import connect, use_wal

__all__ = ["Ledger", "new_run_id"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    spec_file TEXT,
    kind TEXT NOT NULL DEFAULT 'run',
    parent TEXT,
    git_commit TEXT,
    overrides TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    pid INTEGER,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent);
CREATE TABLE IF NOT EXISTS step_runs (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    duration REAL,
    fingerprint TEXT,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    ended REAL,
    error TEXT,
    log TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS params (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, step, key)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL, step TEXT NOT NULL, role TEXT NOT NULL, path TEXT NOT NULL,
    hash TEXT, size INTEGER,
    PRIMARY KEY (run_id, step, role, path)
);
CREATE INDEX IF NOT EXISTS artifacts_hash ON artifacts(hash);
CREATE TABLE IF NOT EXISTS lineage (
    run_id TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (run_id, source, target)
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    payload_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_kind ON reports(kind, created);
"""


def new_run_id() -> str:
    """Sortable by start time, unique without coordination: ``20260526-201500-3fa2b1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + os.urandom(3).hex()    # the OS CSPRNG, as secrets uses


def _row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


_STEP_SQL = ("INSERT OR REPLACE INTO step_runs(run_id, step, status, exit_code, duration, fingerprint, cache_hit,"
             " attempts, started, ended, error, log) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
_METRIC_SQL = "INSERT OR REPLACE INTO metrics(run_id, step, key, value) VALUES (?,?,?,?)"
_ARTIFACT_SQL = "INSERT OR REPLACE INTO artifacts(run_id, step, role, path, hash, size) VALUES (?,?,?,?,?,?)"
_LINEAGE_SQL = "INSERT OR IGNORE INTO lineage(run_id, source, target, kind) VALUES (?,?,?,?)"
_REPORT_SQL = "INSERT INTO reports(run_id, kind, created, payload_json) VALUES (?,?,?,?)"


class Ledger:
    """A connection to ``ledger.db``; thread-safe.

    Per-step rows (steps, metrics, artifacts, lineage) are buffered and written in
    one transaction by :meth:`commit`, so a run of thousands of steps costs a few
    statements per scheduling round, not per step.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = connect(str(path), "the run ledger", timeout=30, check_same_thread=False)
        self._db.row_factory = _row
        self._db.execute("PRAGMA busy_timeout=30000")
        use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._buffers: dict[str, list[tuple[Any, ...]]] = {_STEP_SQL: [], _METRIC_SQL: [], _ARTIFACT_SQL: [],
                                                            _LINEAGE_SQL: [], _REPORT_SQL: []}
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()

    # -- lifecycle ------------------------------------------------------------------
    def _flush(self) -> None:
        with self._lock:
            for sql, rows in self._buffers.items():
                if rows:
                    self._db.executemany(sql, rows)
                    rows.clear()

    def commit(self) -> None:
        with self._lock:
            self._flush()
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            try:
                self._flush()
                self._db.commit()
            finally:                 # a full disk fails the commit (SQLite rolls back); still close
                self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            self._flush()
            return self._db.execute(sql, tuple(args))

    def _many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        with self._lock:
            self._flush()
            self._db.executemany(sql, [tuple(r) for r in rows])

    def _buffer(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self._lock:
            self._buffers[sql].extend(rows)

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            self._flush()
            return list(self._db.execute(sql, tuple(args)).fetchall())

    # -- writes ---------------------------------------------------------------------
    def start_run(self, run_id: str, spec: str, *, spec_file: str | None = None, overrides: Iterable[str] = (),
                  git_commit: str | None = None, kind: str = "run", parent: str | None = None,
                  params: Mapping[str, Any] | None = None, pid: int | None = None,
                  info: Mapping[str, Any] | None = None, started: float | None = None) -> None:
        self._exec("INSERT INTO runs(id, spec, spec_file, kind, parent, git_commit, overrides, status, started, pid, info)"
                   " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (run_id, spec, spec_file, kind, parent, git_commit, json.dumps(list(overrides)), "running",
                    started or time.time(), pid, json.dumps(dict(info or {}), sort_keys=True)))
        if params:
            self._many("INSERT OR REPLACE INTO params(run_id, key, value) VALUES (?,?,?)",
                       ((run_id, k, json.dumps(v)) for k, v in sorted(params.items())))

    def finish_run(self, run_id: str, status: str, info: Mapping[str, Any] | None = None) -> None:
        if info is None:
            self._exec("UPDATE runs SET status=?, ended=? WHERE id=?", (status, time.time(), run_id))
        else:
            self._exec("UPDATE runs SET status=?, ended=?, info=? WHERE id=?",
                       (status, time.time(), json.dumps(dict(info), sort_keys=True, default=str), run_id))

    def update_info(self, run_id: str, info: Mapping[str, Any]) -> None:
        self._exec("UPDATE runs SET info=? WHERE id=?", (json.dumps(dict(info), sort_keys=True, default=str), run_id))

    def record_step(self, run_id: str, step: str, *, status: str, exit_code: int | None = None,
                    duration: float | None = None, fingerprint: str | None = None, cache_hit: bool = False,
                    attempts: int = 0, started: float | None = None, ended: float | None = None,
                    error: str | None = None, log: str | None = None) -> None:
        self._buffer(_STEP_SQL, [(run_id, step, status, exit_code, duration, fingerprint, int(cache_hit), attempts,
                                  started, ended, error, log)])

    def add_metrics(self, run_id: str, step: str, metrics: Mapping[str, float]) -> None:
        self._buffer(_METRIC_SQL, [(run_id, step, k, v) for k, v in metrics.items()])

    def add_artifacts(self, run_id: str, step: str, role: str, items: Mapping[str, tuple[str | None, int]]) -> None:
        self._buffer(_ARTIFACT_SQL, [(run_id, step, role, p, h, s) for p, (h, s) in items.items()])

    def add_lineage(self, run_id: str, edges: Iterable[tuple[str, str, str]]) -> None:
        self._buffer(_LINEAGE_SQL, [(run_id, s, t, k) for s, t, k in edges])

    def buffer_report(self, kind: str, payload: Mapping[str, Any] | list[Any], run_id: str | None = None) -> None:
        """Like :meth:`add_report`, written with the buffered per-step rows at the next :meth:`commit`."""
        self._buffer(_REPORT_SQL, [(run_id, kind, time.time(), json.dumps(payload, sort_keys=True, default=str))])

    def add_report(self, kind: str, payload: Mapping[str, Any] | list[Any], run_id: str | None = None) -> int:
        """Store a report (drift, gate, …) and commit; return its id."""
        with self._lock:
            self._flush()
            cur = self._db.execute("INSERT INTO reports(run_id, kind, created, payload_json) VALUES (?,?,?,?)",
                                   (run_id, kind, time.time(), json.dumps(payload, sort_keys=True, default=str)))
            self._db.commit()
            return int(cur.lastrowid or 0)

    def mark_interrupted(self) -> list[str]:
        """Runs still `running` (their process was killed): mark them interrupted. Call under the project lock."""
        rows = self._all("SELECT id FROM runs WHERE status='running'")
        ids = [r["id"] for r in rows]
        if ids:
            self._many("UPDATE runs SET status='interrupted' WHERE id=?", ((i,) for i in ids))
            self._many("UPDATE step_runs SET status='interrupted' WHERE run_id=? AND status='running'",
                       ((i,) for i in ids))
            self.commit()
        return ids

    # -- reads ----------------------------------------------------------------------
    def list_runs(self, limit: int | None = 50, spec: str | None = None, include_children: bool = True) -> list[dict[str, Any]]:
        where, args = [], []
        if spec:
            where.append("spec=?")
            args.append(spec)
        if not include_children:
            where.append("parent IS NULL")
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY started DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._decode_run(r) for r in self._all(sql, args)]

    @staticmethod
    def _decode_run(r: dict[str, Any]) -> dict[str, Any]:
        r = dict(r)
        r["overrides"] = json.loads(r.get("overrides") or "[]")
        r["info"] = json.loads(r.get("info") or "{}")
        return r

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix, or ``latest``/``last`` (MLP407 otherwise)."""
        if ref in ("latest", "last"):
            rows = self._all("SELECT id FROM runs WHERE parent IS NULL ORDER BY started DESC, id DESC LIMIT 1")
            if rows:
                return str(rows[0]["id"])
            raise DiagnosticError([Diagnostic("MLP407", "no run is recorded in this project yet", None,
                                              "start one with `mlprism run pipeline.yaml`")])
        rows = self._all("SELECT id FROM runs WHERE id = ? OR id LIKE ? ORDER BY id", (ref, ref.replace("%", "") + "%"))
        exact = [r["id"] for r in rows if r["id"] == ref]
        if exact:
            return str(exact[0])
        if len(rows) == 1:
            return str(rows[0]["id"])
        if len(rows) > 1:
            raise DiagnosticError([Diagnostic("MLP407", f"run `{ref}` is ambiguous: {len(rows)} runs start with it",
                                              None, "give more characters of the run id")])
        recent = [r["id"] for r in self._all("SELECT id FROM runs ORDER BY started DESC LIMIT 200")]
        raise DiagnosticError([Diagnostic("MLP407", f"unknown run `{ref}`", None,
                                          did_you_mean(ref, recent) or "`mlprism runs list` shows the runs")])

    def get_run(self, run_id: str) -> dict[str, Any]:
        rows = self._all("SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise DiagnosticError([Diagnostic("MLP407", f"unknown run `{run_id}`")])
        return self._decode_run(rows[0])

    def children(self, run_id: str) -> list[dict[str, Any]]:
        return [self._decode_run(r) for r in self._all("SELECT * FROM runs WHERE parent=? ORDER BY started, id", (run_id,))]

    def step_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM step_runs WHERE run_id=? ORDER BY COALESCE(started, ended), rowid", (run_id,))

    def params(self, run_id: str) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._all("SELECT key, value FROM params WHERE run_id=? ORDER BY key", (run_id,))}

    def metrics(self, run_id: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for r in self._all("SELECT step, key, value FROM metrics WHERE run_id=? ORDER BY step, key", (run_id,)):
            out.setdefault(r["step"], {})[r["key"]] = r["value"]
        return out

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT step, role, path, hash, size FROM artifacts WHERE run_id=? ORDER BY role, step, path", (run_id,))

    def lineage(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT source, target, kind FROM lineage WHERE run_id=? ORDER BY source, target", (run_id,))

    def reports(self, kind: str | None = None, run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if kind:
            where.append("kind=?")
            args.append(kind)
        if run_id:
            where.append("run_id=?")
            args.append(run_id)
        sql = "SELECT * FROM reports" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = self._all(sql, args)
        for r in rows:
            r["payload"] = json.loads(r.pop("payload_json"))
        return rows
