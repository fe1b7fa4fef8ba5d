"""Spec features and which ones a pipeline uses (for target capabilities)."""

from __future__ import annotations

from collections.abc import Mapping

from mlprism.diagnostics import Diagnostic
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


def feature_uses(p: Pipeline) -> dict[str, list[str]]:
    """feature -> every dotted spec key that uses it, in spec order.

    Every target's emit asks (MLP302) about the same pipeline: the answer for the last
    pipeline asked about is kept (an IR is never changed; a changed one is a new object),
    and each caller gets its own copy of it.
    """
    global _LAST_USES
    last = _LAST_USES
    if last is None or last[0] is not p:
        last = _LAST_USES = (p, _feature_uses(p))
    return {feature: list(keys) for feature, keys in last[1].items()}


_LAST_USES: tuple[Pipeline, dict[str, list[str]]] | None = None


def _feature_uses(p: Pipeline) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {"steps": ["steps"]}
    seen: set[tuple[str, str]] = {("steps", "steps")}

    def add(feature: str, key: str) -> None:
        keys = used.setdefault(feature, [])
        if (feature, key) not in seen:          # a set: a list look-up made this quadratic in the steps
            seen.add((feature, key))
            keys.append(key)

    cached = [s.name for s in p.steps if s.cache]
    for name in cached:
        add("caching", f"steps.{name}")
    # Independent steps exist unless the order is total (a chain). Steps are in topological
    # order; two steps at the same depth (longest path from a source) are independent.
    depth: dict[str, int] = {}
    upstream: dict[str, list[str]] = {}
    for e in p.edges:
        upstream.setdefault(e.target, []).append(e.source)
    at_depth: dict[int, list[str]] = {}
    for s in p.steps:
        depth[s.name] = 1 + max((depth.get(u, 0) for u in upstream.get(s.name, ())), default=0)
        at_depth.setdefault(depth[s.name], []).append(s.name)
    for names in at_depth.values():
        if len(names) > 1:
            add("parallelism", f"steps.{names[1]}")
    if p.params:
        add("params", "params")
    if p.data:
        add("data", "data")
    if p.environment.variables:
        add("env", "environment.variables")
    for s in p.steps:
        if s.metrics:
            add("metrics", f"steps.{s.name}.metrics")
        if s.retries:
            add("retries", f"steps.{s.name}.retries")
        if s.timeout:
            add("timeouts", f"steps.{s.name}.timeout")
        if s.resources.cpu or s.resources.memory:
            add("resources", f"steps.{s.name}.resources")
        if s.resources.gpu:
            add("gpu", f"steps.{s.name}.resources.gpu")
        if s.gate:
            add("gates", f"steps.{s.name}.gate")
        if s.env:
            add("env", f"steps.{s.name}.env")
    if p.environment.secrets:
        add("secrets", "environment.secrets")
    if p.sweep:
        add("sweeps", "sweep")
    if p.registry:
        add("registry", "registry")
        # a gate comparing with the registry's champion uses the registry too: removing only
        # `registry` would leave it comparing with nothing (MLP225)
        for s in p.steps:
            if any(c.not_worse_than for c in s.gate):
                add("registry", f"steps.{s.name}.gate")
    if p.deploy and p.deploy.serve:
        add("serve", "deploy.serve")
        if p.deploy.serve.autoscale:
            add("autoscale", "deploy.serve.autoscale")
    if p.deploy and p.deploy.rollout and p.deploy.rollout.strategy == "canary":
        add("canary", "deploy.rollout")
    if p.monitor:
        add("monitor", "monitor")
    if p.triggers.schedule:
        add("schedule", "triggers.schedule")
    if p.triggers.push is not None:
        add("push", "triggers.push")
    if p.triggers.manual:
        add("manual", "triggers.manual")
    if p.tracking.backend == "mlflow":
        add("mlflow", "tracking")
    return used


def features_used(p: Pipeline) -> dict[str, str]:
    """feature -> the first dotted spec key that uses it (for the diagnostic's location)."""
    return {feature: keys[0] for feature, keys in feature_uses(p).items()}


def _fix(feature: str, keys: list[str]) -> str:
    """How to stop using a feature, in words and as command-line overrides."""
    shown = keys[:4]
    more = f" and {len(keys) - len(shown)} more" if len(keys) > len(shown) else ""
    if feature == "caching":
        names = [k.split(".", 1)[1] for k in shown]
        return ("set `cache: false` on the steps (on the command line: "
                + " ".join(f"`+steps.{n}.cache=false`" for n in names) + more + ")")
    if feature == "parallelism":
        return "chain the steps with `needs` so that they run one after another"
    if feature == "steps":
        return "this target cannot run steps at all"
    if feature == "params":
        return "write the values into the commands instead of `${params.…}`"
    listed = ", ".join(f"`{k}`" for k in shown) + more
    overrides = " ".join(f"~{k}" for k in shown)
    return f"remove {listed} for this target (on the command line: `{overrides}`{more})"


def capability_errors(p: Pipeline, target_name: str, capabilities: Mapping[str, str] | object,
                      others: Mapping[str, Mapping[str, str]] | None = None) -> list[Diagnostic]:
    """One MLP302 per feature the pipeline uses and the target does not declare.

    ``others`` maps the other installed targets to their capabilities, so the
    hint can name the targets that do support the feature.
    """
    caps = dict(capabilities)  # type: ignore[call-overload]
    diags = []
    for feature, keys in feature_uses(p).items():
        if feature in caps:
            continue
        able = sorted(name for name, c in (others or {}).items() if name != target_name and feature in c)
        elsewhere = (f"or compile to a target that can: {', '.join(able)}" if able
                     else "or compile to a target that supports it (`mlprism plugins` lists them; "
                          "docs/reference/capabilities.md has the matrix)")
        what = FEATURES.get(feature, feature).rstrip(".")
        diags.append(Diagnostic(
            "MLP302", f"target `{target_name}` cannot express `{feature}` ({what}), which the spec uses",
            p.location(keys[0]), f"{_fix(feature, keys)}; {elsewhere}"))
    return sorted(diags, key=_position)


def _position(d: Diagnostic) -> tuple[int, int]:
    loc = d.location
    return (loc.line or 0, loc.col or 0) if loc else (0, 0)
