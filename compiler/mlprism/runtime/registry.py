"""The embedded model registry: versions, stages, lineage and an audit trail.

State lives in the project's ``.mlprism`` directory:

- ``registry.db``               SQLite (WAL): ``versions``, ``stages`` (the current
  version of each stage) and ``stage_events`` (every promote/rollback with who/when).
- ``registry/objects/ab/<hash>/<file name>``  the registered artifacts, content-addressed
  by their BLAKE3 hash (a directory artifact is hashed as a tree and copied whole).

A version is immutable once registered. Registering the same bytes again under the
same name returns the existing version (``created`` is False), so re-running a pipeline
whose model did not change never makes a new version.

Stages are ``staging`` and ``production``. ``promote`` puts a version in a stage;
``rollback`` returns the stage to the version it held before the current one (repeated
rollbacks keep walking back). References: ``NAME@production``, ``NAME@staging``,
``NAME@3`` (a version), ``NAME@latest`` and a bare ``NAME`` (= latest).

The lineage given to :meth:`ModelRegistry.register` is stored as JSON. Its keys, as
the runtime fills them: ``run_id``, ``data`` (path -> content hash), ``params``,
``metrics`` (``{"accuracy": 0.97}``; nested mappings are flattened to dotted keys when
compared), ``fingerprint``, ``git_commit``, ``pipeline`` and ``step``. A JSON file next
to the artifact named ``<artifact>.signature.json`` (``{"features": [...]}``), when it
exists, is stored with the version as its input signature; the server validates
requests against it.

Every operation opens its own connection, writes inside ``BEGIN IMMEDIATE`` and
commits atomically, so concurrent processes (a sweep, a retrain and a CLI user) are safe
and a crash leaves either the old state or the new one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, did_you_mean
from mlprism.runtime.sqlitedb import connect, use_wal

__all__ = [
    "STAGES",
    "ModelRegistry",
    "ModelVersion",
    "StageChange",
    "artifact_hash",
    "current_user",
    "flatten_metrics",
    "flavor_of",
    "parse_ref",
]

#: The stages a version can be promoted to.
STAGES: tuple[str, ...] = ("staging", "production")

SCHEMA_VERSION = 1
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,48}[a-z0-9])?$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    filename    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,            -- 'file' or 'dir'
    size        INTEGER NOT NULL,
    run_id      TEXT,
    lineage     TEXT    NOT NULL,            -- JSON
    signature   TEXT,                        -- JSON or NULL
    created_at  TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS versions_hash ON versions (name, hash);
CREATE TABLE IF NOT EXISTS stages (
    name        TEXT    NOT NULL,
    stage       TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (name, stage)
);
CREATE TABLE IF NOT EXISTS stage_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    stage       TEXT    NOT NULL,
    action      TEXT    NOT NULL,            -- 'promote' or 'rollback'
    version     INTEGER NOT NULL,            -- the version the stage holds afterwards
    previous    INTEGER,                     -- the version it held before (NULL: none)
    who         TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    reason      TEXT
);
"""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    hash: str
    filename: str
    kind: str
    size: int
    run_id: str | None
    lineage: dict[str, Any]
    signature: dict[str, Any] | None
    created_at: str
    created_by: str
    stages: tuple[str, ...] = ()
    path: Path = field(default=Path())      # the stored artifact (file or directory)
    created: bool = True                    # False when register() found identical bytes

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        return flatten_metrics(self.lineage.get("metrics") or {})

    @property
    def flavor(self) -> str:
        """How to load it: the lineage's ``flavor`` (the spec's ``registry.flavor``), else by extension."""
        return str(self.lineage.get("flavor") or flavor_of(self.filename))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "stages": list(self.stages),
                "hash": self.hash, "filename": self.filename, "kind": self.kind, "size": self.size,
                "run_id": self.run_id, "created_at": self.created_at, "created_by": self.created_by,
                "lineage": self.lineage, "signature": self.signature}


@dataclass(frozen=True)
class StageChange:
    """One audited stage change."""

    name: str
    stage: str
    action: str
    version: int
    previous: int | None
    who: str
    at: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.stage, "action": self.action, "version": self.version,
                "previous": self.previous, "who": self.who, "at": self.at, "reason": self.reason}


def current_user() -> str:
    """Who is acting: ``MLPRISM_USER``, the CI actor, or the login name."""
    for var in ("MLPRISM_USER", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1.0}``; keeps numbers only (booleans excluded)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten_metrics(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def artifact_hash(path: Path) -> str:
    """BLAKE3 of a file's bytes, or of a directory tree (relative paths + file hashes)."""
    import blake3

    if path.is_file():
        h = blake3.blake3()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    tree = blake3.blake3()
    for sub in sorted(p for p in path.rglob("*") if p.is_file()):
        tree.update(sub.relative_to(path).as_posix().encode() + b"\0")
        tree.update(artifact_hash(sub).encode() + b"\n")
    return tree.hexdigest()


def flavor_of(filename: str) -> str:
    """The default loader for a file name: ``sklearn`` (joblib), ``pickle`` or plain ``file``."""
    suffix = Path(filename).suffix.lower()
    if suffix in (".joblib", ".jl"):
        return "sklearn"
    if suffix in (".pkl", ".pickle"):
        return "pickle"
    return "file"


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@SELECTOR`` -> (name, selector); a bare NAME means ``latest``."""
    name, _, selector = ref.partition("@")
    name, selector = name.strip(), (selector.strip() or "latest")
    if not _NAME.match(name):
        raise DiagnosticError([Diagnostic(
            "MLP407", f"`{ref}` is not a model reference",
            hint="write NAME@production, NAME@staging, NAME@VERSION (a number) or NAME@latest")])
    if not (selector.isdigit() or selector == "latest" or selector in STAGES):
        raise DiagnosticError([Diagnostic(
            "MLP407", f"`{ref}`: `{selector}` is neither a stage nor a version number",
            hint=did_you_mean(selector, [*STAGES, "latest"])
            or f"stages: {', '.join(STAGES)}; or a version number, or `latest`")])
    return name, selector


class ModelRegistry:
    """The registry of one project (``state_dir`` is the project's ``.mlprism`` directory)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.db_path = self.state_dir / "registry.db"
        self.store = self.state_dir / "registry" / "objects"

    # -- plumbing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.db_path.exists():
            # Reading an empty registry must not create files (e.g. `models list` in a fresh dir).
            conn = sqlite3.connect(":memory:")
            conn.executescript(_SCHEMA)
        else:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            conn = connect(self.db_path, "the model registry", timeout=30, isolation_level=None)
            use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                        for stmt in filter(str.strip, _SCHEMA.split(";")):
                            conn.execute(stmt)
                        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            elif version > SCHEMA_VERSION:
                conn.close()
                raise DiagnosticError([Diagnostic(
                    "MLP408", f"{self.db_path} was written by a newer mlprism (schema {version})",
                    hint="upgrade mlprism")])
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect(write=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _object_dir(self, digest: str) -> Path:
        return self.store / digest[:2] / digest

    def _store_artifact(self, artifact: Path, digest: str) -> Path:
        """Copy the artifact into the store (idempotent, atomic by rename)."""
        dest_dir = self._object_dir(digest)
        dest = dest_dir / artifact.name
        if dest.exists():
            return dest
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:8]}-", dir=dest_dir.parent))
        try:
            if artifact.is_dir():
                shutil.copytree(artifact, tmp / artifact.name)
            else:
                shutil.copy2(artifact, tmp / artifact.name)
                with open(tmp / artifact.name, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.replace(tmp, dest_dir)
            except OSError:
                if not dest.exists():      # another process won the race with the same bytes
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def _stages_of(self, conn: sqlite3.Connection, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for row in conn.execute("SELECT stage, version FROM stages WHERE name=? ORDER BY stage", (name,)):
            out.setdefault(row["version"], []).append(row["stage"])
        return out

    def _version(self, row: sqlite3.Row, stages: dict[int, list[str]], created: bool = True) -> ModelVersion:
        return ModelVersion(
            name=row["name"], version=row["version"], hash=row["hash"], filename=row["filename"],
            kind=row["kind"], size=row["size"], run_id=row["run_id"], lineage=json.loads(row["lineage"]),
            signature=json.loads(row["signature"]) if row["signature"] else None,
            created_at=row["created_at"], created_by=row["created_by"],
            stages=tuple(sorted(stages.get(row["version"], []), key=STAGES.index)),
            path=self._object_dir(row["hash"]) / row["filename"], created=created)

    def _names(self, conn: sqlite3.Connection) -> list[str]:
        return [r[0] for r in conn.execute("SELECT DISTINCT name FROM versions ORDER BY name")]

    def _unknown_model(self, conn: sqlite3.Connection, name: str) -> DiagnosticError:
        names = self._names(conn)
        hint = did_you_mean(name, names) or (f"registered models: {', '.join(names)}" if names
                                             else "no model is registered yet: run the pipeline first")
        return DiagnosticError([Diagnostic("MLP407", f"no model named `{name}` in the registry", hint=hint)])

    def _get(self, conn: sqlite3.Connection, name: str, version: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM versions WHERE name=? AND version=?", (name, version)).fetchone()
        if row is None:
            if not conn.execute("SELECT 1 FROM versions WHERE name=?", (name,)).fetchone():
                raise self._unknown_model(conn, name)
            known = [str(r[0]) for r in conn.execute("SELECT version FROM versions WHERE name=? ORDER BY version", (name,))]
            raise DiagnosticError([Diagnostic("MLP407", f"`{name}` has no version {version}",
                                              hint=f"versions: {', '.join(known)}")])
        return row

    # -- writing ------------------------------------------------------------------
    def register(self, name: str, artifact: Path, *, run_id: str, lineage: dict[str, Any]) -> int:
        """Register ``artifact`` as a new version of ``name``; return its version number."""
        return self.register_version(name, artifact, run_id=run_id, lineage=lineage).version

    def register_version(self, name: str, artifact: Path, *, run_id: str | None,
                         lineage: dict[str, Any], who: str | None = None) -> ModelVersion:
        """Like :meth:`register`, returning the whole :class:`ModelVersion`."""
        artifact = Path(artifact)
        if not _NAME.match(name):
            raise DiagnosticError([Diagnostic("MLP408", f"`{name}` is not a valid model name",
                                              hint="lower-case letters, digits and hyphens, starting with a letter")])
        if not artifact.exists():
            raise DiagnosticError([Diagnostic("MLP408", f"cannot register `{name}`: artifact {artifact} does not exist",
                                              hint="the step that produces it must run first")])
        digest = artifact_hash(artifact)
        signature = None
        sig_path = artifact.with_name(artifact.name + ".signature.json")
        if sig_path.is_file():
            try:
                signature = json.loads(sig_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DiagnosticError([Diagnostic("MLP408", f"{sig_path} is not valid JSON: {exc}")])
        size = (artifact.stat().st_size if artifact.is_file()
                else sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file()))
        lineage = {**lineage, "run_id": lineage.get("run_id", run_id)}
        try:
            lineage_json = json.dumps(lineage, sort_keys=True, default=str)
        except (TypeError, ValueError) as exc:
            raise DiagnosticError([Diagnostic("MLP408", f"lineage of `{name}` is not JSON-serialisable: {exc}")])
        self._store_artifact(artifact, digest)       # before the row: a crash leaves only an orphan object
        with self._transaction() as conn:
            existing = conn.execute("SELECT * FROM versions WHERE name=? AND hash=? ORDER BY version LIMIT 1",
                                    (name, digest)).fetchone()
            if existing is not None:
                return self._version(existing, self._stages_of(conn, name), created=False)
            version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name=?",
                                   (name,)).fetchone()[0]
            conn.execute(
                "INSERT INTO versions (name, version, hash, filename, kind, size, run_id, lineage, signature,"
                " created_at, created_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (name, version, digest, artifact.name, "dir" if artifact.is_dir() else "file", size, run_id,
                 lineage_json, json.dumps(signature, sort_keys=True) if signature is not None else None,
                 _now(), who or current_user()))
            row = self._get(conn, name, version)
            return self._version(row, self._stages_of(conn, name))

    def _check_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise DiagnosticError([Diagnostic("MLP408", f"`{stage}` is not a stage",
                                              hint=did_you_mean(stage, STAGES) or f"stages: {', '.join(STAGES)}")])

    def promote(self, name: str, version: int, stage: str, who: str | None = None,
                reason: str | None = None) -> StageChange:
        """Put ``version`` in ``stage``; the previous holder is remembered for rollback."""
        self._check_stage(stage)
        who = who or current_user()
        with self._transaction() as conn:
            self._get(conn, name, int(version))
            row = conn.execute("SELECT version FROM stages WHERE name=? AND stage=?", (name, stage)).fetchone()
            previous = row["version"] if row else None
            at = _now()
            if previous == int(version):
                return StageChange(name, stage, "unchanged", int(version), previous, who, at, reason)
            conn.execute("INSERT INTO stages (name, stage, version, updated_at, updated_by) VALUES (?,?,?,?,?) "
                         "ON CONFLICT (name, stage) DO UPDATE SET version=excluded.version, "
                         "updated_at=excluded.updated_at, updated_by=excluded.updated_by",
                         (name, stage, int(version), at, who))
            conn.execute("INSERT INTO stage_events (name, stage, action, version, previous, who, at, reason) "
                         "VALUES (?,?,?,?,?,?,?,?)", (name, stage, "promote", int(version), previous, who, at, reason))
            return StageChange(name, stage, "promote", int(version), previous, who, at, reason)

    def _stage_stack(self, conn: sqlite3.Connection, name: str, stage: str) -> list[int]:
        """The stage's history as a stack: promote pushes, rollback pops; the top is current."""
        stack: list[int] = []
        for ev in conn.execute("SELECT action, version FROM stage_events WHERE name=? AND stage=? ORDER BY id",
                               (name, stage)):
            if ev["action"] == "promote":
                stack.append(ev["version"])
            elif ev["action"] == "rollback" and stack:
                stack.pop()
        return stack

    def rollback(self, name: str, stage: str, who: str | None = None,
                 reason: str | None = None) -> StageChange:
        """Return ``stage`` to the version it held before the current one."""
        self._check_stage(stage)
        who = who or current_user()
        with self._transaction() as conn:
            if not conn.execute("SELECT 1 FROM versions WHERE name=?", (name,)).fetchone():
                raise self._unknown_model(conn, name)
            stack = self._stage_stack(conn, name, stage)
            if not stack:
                raise DiagnosticError([Diagnostic("MLP408", f"`{name}` has no version in {stage}; nothing to roll back",
                                                  hint=f"promote one first: mlprism models promote {name} VERSION --stage {stage}")])
            if len(stack) < 2:
                raise DiagnosticError([Diagnostic(
                    "MLP408", f"`{name}@{stage}` is version {stack[-1]}, the first version ever in {stage}; "
                    "there is no previous version to roll back to",
                    hint=f"promote another version instead: mlprism models promote {name} VERSION --stage {stage}")])
            current, target = stack[-1], stack[-2]
            at = _now()
            conn.execute("UPDATE stages SET version=?, updated_at=?, updated_by=? WHERE name=? AND stage=?",
                         (target, at, who, name, stage))
            conn.execute("INSERT INTO stage_events (name, stage, action, version, previous, who, at, reason) "
                         "VALUES (?,?,?,?,?,?,?,?)", (name, stage, "rollback", target, current, who, at, reason))
            return StageChange(name, stage, "rollback", target, current, who, at, reason)

    # -- reading ------------------------------------------------------------------
    def resolve(self, ref: str) -> ModelVersion:
        """``NAME@production`` / ``NAME@staging`` / ``NAME@3`` / ``NAME@latest`` -> the version."""
        name, selector = parse_ref(ref)
        with self._connect() as conn:
            if not conn.execute("SELECT 1 FROM versions WHERE name=?", (name,)).fetchone():
                raise self._unknown_model(conn, name)
            if selector == "latest":
                version = conn.execute("SELECT MAX(version) FROM versions WHERE name=?", (name,)).fetchone()[0]
            elif selector.isdigit():
                version = int(selector)
            else:
                row = conn.execute("SELECT version FROM stages WHERE name=? AND stage=?", (name, selector)).fetchone()
                if row is None:
                    raise DiagnosticError([Diagnostic(
                        "MLP407", f"`{name}` has no version in {selector}",
                        hint=f"promote one: mlprism models promote {name} VERSION --stage {selector}")])
                version = row["version"]
            return self._version(self._get(conn, name, version), self._stages_of(conn, name))

    def get(self, name: str, version: int) -> ModelVersion:
        return self.resolve(f"{name}@{int(version)}")

    def stage_version(self, name: str, stage: str) -> int | None:
        """The version currently in ``stage``, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT version FROM stages WHERE name=? AND stage=?", (name, stage)).fetchone()
            return row["version"] if row else None

    def champion_metrics(self, name: str, stage: str) -> dict[str, float] | None:
        """The metrics recorded with the version in ``stage`` (flattened), or None if it holds none."""
        with self._connect() as conn:
            row = conn.execute("SELECT v.lineage FROM stages s JOIN versions v ON v.name=s.name AND v.version=s.version "
                               "WHERE s.name=? AND s.stage=?", (name, stage)).fetchone()
        if row is None:
            return None
        return flatten_metrics(json.loads(row["lineage"]).get("metrics") or {})

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of one model, or of all), by name then version."""
        with self._connect() as conn:
            if name is not None:
                if not conn.execute("SELECT 1 FROM versions WHERE name=?", (name,)).fetchone():
                    raise self._unknown_model(conn, name)
                rows = conn.execute("SELECT * FROM versions WHERE name=? ORDER BY version", (name,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM versions ORDER BY name, version").fetchall()
            stages = {n: self._stages_of(conn, n) for n in {r["name"] for r in rows}}
            return [self._version(r, stages[r["name"]]) for r in rows]

    def models(self) -> list[dict[str, Any]]:
        """One summary per model: latest version, count and the version in each stage."""
        with self._connect() as conn:
            out = []
            for n in self._names(conn):
                latest, count = conn.execute("SELECT MAX(version), COUNT(*) FROM versions WHERE name=?", (n,)).fetchone()
                stages = {r["stage"]: r["version"] for r in conn.execute(
                    "SELECT stage, version FROM stages WHERE name=?", (n,))}
                out.append({"name": n, "latest": latest, "versions": count,
                            "stages": {s: stages.get(s) for s in STAGES}})
            return out

    def history(self, name: str, stage: str | None = None) -> list[StageChange]:
        """The audit trail of stage changes, oldest first."""
        with self._connect() as conn:
            query, args = "SELECT * FROM stage_events WHERE name=?", [name]
            if stage:
                query += " AND stage=?"
                args.append(stage)
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [StageChange(r["name"], r["stage"], r["action"], r["version"], r["previous"], r["who"], r["at"],
                            r["reason"]) for r in rows]

    def show(self, ref: str) -> dict[str, Any]:
        """A version as a dict, with its stage history."""
        mv = self.resolve(ref)
        out = mv.to_dict()
        out["path"] = str(mv.path)
        out["history"] = [c.to_dict() for c in self.history(mv.name) if c.version == mv.version
                          or c.previous == mv.version]
        return out

    def export(self, ref: str, out_dir: Path) -> Path:
        """Write the model file (or directory) and ``metadata.json`` into ``out_dir``; return the model path."""
        mv = self.resolve(ref)
        out_dir = Path(out_dir)
        if not mv.path.exists():
            raise DiagnosticError([Diagnostic("MLP408", f"the stored artifact of {mv.ref} is missing ({mv.path})",
                                              hint="the registry's object store was modified; register the model again")])
        if artifact_hash(mv.path) != mv.hash:
            raise DiagnosticError([Diagnostic("MLP408", f"the stored artifact of {mv.ref} is corrupt (hash mismatch)",
                                              hint="register the model again")])
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:                    # a file where the directory should be, no permission, ...
            raise DiagnosticError([Diagnostic("MLP002", f"cannot export to {out_dir}: it is not a directory "
                                              f"that can be written ({exc.strerror or exc})",
                                              hint="give --out a new or existing directory")]) from None
        dest = out_dir / mv.filename
        meta_path = out_dir / "metadata.json"
        if meta_path.is_dir():                    # checked first: a failure must not leave a new model beside old metadata
            raise DiagnosticError([Diagnostic("MLP002", f"cannot export to {out_dir}: {meta_path} is a directory",
                                              hint="remove it, or give --out another directory")])
        if dest.is_dir():
            shutil.rmtree(dest)
        if mv.kind == "dir":
            shutil.copytree(mv.path, dest)
        else:
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(mv.path, tmp)
            os.replace(tmp, dest)
        meta = {"name": mv.name, "version": mv.version, "stages": list(mv.stages), "ref": ref,
                "artifact": mv.filename, "hash": mv.hash, "flavor": mv.flavor,
                "run_id": mv.run_id, "created_at": mv.created_at, "created_by": mv.created_by,
                "lineage": mv.lineage, "signature": mv.signature}      # no export time: same version, same bytes
        tmp_meta = out_dir / f".metadata.json.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_meta, meta_path)
        return dest

