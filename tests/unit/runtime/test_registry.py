"""The model registry: real SQLite files and a real content-addressed store."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.runtime.registry import ModelRegistry, artifact_hash, flatten_metrics, parse_ref


def _artifact(tmp: Path, content: bytes, name: str = "model.joblib") -> Path:
    path = tmp / "work" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _lineage(acc: float, f1: float) -> dict:
    return {"data": {"data/raw.csv": "abc"}, "params": {"n": 1}, "git_commit": "deadbeef",
            "fingerprint": "fp", "metrics": {"accuracy": acc, "f1": f1, "nested": {"auc": 0.5}, "ok": True}}


def _code(exc: pytest.ExceptionInfo[DiagnosticError]) -> str:
    return exc.value.diagnostics[0].code


def test_register_versions_lineage_and_dedup(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    a = _artifact(tmp_path, b"model-one")
    assert reg.register("churn", a, run_id="r1", lineage=_lineage(0.9, 0.8)) == 1
    a.write_bytes(b"model-two")
    assert reg.register("churn", a, run_id="r2", lineage=_lineage(0.95, 0.85)) == 2
    # the same bytes again: no new version
    again = reg.register_version("churn", a, run_id="r3", lineage=_lineage(0.95, 0.85))
    assert (again.version, again.created) == (2, False)
    v2 = reg.resolve("churn@2")
    assert v2.run_id == "r2" and v2.lineage["run_id"] == "r2" and v2.lineage["git_commit"] == "deadbeef"
    assert v2.hash == artifact_hash(a) and v2.path.read_bytes() == b"model-two"
    assert v2.path.parent.name == v2.hash and v2.path.parent.parent.name == v2.hash[:2]
    assert v2.metrics == {"accuracy": 0.95, "f1": 0.85, "nested.auc": 0.5}
    assert reg.resolve("churn@latest").version == 2 and reg.resolve("churn").version == 2
    assert [m.version for m in reg.list("churn")] == [1, 2]
    assert (tmp_path / ".mlprism" / "registry.db").exists()
    conn = sqlite3.connect(tmp_path / ".mlprism" / "registry.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_promote_rollback_and_audit(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    a = _artifact(tmp_path, b"1")
    for i in range(3):
        a.write_bytes(f"m{i}".encode())
        reg.register("churn", a, run_id=f"r{i}", lineage=_lineage([0.9, 0.91, 0.92][i], [0.8, 0.81, 0.82][i]))
    assert reg.champion_metrics("churn", "production") is None
    reg.promote("churn", 1, "production", who="alice")
    reg.promote("churn", 2, "production", who="bob")
    reg.promote("churn", 3, "production", who="carol")
    reg.promote("churn", 3, "staging", who="carol")
    assert reg.resolve("churn@production").version == 3
    assert reg.resolve("churn@3").stages == ("staging", "production")
    assert reg.champion_metrics("churn", "production") == {"accuracy": 0.92, "f1": 0.82, "nested.auc": 0.5}
    change = reg.rollback("churn", "production", who="dave")
    assert (change.action, change.version, change.previous, change.who) == ("rollback", 2, 3, "dave")
    assert reg.resolve("churn@production").version == 2
    assert reg.rollback("churn", "production", who="dave").version == 1
    with pytest.raises(DiagnosticError) as exc:
        reg.rollback("churn", "production", who="dave")
    assert _code(exc) == "MLP408" and "no previous version" in exc.value.diagnostics[0].message
    assert reg.resolve("churn@staging").version == 3     # other stage untouched
    hist = reg.history("churn", "production")
    assert [(h.action, h.version, h.who) for h in hist] == [
        ("promote", 1, "alice"), ("promote", 2, "bob"), ("promote", 3, "carol"),
        ("rollback", 2, "dave"), ("rollback", 1, "dave")]
    assert all(h.at.endswith("Z") for h in hist)
    # promoting the version already there changes nothing and records nothing
    assert reg.promote("churn", 1, "production", who="x").action == "unchanged"
    assert len(reg.history("churn", "production")) == 5
    summary = reg.models()
    assert summary == [{"name": "churn", "latest": 3, "versions": 3, "stages": {"staging": 3, "production": 1}}]


def test_errors_are_diagnostics(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    with pytest.raises(DiagnosticError) as exc:
        reg.resolve("churn@production")
    assert _code(exc) == "MLP407" and "run the pipeline first" in (exc.value.diagnostics[0].hint or "")
    assert not (tmp_path / ".mlprism").exists()          # reading never creates state
    reg.register("churn", _artifact(tmp_path, b"x"), run_id="r", lineage={})
    with pytest.raises(DiagnosticError) as exc:
        reg.resolve("chrun@1")
    assert _code(exc) == "MLP407" and "`churn`" in (exc.value.diagnostics[0].hint or "")
    with pytest.raises(DiagnosticError) as exc:
        reg.resolve("churn@7")
    assert _code(exc) == "MLP407" and "versions: 1" in (exc.value.diagnostics[0].hint or "")
    with pytest.raises(DiagnosticError) as exc:
        reg.resolve("churn@prod")
    assert _code(exc) == "MLP407" and "production" in (exc.value.diagnostics[0].hint or "")
    with pytest.raises(DiagnosticError) as exc:
        reg.resolve("churn@staging")
    assert _code(exc) == "MLP407" and "promote" in (exc.value.diagnostics[0].hint or "")
    with pytest.raises(DiagnosticError) as exc:
        reg.promote("churn", 1, "prod")
    assert _code(exc) == "MLP408"
    with pytest.raises(DiagnosticError) as exc:
        reg.promote("churn", 9, "production")
    assert _code(exc) == "MLP407"
    with pytest.raises(DiagnosticError) as exc:
        reg.register("churn", tmp_path / "missing.joblib", run_id="r", lineage={})
    assert _code(exc) == "MLP408"
    with pytest.raises(DiagnosticError):
        parse_ref("Not_A_Name@1")


def test_export_writes_model_and_metadata_and_detects_corruption(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    a = _artifact(tmp_path, b"weights")
    a.with_name(a.name + ".signature.json").write_text(json.dumps({"features": ["x", "y"]}))
    reg.register("churn", a, run_id="r1", lineage=_lineage(0.9, 0.8))
    reg.promote("churn", 1, "production", who="alice")
    out = tmp_path / "export"
    model = reg.export("churn@production", out)
    assert model == out / "model.joblib" and model.read_bytes() == b"weights"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["name"] == "churn" and meta["version"] == 1 and meta["stages"] == ["production"]
    assert meta["signature"] == {"features": ["x", "y"]} and meta["flavor"] == "sklearn"
    assert meta["lineage"]["metrics"]["accuracy"] == 0.9
    again = tmp_path / "export-again"          # reproducible: a serving image's model layer does not change
    reg.export("churn@production", again)
    assert (again / "metadata.json").read_bytes() == (out / "metadata.json").read_bytes()
    reg.resolve("churn@1").path.write_bytes(b"tampered")
    with pytest.raises(DiagnosticError) as exc:
        reg.export("churn@1", tmp_path / "export2")
    assert _code(exc) == "MLP408" and "corrupt" in exc.value.diagnostics[0].message


def test_export_to_a_path_that_is_a_file_is_a_diagnostic(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    reg.register("churn", _artifact(tmp_path, b"weights"), run_id="r1", lineage=_lineage(0.9, 0.8))
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    with pytest.raises(DiagnosticError) as exc:                # was FileExistsError: exit 3, "a bug"
        reg.export("churn@1", taken)
    assert _code(exc) == "MLP002" and exc.value.diagnostics[0].hint
    with pytest.raises(DiagnosticError) as exc:
        reg.export("churn@1", taken / "below")
    assert _code(exc) == "MLP002"
    assert taken.read_text() == "not a directory"


def test_export_where_metadata_json_is_a_directory_is_a_diagnostic(tmp_path: Path) -> None:
    # was: error[MLP001]: internal error: IsADirectoryError (exit 3), a .metadata.json.PID.tmp left behind
    reg = ModelRegistry(tmp_path / ".mlprism")
    reg.register("churn", _artifact(tmp_path, b"weights"), run_id="r1", lineage=_lineage(0.9, 0.8))
    out = tmp_path / "out"
    (out / "metadata.json").mkdir(parents=True)
    with pytest.raises(DiagnosticError) as exc:
        reg.export("churn@1", out)
    assert _code(exc) == "MLP002" and exc.value.diagnostics[0].hint
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json"]


def test_directory_artifacts(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / ".mlprism")
    d = tmp_path / "work" / "model"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"a")
    (d / "sub" / "b.bin").write_bytes(b"b")
    mv = reg.register_version("tree", d, run_id="r", lineage={})
    assert mv.kind == "dir" and mv.size == 2 and (mv.path / "sub" / "b.bin").read_bytes() == b"b"
    out = reg.export("tree@1", tmp_path / "out")
    assert (out / "sub" / "b.bin").read_bytes() == b"b"


def test_flatten_metrics() -> None:
    assert flatten_metrics({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": False}) == {"a": 1.0, "b.c": 2.5}


def _register_many(args: tuple[str, int]) -> list[int]:
    state, worker = args
    reg = ModelRegistry(Path(state))
    work = Path(state).parent / f"w{worker}"
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(5):
        p = work / "model.joblib"
        p.write_bytes(f"{worker}-{i}".encode())
        out.append(reg.register("race", p, run_id=f"{worker}-{i}", lineage={}))
    return out


def test_concurrent_writers_get_distinct_versions(tmp_path: Path) -> None:
    state = tmp_path / ".mlprism"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.map(_register_many, [(str(state), w) for w in range(3)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 16))


def _open_at(args: tuple[str, float, str]) -> str:
    state, start_at, kind = args
    from mlprism.runtime.ledger import Ledger

    while time.time() < start_at:            # every process opens the new database at the same moment
        pass
    try:
        if kind == "registry":
            with ModelRegistry(Path(state))._transaction():
                pass
        else:
            Ledger(Path(state) / "ledger.db").close()
    except Exception as exc:            # reported to the test
        return repr(exc)
    return "ok"


@pytest.mark.parametrize("kind", ["registry", "ledger"])
def test_processes_creating_the_database_at_once(tmp_path: Path, kind: str) -> None:
    """Switching a new database to WAL needs it to itself and SQLite does not wait for that: without a retry,
    about one round in six failed with "database is locked"."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        for r in range(12):
            state = str(tmp_path / str(r) / ".mlprism")
            results = pool.map(_open_at, [(state, time.time() + 0.3, kind)] * 4)
            assert results == ["ok"] * 4, (r, results)
