"""The kubernetes target: a kustomize tree that `kubectl apply -k` accepts.

::

    base/
      kustomization.yaml   the namespace and the files below
      config.yaml          ConfigMaps: workflow-parameter defaults (params, config groups), variables
      rbac.yaml            ServiceAccounts, the executor's Role (workflowtaskresults), token Secrets
      storage.yaml         the workspace PersistentVolumeClaim
      network.yaml         NetworkPolicy of the workflow pods (no ingress)
      pipeline.yaml        the Argo WorkflowTemplate (DAG, sweep, gate, monitor)
      schedules.yaml       CronWorkflows for `triggers.schedule` and `monitor.schedule`
      events.yaml          WorkflowEventBinding for `triggers.push` (GitHub webhook)
      serving.yaml         Deployment or Rollout, Service, HPA, PDB, NetworkPolicy
    overlays/<env>/        one per option of the `env` config group (see docs/targets/kubernetes.md)

Everything is built as data and serialized with :func:`mlprism.dump_yaml_documents`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import mlprism

from .common import Problem, metadata
from .manifests import config_maps, pipeline_network_policy, rbac, serving, storage
from .options import OPTIONS_SCHEMA, Settings, resolve
from .workflow import ArgoPipeline

#: Registered in mlprism.diagnostics.CODES.
CODE = "MLP320"


class KubernetesTarget(mlprism.Target):
    name: ClassVar[str] = "kubernetes"
    description: ClassVar[str] = ("kustomize tree: Argo Workflows WorkflowTemplate/CronWorkflows for the pipeline, "
                                  "Deployment/Service/HPA/PDB (or an Argo Rollouts canary) for serving")
    capabilities: ClassVar[dict[str, str]] = {
        "steps": "one Argo DAG task per step running `mlprism run SPEC --only STEP` in the pipeline image",
        "parallelism": "DAG tasks without a dependency between them start together",
        "caching": "the runtime's cache on the workspace volume skips unchanged steps; with an artifact "
                   "repository, Argo memoization keyed by `mlprism fingerprint` skips their pods too",
        "params": "workflow parameters (defaults in a ConfigMap, `argo submit -p NAME=VALUE`) passed as overrides",
        "data": "the runtime hashes the data on the workspace volume into mlprism.lock and the ledger",
        "metrics": "the runtime records metrics in the ledger on the workspace volume",
        "env": "a ConfigMap (envFrom) and the step's own `env`",
        "secrets": "secretKeyRef to the keys of one Secret you create (`secret_name`); never generated",
        "retries": "retryStrategy (limit, exponential backoff) on the step's template",
        "timeouts": "activeDeadlineSeconds on the step's template",
        "resources": "container requests and limits",
        "gpu": "`nvidia.com/gpu` limits",
        "sweeps": "a withItems fan-out of trial DAGs, each in its own copy of the project, then `select`",
        "gates": "the gated step's task fails, so no task that depends on it runs",
        "registry": "the runtime registers after `registry.register_after` in the workspace's registry",
        "serve": "a Deployment of the serving image with /health probes, a Service, a PodDisruptionBudget "
                 "and a NetworkPolicy",
        "autoscale": "a HorizontalPodAutoscaler (autoscaling/v2) on CPU utilization",
        "canary": "an Argo Rollouts Rollout with setWeight/pause steps (`argo_rollouts.enabled`), "
                  "else a rolling update",
        "monitor": "a CronWorkflow runs `mlprism monitor --no-retrain`; on drift the same workflow runs the "
                   "pipeline DAG",
        "schedule": "a CronWorkflow (`schedules`) submitting the WorkflowTemplate",
        "push": "a WorkflowEventBinding: GitHub's push webhook to the Argo Server submits the pipeline when "
                "a branch and a path match",
        "manual": "`argo submit --from workflowtemplate/NAME -p PARAM=VALUE`",
        "mlflow": "the runtime mirrors runs to `tracking.uri` from the step pods (reachable from the cluster)",
    }
    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
    size_limits: ClassVar[dict[str, tuple[int, str, str]]] = {
        "base/pipeline.yaml": (
            1 << 20, "Argo keeps a workflow in etcd, about 1 MB a resource (its docs on large workflows), and a "
            "submitted Workflow also holds this template's spec and its nodes' statuses",
            "the WorkflowTemplate is about 1 KB a step: split the pipeline into specs of ~1,000 steps or fewer, "
            "or enable Argo's node status offloading and check what your API server accepts"),
    }

    def emit(self, pipeline: mlprism.Pipeline, context: mlprism.EmitContext) -> mlprism.Files:
        try:
            return _emit(pipeline, context)
        except Problem as exc:
            raise mlprism.DiagnosticError([mlprism.Diagnostic(
                CODE, str(exc), pipeline.location(exc.key) if exc.key else None, exc.hint or None)])


def _header(p: mlprism.Pipeline, s: Settings, what: str, note: str | None = None) -> str:
    lines = [what,
             f"Generated by mlprism (target kubernetes) from {p.spec_file}: do not edit, rerun `mlprism compile`.",
             f"Written for Kubernetes {s.kubernetes_version} and Argo Workflows {s.argo_version}."]
    if note:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def _emit(p: mlprism.Pipeline, context: mlprism.EmitContext) -> mlprism.Files:
    s = resolve(p, dict(context.options))
    argo = ArgoPipeline(p, s)
    files: dict[str, str] = {}
    resources: list[str] = []

    def add(name: str, docs: list[dict[str, Any]], what: str, note: str | None = None) -> None:
        if docs:
            files[f"base/{name}"] = mlprism.dump_yaml_documents(docs, header=_header(p, s, what, note))
            resources.append(name)

    params = argo.config_data()
    add("config.yaml", config_maps(p, s, params), f"Configuration of `{p.name}`: workflow-parameter defaults and "
                                                  "variables (secrets are never written here).")
    binding = argo.event_binding(context.project_path)
    add("rbac.yaml", rbac(p, s, push=binding is not None),
        "Least privilege: workflow pods get no token; Argo's executor may only report task results.")
    add("storage.yaml", [storage(p, s)], "The shared workspace volume of every workflow pod.")
    add("network.yaml", [pipeline_network_policy(p, s)], "Workflow pods accept no connections.")
    add("pipeline.yaml", [argo.workflow_template()],
        f"The `{p.name}` pipeline. Run it: argo submit --from workflowtemplate/{p.name} -n {s.namespace} "
        "[-p PARAM=VALUE]")
    add("schedules.yaml", argo.cron_workflows(), "Scheduled runs: the pipeline and the drift monitor.")
    if binding is not None:
        add("events.yaml", [binding], "`triggers.push`: point a GitHub webhook (push events, JSON) at "
                                      f"https://ARGO_SERVER/api/v1/events/{s.namespace}/{p.name}; list the "
                                      f"`{p.name}-github` account in the `argo-workflows-webhook-clients` Secret.")
    if p.deploy is not None and p.deploy.serve is not None:
        docs, note = serving(p, s)
        add("serving.yaml", docs, f"Serving {p.deploy.serve.model}.", note)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "namespace": s.namespace, "resources": resources}
    files["base/kustomization.yaml"] = mlprism.dump_yaml(kustomization, header=_header(
        p, s, f"`{p.name}` on Kubernetes: kubectl apply -k base (or an overlay). The namespace must exist."))
    env = p.config_choices.get("env")
    if env is not None:
        files.update(_overlay(p, s, env, params))
    return files


def _overlay(p: mlprism.Pipeline, s: Settings, option: str, params: dict[str, str]) -> dict[str, str]:
    """`overlays/<option>/`: the config-group choice and the param values of that environment."""
    if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", option):
        raise Problem(f"the `env` option `{option}` cannot name an overlay and a label", "defaults",
                      "name config options with letters, digits, `-`, `_` and `.`")
    where = f"overlays/{option}"
    patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(p, s, f"{p.name}-params", "config"),
             "data": dict(params)}
    patch["metadata"].pop("labels")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": ["../../base"],
                     "labels": [{"pairs": {"mlprism.dev/env": option}}],
                     "patches": [{"path": "params.yaml"}]}
    head = _header(p, s, f"The `{option}` environment (`env={option}`): kubectl apply -k {where}")
    return {f"{where}/kustomization.yaml": mlprism.dump_yaml(kustomization, header=head),
            f"{where}/params.yaml": mlprism.dump_yaml(patch, header=_header(
                p, s, f"Workflow-parameter defaults of the `{option}` environment (composed with `env={option}`)."))}
