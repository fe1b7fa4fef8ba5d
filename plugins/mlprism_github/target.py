"""The `github-actions` target: the pipeline, deploy and monitoring as GitHub Actions workflows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mlprism import EmitContext, Files, Pipeline, Target

from mlprism_github.actions import OVERRIDES_SCHEMA, Action, resolve

_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$"
_SECRET = r"^[A-Z_][A-Z0-9_]{0,127}$"
_BRANCH = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}\*?$"     # a trailing `*` matches any suffix

_RUNS_ON: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "pattern": _LABEL},
        {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "pattern": _LABEL}},
    ],
}

#: JSON Schema of the spec's `targets.github-actions` section.
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the github-actions target (workflows under .github/workflows/).",
    "properties": {
        "runs_on": {**_RUNS_ON, "default": "ubuntu-latest",
                    "description": "Runner label (or labels) of every job."},
        "gpu_runs_on": {**_RUNS_ON, "default": ["self-hosted", "linux", "gpu"],
                        "description": "Runner labels for steps that request GPUs (`resources.gpu`)."},
        "large_runs_on": {**_RUNS_ON,
                          "description": "Runner labels for steps whose cpu/memory exceed `runner_capacity`."},
        "runner_capacity": {
            "type": "object", "additionalProperties": False,
            "description": "What one `runs_on` runner offers; bigger steps need `large_runs_on`.",
            "properties": {"cpu": {"type": "number", "exclusiveMinimum": 0, "default": 4},
                           "memory_gib": {"type": "number", "exclusiveMinimum": 0, "default": 16}},
        },
        "python_version": {"type": "string", "pattern": r"^3\.[0-9]{1,2}$",
                           "description": "Python for the jobs (default: `environment.python`)."},
        "working_directory": {"type": "string", "pattern": r"^[A-Za-z0-9_.][A-Za-z0-9_./ -]{0,511}$",
                              "description": "The spec's directory relative to the repository root "
                                             "(default: found from the git repository at compile time)."},
        "mlprism": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "description": "What `pip install` gets mlprism from (default `mlprism==<this version>`); "
                                   "e.g. `mlprism @ git+https://github.com/org/mlprism@<sha>` or `.`."},
        "actions": OVERRIDES_SCHEMA,
        "concurrency": {
            "type": "object", "additionalProperties": False,
            "description": "One pipeline run at a time per branch.",
            "properties": {
                "cancel_in_progress": {"type": "boolean", "default": False,
                                       "description": "Cancel a running pipeline when a newer one starts."},
                "per_ref": {"type": "boolean", "default": True,
                            "description": "One queue per branch/tag (false: one for the whole repository)."},
            },
        },
        "artifact_retention_days": {"type": "integer", "minimum": 1, "maximum": 90, "default": 14,
                                    "description": "How long step outputs stay downloadable."},
        "max_dispatch_inputs": {"type": "integer", "minimum": 0, "maximum": 25, "default": 10,
                                "description": "Params become `workflow_dispatch` inputs, one each, up to this "
                                               "many (GitHub allows 25; GHES and older tools 10); beyond it, one "
                                               "free-text `overrides` input."},
        "environment": {"type": "string", "pattern": r"^[A-Za-z0-9_.-][A-Za-z0-9_. -]{0,254}$",
                        "default": "production",
                        "description": "GitHub environment of the deploy job (require reviewers there)."},
        "deploy_branches": {"type": "array", "minItems": 1, "uniqueItems": True,
                            "items": {"type": "string", "pattern": _BRANCH}, "default": ["main"],
                            "description": "Branches whose runs may deploy (`release/*`: any branch starting "
                                           "with `release/`)."},
        "kubeconfig_secret": {"type": "string", "pattern": _SECRET, "default": "KUBECONFIG",
                              "description": "Secret holding the kubeconfig the deploy job applies manifests "
                                             "with (when `targets.kubernetes` is configured)."},
        "registry_username_secret": {"type": "string", "pattern": _SECRET,
                                     "description": "Secret with the image registry's user name "
                                                    "(default for ghcr.io: the workflow's own token)."},
        "registry_password_secret": {"type": "string", "pattern": _SECRET,
                                     "description": "Secret with the image registry's password or token."},
    },
}


@dataclass(frozen=True)
class Options:
    runs_on: str | tuple[str, ...]
    gpu_runs_on: str | tuple[str, ...]
    large_runs_on: str | tuple[str, ...] | None
    capacity_cpu: float
    capacity_memory_gib: float
    python_version: str
    working_directory: str
    mlprism: str
    actions: Mapping[str, Action]
    cancel_in_progress: bool
    per_ref: bool
    retention_days: int
    max_dispatch_inputs: int
    environment: str
    deploy_branches: tuple[str, ...]
    kubeconfig_secret: str
    registry_username_secret: str | None
    registry_password_secret: str | None

    @classmethod
    def of(cls, pipeline: Pipeline, context: EmitContext) -> Options:
        o = dict(context.options)
        cap = o.get("runner_capacity") or {}
        conc = o.get("concurrency") or {}

        def labels(value: Any) -> str | tuple[str, ...]:
            return value if isinstance(value, str) else tuple(value)

        return cls(
            runs_on=labels(o.get("runs_on", "ubuntu-latest")),
            gpu_runs_on=labels(o.get("gpu_runs_on", ["self-hosted", "linux", "gpu"])),
            large_runs_on=labels(o["large_runs_on"]) if o.get("large_runs_on") else None,
            capacity_cpu=float(cap.get("cpu", 4)),
            capacity_memory_gib=float(cap.get("memory_gib", 16)),
            python_version=str(o.get("python_version") or pipeline.environment.python),
            working_directory=str(o.get("working_directory") or context.project_path or "."),
            mlprism=str(o.get("mlprism") or f"mlprism=={context.mlprism_version}"),
            actions=resolve(o.get("actions")),
            cancel_in_progress=bool(conc.get("cancel_in_progress", False)),
            per_ref=bool(conc.get("per_ref", True)),
            retention_days=int(o.get("artifact_retention_days", 14)),
            max_dispatch_inputs=int(o.get("max_dispatch_inputs", 10)),
            environment=str(o.get("environment", "production")),
            deploy_branches=tuple(o.get("deploy_branches") or ("main",)),
            kubeconfig_secret=str(o.get("kubeconfig_secret", "KUBECONFIG")),
            registry_username_secret=o.get("registry_username_secret"),
            registry_password_secret=o.get("registry_password_secret"),
        )


class GitHubActionsTarget(Target):
    name: ClassVar[str] = "github-actions"
    description: ClassVar[str] = ("GitHub Actions workflows: the pipeline (one job per step), deploy behind a "
                                  "GitHub environment, and a scheduled drift monitor.")
    capabilities: ClassVar[Mapping[str, str]] = {
        "steps": "one job per step running `mlprism run SPEC --only STEP`",
        "parallelism": "jobs without `needs:` between them run at the same time",
        "caching": "`actions/cache` of .mlprism/cache keyed by `mlprism fingerprint SPEC STEP`",
        "params": "from the spec; `workflow_dispatch` inputs override them per run",
        "data": "`mlprism run` hashes declared data in each job; outputs move between jobs as artifacts",
        "metrics": "the step's metrics file as a table in the job summary, and in the step's artifact",
        "env": "`mlprism run` gives the declared variables to the step",
        "secrets": "`${{ secrets.NAME }}` for the declared names, only on the step that runs the command",
        "retries": "`mlprism run` retries the step (with backoff) inside the job",
        "timeouts": "`mlprism run` stops an attempt at `timeout`; `timeout-minutes` bounds the job",
        "resources": "steps bigger than `runner_capacity` run on `large_runs_on`",
        "gpu": "steps with `resources.gpu` run on `gpu_runs_on`",
        "sweeps": "a `strategy.matrix` over the combinations, then a select job that keeps the best",
        "gates": "`mlprism run` exits 1 on a failed gate: the job fails and nothing after it runs",
        "registry": "`mlprism run` registers after the gate; the registry persists through `actions/cache`",
        "serve": "the deploy job builds the serving image (`mlprism build`) and applies the kubernetes "
                 "target's manifests when `targets.kubernetes` is configured",
        "autoscale": "in the kubernetes manifests the deploy job applies",
        "canary": "in the kubernetes manifests the deploy job applies",
        "monitor": "a scheduled workflow runs `mlprism monitor`; on drift it dispatches the pipeline",
        "schedule": "`on.schedule`",
        "push": "`on.push` with branches and paths",
        "manual": "`on.workflow_dispatch` with one input per param",
        "mlflow": "`mlprism run` mirrors runs to `tracking.uri`",
    }
    options_schema: ClassVar[dict[str, Any] | None] = OPTIONS_SCHEMA
    size_limits: ClassVar[Mapping[str, tuple[int, str, str]]] = {
        ".github/workflows/*.yml": (
            500 * 1024, "GitHub does not start runs of a workflow file larger than that (its Actions limits)",
            "one job per step is about 3.5 KB a step: split the pipeline into specs of ~140 steps or fewer, "
            "or compile it to the kubernetes target"),
    }

    def emit(self, pipeline: Pipeline, context: EmitContext) -> Files:
        from mlprism_github.workflow import emit_workflows

        return emit_workflows(pipeline, Options.of(pipeline, context))


__all__ = ["OPTIONS_SCHEMA", "GitHubActionsTarget", "Options"]
