"""The local target: what ``mlprism run`` does on this machine, and its plan.

Nothing needs generating to run locally: ``mlprism run pipeline.yaml`` executes
the spec directly. ``mlprism compile --target local`` writes ``plan.json``, the
execution plan a run follows: the layers of steps that may run at the same time,
each step's resolved command, the ``mlprism run --only`` command other targets
use for it, its inputs and outputs, the NAMES of its environment variables and
secrets (never values), the params it uses, retries, timeout, the ``-j`` slots it
takes, its gate, and the sweep's runs. It is a pure function of the IR: the same
spec gives the same bytes on every machine, so it diffs well in review.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import mlprism

from .jsonout import dumps_indented

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the local target (`mlprism run`).",
    "properties": {
        "jobs": {
            "type": "integer", "minimum": 1, "maximum": 1024,
            "description": "Steps run at once when `-j` is not given (default: the CPU count).",
        },
    },
}


def _slots(cpu: str | None) -> int:
    if not cpu:
        return 1
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(value))


def _params(pipeline: mlprism.Pipeline, step: mlprism.Step) -> dict[str, Any]:
    """The params the step's command uses (dotted name -> value, a whole subtree for a group)."""
    out: dict[str, Any] = {}
    for name in sorted(step.params):
        value: Any = pipeline.params
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[name] = value
    return out


def build_plan(pipeline: mlprism.Pipeline, project_path: str = ".") -> dict[str, Any]:
    """The execution plan of a pipeline as plain data (what ``plan.json`` holds)."""
    steps: dict[str, Any] = {}
    for s in pipeline.steps:
        steps[s.name] = {
            "command": s.run,
            "runtime_command": mlprism.shell_join(mlprism.step_command(pipeline, s)),
            "needs": list(pipeline.upstream(s.name)),
            "inputs": list(s.inputs),
            "outputs": list(s.outputs),
            "metrics": s.metrics,
            "params": _params(pipeline, s),
            "env": sorted({*pipeline.environment.variables, *s.env}),
            "secrets": sorted(pipeline.environment.secrets),
            "retries": s.retries,
            "timeout_seconds": s.timeout,
            "resources": {"cpu": s.resources.cpu, "memory": s.resources.memory, "gpu": s.resources.gpu},
            "slots": _slots(s.resources.cpu),
            "cache": s.cache,
            "gate": [{k: v for k, v in (("metric", g.metric), ("min", g.min), ("max", g.max),
                                         ("not_worse_than", g.not_worse_than), ("goal", g.goal),
                                         ("tolerance", g.tolerance)) if v is not None}
                     for g in s.gate],
        }
    plan: dict[str, Any] = {
        "pipeline": pipeline.name,
        "spec": pipeline.spec_file,
        "project_path": project_path,
        "overrides": list(pipeline.overrides),
        "layers": mlprism.graph_layers(pipeline),
        "steps": steps,
        "data": {d.name: d.path for d in pipeline.data},
        "state": {"lock_file": "mlprism.lock" if pipeline.spec_file == "pipeline.yaml"
                  else pipeline.spec_file.rsplit(".", 1)[0] + ".mlprism.lock",
                  "cache": ".mlprism/cache", "ledger": ".mlprism/ledger.db", "logs": ".mlprism/runs/<run-id>/<step>.log"},
    }
    if pipeline.sweep:
        plan["sweep"] = {
            "params": {k: list(v) for k, v in pipeline.sweep.params.items()},
            "runs": len(pipeline.sweep.combinations()),
            "select": ({"metric": pipeline.sweep.select.metric, "goal": pipeline.sweep.select.goal}
                       if pipeline.sweep.select else None),
        }
    if pipeline.monitor is not None:
        plan["monitor"] = {"schedule": pipeline.monitor.schedule, "on_drift": pipeline.monitor.on_drift}
    if pipeline.registry:
        plan["registry"] = {"name": pipeline.registry.name, "artifact": pipeline.registry.artifact,
                            "register_after": pipeline.registry.register_after}
    return plan


class LocalTarget(mlprism.Target):
    name: ClassVar[str] = "local"
    description: ClassVar[str] = "Run the pipeline on this machine: parallel, cached, tracked (`mlprism run`)."
    capabilities: ClassVar[dict[str, str]] = {
        "steps": "each step runs as a process (`/bin/sh -c`) in the spec's directory",
        "parallelism": "independent steps run at the same time, up to -j (default: CPU count)",
        "caching": "steps with an unchanged fingerprint are skipped; outputs restored from .mlprism/cache",
        "params": "params and command-line overrides are resolved into the commands",
        "data": "declared data is hashed into mlprism.lock and every run's ledger entry",
        "metrics": "each step's metrics file is read and recorded in .mlprism/ledger.db",
        "env": "declared variables are set for the steps",
        "secrets": "read from the caller's environment by name; values are redacted from logs, never stored",
        "retries": "a failed step is retried with exponential backoff",
        "timeouts": "a step past its timeout is killed with its whole process group",
        "resources": "a step's cpu request is the number of -j slots it takes (memory is not enforced)",
        "sweeps": "the combinations run in parallel, the first in the project, the others in workspaces; "
                  "shared steps run once, by the first",
        "gates": "a failed gate fails the step and stops everything downstream; nothing is registered",
        "registry": "the model is registered in .mlprism/registry.db after `register_after` and its gates",
        "serve": "`mlprism serve` serves the registered model over HTTP on this machine",
        "monitor": "`mlprism monitor` checks drift (`--watch` repeats on the schedule) and retrains",
        "manual": "run `mlprism run` with overrides by hand",
    }
    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA

    def emit(self, pipeline: mlprism.Pipeline, context: mlprism.EmitContext) -> mlprism.Files:
        plan = build_plan(pipeline, context.project_path)
        return {"plan.json": dumps_indented(plan, indent=2) + "\n"}   # == json.dumps(indent=2, sort_keys=True)
