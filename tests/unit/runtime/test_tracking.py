"""The MLflow mirror. The real-store test needs the `mlflow` extra (heavy: ~850 MB, minutes to install),
so it is opt-in: it runs when MLflow is importable (CI demands it with MLPRISM_REQUIRE_MLFLOW=1)."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path

import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.ir import Pipeline, Registry, Step, Tracking
from mlprism.runtime.ledger import Ledger
from mlprism.runtime.registry import ModelRegistry
from mlprism.runtime.tracking import resolve_uri, sync, sync_if_configured

from tests.conftest import require

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def _pipeline(uri: str | None = "sqlite:///mlflow.db") -> Pipeline:
    return Pipeline(name="toy", steps=(Step(name="train", run="true", run_template="true"),),
                    registry=Registry(name="toy", artifact="model.joblib", register_after="train"),
                    tracking=Tracking(backend="mlflow", uri=uri))


def test_resolve_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/.mlprism/mlflow.db"
    assert resolve_uri("sqlite:///m/x.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/m/x.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_uri("mlruns", tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    assert resolve_uri("file:./mlruns", tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    assert resolve_uri("http://mlflow:5000", tmp_path) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_uri(None, tmp_path) == "http://tracking:5000"


def test_ledger_backend_does_nothing(tmp_path: Path) -> None:
    p = _pipeline()
    assert sync_if_configured(tmp_path, Pipeline(name=p.name, steps=p.steps)) is None


@pytest.mark.skipif(HAS_MLFLOW, reason="checks the message shown when MLflow is missing")
def test_missing_mlflow_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as exc:
        sync(tmp_path, _pipeline())
    assert exc.value.diagnostics[0].code == "MLP412" and "mlprism[mlflow]" in exc.value.diagnostics[0].hint


def _project(tmp_path: Path) -> Path:
    state = tmp_path / ".mlprism"
    with Ledger(state / "ledger.db") as ledger:
        for i, (status, acc) in enumerate([("succeeded", 0.91), ("failed", 0.5), ("succeeded", 0.95)]):
            rid = f"2026010{i}-000000-abc{i}"
            ledger.start_run(rid, "toy", spec_file="pipeline.yaml", git_commit="cafe", params={"lr": 0.1 * (i + 1)},
                             started=1_700_000_000 + i)
            ledger.add_metrics(rid, "train", {"accuracy": acc, "loss": 1 - acc})
            ledger.add_artifacts(rid, "", "data", {"data/raw.csv": ("h" * 64, 10)})
            ledger.finish_run(rid, status)
        ledger.start_run("20260109-000000-run", "toy", started=1_700_000_100)     # still running: skipped
        ledger.commit()
    model = tmp_path / "model.joblib"
    reg = ModelRegistry(state)
    for i, content in ((0, b"m1"), (2, b"m2")):
        model.write_bytes(content)
        reg.register("toy", model, run_id=f"2026010{i}-000000-abc{i}", lineage={"metrics": {"accuracy": 0.9}})
    reg.promote("toy", 1, "production", who="t")
    reg.promote("toy", 2, "staging", who="t")
    return tmp_path


def test_sync_to_a_real_sqlite_store(tmp_path: Path) -> None:
    if not HAS_MLFLOW:
        require("mlflow", "MLflow is not installed (pip install 'mlprism[mlflow]')")
    from mlflow import MlflowClient

    project = _project(tmp_path)
    first = sync(project, _pipeline())
    assert first.uri == f"sqlite:///{project.resolve()}/mlflow.db"
    assert len(first.runs) == 3 and [v for v, _ in first.models] == [1, 2]
    assert first.aliases == {"staging": "2", "production": "1"}
    client = MlflowClient(tracking_uri=first.uri, registry_uri=first.uri)
    runs = {r.info.run_name: r for r in client.search_runs([first.experiment_id])}
    r0 = runs["20260100-000000-abc0"]
    assert r0.data.metrics == {"accuracy": 0.91, "loss": pytest.approx(0.09)}
    assert r0.data.params == {"lr": "0.1"} and r0.info.status == "FINISHED"
    assert r0.data.tags["mlprism.git_commit"] == "cafe" and r0.data.tags["mlprism.data.data/raw.csv"] == "h" * 64
    assert runs["20260101-000000-abc1"].info.status == "FAILED"
    assert r0.info.start_time == 1_700_000_000_000
    mv = client.get_model_version_by_alias("toy", "production")
    assert mv.tags["mlprism.version"] == "1" and mv.run_id == r0.info.run_id
    assert Path(mv.source.removeprefix("file://")).read_bytes() == b"m1"
    # idempotent; then a rollback-like change moves the alias, a new run is added
    assert sync(project, _pipeline()).runs == []
    ModelRegistry(project / ".mlprism").promote("toy", 2, "production", who="t")
    with Ledger(project / ".mlprism" / "ledger.db") as ledger:
        ledger.start_run("20260110-000000-new", "toy", started=1_700_000_200)
        ledger.finish_run("20260110-000000-new", "succeeded")
    again = sync(project, _pipeline())
    assert [r for r, _ in again.runs] == ["20260110-000000-new"] and again.models == []
    assert client.get_model_version_by_alias("toy", "production").version == 2
    assert (project / ".mlprism" / "mlflow-artifacts").is_dir()
    con = sqlite3.connect(project / "mlflow.db")
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4


def test_cli_tracking_sync(tmp_path: Path, cli, project) -> None:
    if not HAS_MLFLOW:
        require("mlflow", "MLflow is not installed (pip install 'mlprism[mlflow]')")
    proj = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: toy
        steps:
          train: {run: "true"}
        tracking: {backend: mlflow, uri: "sqlite:///mlflow.db"}
        """}, root=tmp_path)
    _project(proj)
    r = cli("tracking", "sync", "pipeline.yaml", "--json", cwd=proj)
    assert r.code == 0, r.err
    assert len(json.loads(r.out)["runs"]) == 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
