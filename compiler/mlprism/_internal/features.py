"""Spec features and which ones a pipeline uses (for target capabilities)."""

from __future__ import annotations

from mlprism.diagnostics import Diagnostic, Location
from mlprism.ir import Pipeline

#: feature -> what it means. Targets declare the ones they can express.
FEATURES: dict[str, str] = {
    "steps": "Steps run as processes with their declared inputs and outputs.",
    "parallelism": "Independent steps run at the same time.",
    "caching": "A step whose fingerprint is unchanged is skipped.",
    "params": "Params reach the steps and can be overridden per run.",
    "data": "Declared data is versioned by content hash.",
    "metrics": "Steps' metrics files are tracked per run.",
    "env": "Declared environment variables reach the steps.",
    "secrets": "Declared secrets reach the steps from the target's secret store, never written out.",
    "retries": "A failed step is retried.",
    "timeouts": "A step that runs too long is stopped.",
    "resources": "CPU and memory requests reach the scheduler.",
    "gpu": "GPU requests reach the scheduler.",
    "sweeps": "Every combination of swept params runs, and the best is selected.",
    "gates": "A failed evaluation gate stops everything downstream.",
    "registry": "The model is registered with its lineage after the gate.",
    "serve": "The registered model is served over HTTP.",
    "autoscale": "The model server scales with load.",
    "canary": "A new model version rolls out in canary steps.",
    "monitor": "Drift is checked on a schedule, and retraining starts on drift.",
    "schedule": "The pipeline runs on a cron schedule.",
    "push": "The pipeline runs when code or data change in the repository.",
    "manual": "A person can start the pipeline by hand with other params.",
    "mlflow": "Runs are mirrored to MLflow.",
}


def features_used(p: Pipeline) -> dict[str, str]:
    """feature -> the dotted spec key that uses it (for the diagnostic's location)."""
    used: dict[str, str] = {"steps": "steps"}
    if any(s.cache for s in p.steps):
        used["caching"] = "steps"
    targets_of = {e.target for e in p.edges}
    sources = [s.name for s in p.steps if s.name not in targets_of]
    if len(p.steps) > 1 and (len(sources) > 1 or any(len(p.downstream(s.name)) > 1 for s in p.steps)):
        used["parallelism"] = "steps"
    if p.params:
        used["params"] = "params"
    if p.data:
        used["data"] = "data"
    for s in p.steps:
        if s.metrics:
            used.setdefault("metrics", f"steps.{s.name}.metrics")
        if s.retries:
            used.setdefault("retries", f"steps.{s.name}.retries")
        if s.timeout:
            used.setdefault("timeouts", f"steps.{s.name}.timeout")
        if s.resources.cpu or s.resources.memory:
            used.setdefault("resources", f"steps.{s.name}.resources")
        if s.resources.gpu:
            used.setdefault("gpu", f"steps.{s.name}.resources.gpu")
        if s.gate:
            used.setdefault("gates", f"steps.{s.name}.gate")
        if s.env:
            used.setdefault("env", f"steps.{s.name}.env")
    if p.environment.variables:
        used.setdefault("env", "environment.variables")
    if p.environment.secrets:
        used["secrets"] = "environment.secrets"
    if p.sweep:
        used["sweeps"] = "sweep"
    if p.registry:
        used["registry"] = "registry"
    if p.deploy and p.deploy.serve:
        used["serve"] = "deploy.serve"
        if p.deploy.serve.autoscale:
            used["autoscale"] = "deploy.serve.autoscale"
    if p.deploy and p.deploy.rollout and p.deploy.rollout.strategy == "canary":
        used["canary"] = "deploy.rollout"
    if p.monitor:
        used["monitor"] = "monitor"
    if p.triggers.schedule:
        used["schedule"] = "triggers.schedule"
    if p.triggers.push is not None:
        used["push"] = "triggers.push"
    if p.triggers.manual:
        used["manual"] = "triggers.manual"
    if p.tracking.backend == "mlflow":
        used["mlflow"] = "tracking"
    return used


def capability_errors(p: Pipeline, target_name: str, capabilities: dict[str, str] | object) -> list[Diagnostic]:
    caps = dict(capabilities)  # type: ignore[call-overload]
    diags = []
    for feature, key in features_used(p).items():
        if feature not in caps:
            loc: Location | None = p.location(key)
            diags.append(Diagnostic(
                "MLP302", f"target `{target_name}` cannot express `{feature}` ({FEATURES.get(feature, feature)})",
                loc, f"remove `{key}` for this target (e.g. `~{key}` on the command line), "
                     "or compile to a target that supports it (`mlprism plugins` lists them)"))
    return diags
