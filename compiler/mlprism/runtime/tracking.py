"""An optional MLflow mirror of the ledger and the registry (``tracking: {backend: mlflow, uri: …}``).

The embedded ledger stays the source of truth; :func:`sync` copies into MLflow what it
does not hold yet, so it can run any time, any number of times:

- every finished ledger run of the pipeline becomes an MLflow run in the experiment named
  after the pipeline (run name = the mlprism run id; params; metrics, merged over steps as
  gates see them; tags ``mlprism.*`` with the status, git commit and data hashes);
- every registry version becomes a version of the MLflow registered model of the same name,
  its artifact logged to the run that produced it (tag ``mlprism.version``);
- the registry's stages become MLflow aliases (``production``, ``staging``).

The URI: ``tracking.uri`` (a relative ``sqlite:///path`` or file path is taken relative to the
project), else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<project>/.mlprism/mlflow.db``. Local
stores keep artifacts in ``.mlprism/mlflow-artifacts/``. MLflow is the ``mlflow`` extra
(``pip install 'mlprism[mlflow]'``); it is imported only here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError

__all__ = ["SyncResult", "resolve_uri", "sync", "sync_if_configured"]

_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
MAX_PARAM = 6000        # MLflow's limit on a param value


@dataclass
class SyncResult:
    uri: str
    experiment_id: str
    runs: list[tuple[str, str]] = field(default_factory=list)      # (mlprism run id, MLflow run id), new ones
    models: list[tuple[int, str]] = field(default_factory=list)    # (mlprism version, MLflow version), new ones
    aliases: dict[str, str | None] = field(default_factory=dict)   # stage -> MLflow version

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "experiment_id": self.experiment_id,
                "runs": [{"run_id": a, "mlflow_run_id": b} for a, b in self.runs],
                "models": [{"version": a, "mlflow_version": b} for a, b in self.models],
                "aliases": self.aliases}


def resolve_uri(uri: str | None, project_dir: Path) -> str:
    """The tracking URI with local paths made absolute (relative to the project)."""
    project_dir = Path(project_dir).resolve()
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{project_dir / '.mlprism' / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(project_dir / uri[len('sqlite:///'):]).resolve()}"
    if uri.startswith("file:"):
        path = uri[len("file:"):]
        path = path[2:] if path.startswith("//") else path
        return Path(project_dir / path).resolve().as_uri()
    if "://" not in uri:
        return (project_dir / uri).resolve().as_uri()
    return uri


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:"))


def _client(uri: str) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise DiagnosticError([Diagnostic("MLP412", "`tracking.backend: mlflow` needs MLflow, which is not installed",
                                          hint="pip install 'mlprism[mlflow]' (or set `tracking.backend: ledger`)")])
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")     # MLflow 3 keeps it in maintenance mode
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(client: Any, name: str, artifacts: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = artifacts.resolve().as_uri() if artifacts is not None else None
    return str(client.create_experiment(name, artifact_location=location))


def _mirrored_runs(client: Any, experiment_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string="tags.`mlprism.run_id` != ''",
                                  max_results=1000, page_token=token)
        for r in page:
            out[r.data.tags["mlprism.run_id"]] = r.info.run_id
        token = getattr(page, "token", None)
        if not token:
            return out


def _mirror_run(client: Any, experiment_id: str, ledger: Any, run: dict[str, Any]) -> str:
    from mlflow.entities import Metric, Param

    run_id = run["id"]
    tags = {"mlprism.run_id": run_id, "mlprism.pipeline": run["spec"], "mlprism.status": run["status"],
            "mlprism.kind": run.get("kind") or "run"}
    if run.get("spec_file"):
        tags["mlprism.spec_file"] = run["spec_file"]
    if run.get("git_commit"):
        tags["mlprism.git_commit"] = run["git_commit"]
        tags["mlflow.source.git.commit"] = run["git_commit"]
    if run.get("parent"):
        tags["mlprism.parent"] = run["parent"]
    if run.get("overrides"):
        tags["mlprism.overrides"] = " ".join(run["overrides"])[:5000]
    for art in ledger.artifacts(run_id):
        if art["role"] == "data" and art["hash"]:
            tags[f"mlprism.data.{art['path']}"] = art["hash"]
    started = int(float(run["started"]) * 1000)
    ended = int(float(run.get("ended") or run["started"]) * 1000)
    created = client.create_run(experiment_id, start_time=started, tags=tags, run_name=run_id)
    mlflow_id = created.info.run_id
    params = [Param(k, (v if isinstance(v, str) else _text(v))[:MAX_PARAM]) for k, v in ledger.params(run_id).items()]
    merged: dict[str, float] = {}
    for step_metrics in ledger.metrics(run_id).values():
        merged.update({k: v for k, v in step_metrics.items() if v is not None})
    metrics = [Metric(k, float(v), ended, 0) for k, v in sorted(merged.items())]
    for i in range(0, max(len(params), len(metrics), 1), 100):          # MLflow's batch limit is 100 params
        client.log_batch(mlflow_id, metrics=metrics[i:i + 100], params=params[i:i + 100], tags=[])
    client.set_terminated(mlflow_id, _STATUS.get(run["status"], "FINISHED"), end_time=ended)
    return str(mlflow_id)


def _text(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def sync(project_dir: Path, pipeline: Any, *, uri: str | None = None) -> SyncResult:
    """Mirror what MLflow does not hold yet: runs, registered versions, stage aliases."""
    from mlprism.runtime.ledger import Ledger
    from mlprism.runtime.registry import STAGES, ModelRegistry

    project_dir = Path(project_dir).resolve()
    state = project_dir / ".mlprism"
    resolved = resolve_uri(uri if uri is not None else pipeline.tracking.uri, project_dir)
    client = _client(resolved)
    try:
        experiment_id = _experiment(client, pipeline.name, state / "mlflow-artifacts" if _is_local(resolved) else None)
        result = SyncResult(resolved, experiment_id)
        mirrored = _mirrored_runs(client, experiment_id)
        if (state / "ledger.db").exists():
            with Ledger(state / "ledger.db") as ledger:
                runs = [r for r in ledger.list_runs(limit=None, spec=pipeline.name) if r["status"] in _STATUS]
                for run in sorted(runs, key=lambda r: (r["started"], r["id"])):
                    if run["id"] not in mirrored:
                        mirrored[run["id"]] = _mirror_run(client, experiment_id, ledger, run)
                        result.runs.append((run["id"], mirrored[run["id"]]))
        reg_cfg = pipeline.registry
        if reg_cfg is not None and (state / "registry.db").exists():
            registry = ModelRegistry(state)
            try:
                versions = registry.list(reg_cfg.name)
            except DiagnosticError:
                versions = []
            if versions:
                _sync_models(client, experiment_id, registry, reg_cfg.name, versions, mirrored, result, STAGES)
    except DiagnosticError:
        raise
    except Exception as exc:
        raise DiagnosticError([Diagnostic("MLP413", f"mirroring to MLflow at {resolved} failed: "
                                          f"{type(exc).__name__}: {exc}",
                                          hint="check `tracking.uri`; the ledger and the registry are unchanged")])
    return result


def _sync_models(client: Any, experiment_id: str, registry: Any, name: str, versions: list[Any],
                 mirrored: dict[str, str], result: SyncResult, stages: tuple[str, ...]) -> None:
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, tags={"mlprism": "true"},
                                       description=f"Mirrored from the mlprism registry `{name}`.")
    known = {mv.tags.get("mlprism.version"): str(mv.version)
             for mv in client.search_model_versions(f"name='{name}'") if mv.tags.get("mlprism.version")}
    for mv in versions:
        if str(mv.version) in known:
            continue
        run_id = mirrored.get(mv.run_id or "")
        if run_id is None:       # registered outside a mirrored run: a run that only holds the artifact
            run = client.create_run(experiment_id, start_time=int(time.time() * 1000),
                                    tags={"mlprism.registration": f"{name}@{mv.version}"},
                                    run_name=f"{name}-v{mv.version}")
            run_id = run.info.run_id
            client.set_terminated(run_id, "FINISHED")
        artifact_path = f"model-v{mv.version}"
        if mv.path.is_dir():
            client.log_artifacts(run_id, str(mv.path), artifact_path=f"{artifact_path}/{mv.filename}")
        else:
            client.log_artifact(run_id, str(mv.path), artifact_path=artifact_path)
        source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}/{mv.filename}"
        created = client.create_model_version(
            name, source=source, run_id=run_id,
            tags={"mlprism.version": str(mv.version), "mlprism.hash": mv.hash, "mlprism.run_id": mv.run_id or ""},
            description=f"mlprism {name}@{mv.version}")
        known[str(mv.version)] = str(created.version)
        result.models.append((mv.version, str(created.version)))
    for stage in stages:
        ours = registry.stage_version(name, stage)
        target = known.get(str(ours)) if ours is not None else None
        try:
            current = str(client.get_model_version_by_alias(name, stage).version)
        except Exception:
            current = None
        if target is not None and current != target:
            client.set_registered_model_alias(name, stage, target)
        elif target is None and current is not None:
            client.delete_registered_model_alias(name, stage)
        result.aliases[stage] = target


def sync_if_configured(project_dir: Path, pipeline: Any) -> SyncResult | None:
    """:func:`sync` when the spec says ``tracking: {backend: mlflow}``; otherwise nothing."""
    if getattr(pipeline.tracking, "backend", "ledger") != "mlflow":
        return None
    return sync(project_dir, pipeline)
