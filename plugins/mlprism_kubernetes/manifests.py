"""Core Kubernetes objects: configuration, RBAC, storage, network policies and serving."""

from __future__ import annotations

from typing import Any

import mlprism

from .common import (
    base_env,
    container_security,
    labels,
    metadata,
    pod_security,
    resources,
    selector,
    tmp_mount,
    tmp_volume,
)
from .options import Settings


def config_maps(p: mlprism.Pipeline, s: Settings, params: dict[str, str]) -> list[dict[str, Any]]:
    """The params ConfigMap (one key per workflow parameter, Hydra syntax) and the variables one."""
    docs = [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": metadata(p, s, f"{p.name}-params", "config", {
                 "mlprism.dev/description": "Default values of the workflow parameters: params and config-group "
                                            "choices in Hydra's override syntax. Overlays patch them per "
                                            "environment; `argo submit -p NAME=VALUE` overrides one run."}),
             "data": dict(params)}]
    if p.environment.variables:
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": metadata(p, s, f"{p.name}-env", "config", {
                         "mlprism.dev/description": "environment.variables: non-secret, given to every step."}),
                     "data": {k: str(v) for k, v in p.environment.variables.items()}})
    return docs


def rbac(p: mlprism.Pipeline, s: Settings, push: bool) -> list[dict[str, Any]]:
    """Workflow pods run without a token; only Argo's executor containers get one, allowed to report
    task results (the emissary executor's minimum). The push webhook's account may only submit."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(p, s, s.service_account, "pipeline"),
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(p, s, s.executor_account, "pipeline"),
         "automountServiceAccountToken": False},
        _token_secret(p, s, s.executor_account),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": metadata(p, s, s.executor_account, "pipeline"),
         "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]},
        _binding(p, s, s.executor_account, s.executor_account),
    ]
    if push:
        name = f"{p.name}-github"
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(p, s, name, "pipeline"),
             "automountServiceAccountToken": False},
            _token_secret(p, s, name),
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(p, s, name, "pipeline"),
             "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workfloweventbindings"], "verbs": ["list"]},
                       {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "resourceNames": [p.name],
                        "verbs": ["get"]},
                       {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]},
            _binding(p, s, name, name),
        ]
    return docs


def _token_secret(p: mlprism.Pipeline, s: Settings, account: str) -> dict[str, Any]:
    # No values: Kubernetes fills in the token; Argo finds it by this name.
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": metadata(p, s, f"{account}.service-account-token", "pipeline",
                                 {"kubernetes.io/service-account.name": account}),
            "type": "kubernetes.io/service-account-token"}


def _binding(p: mlprism.Pipeline, s: Settings, name: str, account: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata(p, s, name, "pipeline"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": s.namespace}]}


def storage(p: mlprism.Pipeline, s: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [s.access_mode], "resources": {"requests": {"storage": s.storage_size}}}
    if s.storage_class:
        spec["storageClassName"] = s.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(p, s, f"{p.name}-workspace", "storage", {
                "mlprism.dev/description": "The project workspace: data, step outputs, the runtime's cache, "
                                           "ledger and registry."}),
            "spec": spec}


def pipeline_network_policy(p: mlprism.Pipeline, s: Settings) -> dict[str, Any]:
    """Workflow pods serve nothing: no ingress. Egress stays open (data, tracking, the artifact store)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(p, s, f"{p.name}-pipeline", "pipeline"),
            "spec": {"podSelector": {"matchLabels": selector(p, "pipeline")}, "policyTypes": ["Ingress"]}}


# -- serving -----------------------------------------------------------------------------------
def serving(p: mlprism.Pipeline, s: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """Deployment (or Argo Rollouts Rollout), Service, HPA, PDB, NetworkPolicy, ServiceAccount.
    Returns the objects and a note for the file header."""
    assert p.deploy is not None and p.deploy.serve is not None
    serve = p.deploy.serve
    rollout = p.deploy.rollout
    name = f"{p.name}-serve"
    sel = selector(p, "serving")
    canary = rollout is not None and rollout.strategy == "canary"
    use_rollout = canary and s.rollouts
    note = None
    if canary and not s.rollouts:
        note = ("`deploy.rollout` asks for a canary but `argo_rollouts.enabled` is false: "
                "a rolling update replaces the pods instead.")
    container: dict[str, Any] = {
        "name": "server",
        "image": s.serving_image.ref,
        "imagePullPolicy": s.serving_image.pull_policy,
        "ports": [{"name": "http", "containerPort": serve.port, "protocol": "TCP"}],
        "env": base_env(),
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "initialDelaySeconds": 5,
                           "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "initialDelaySeconds": 30,
                          "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
        "resources": resources(s, serve.resources),
        "securityContext": container_security(s),
        "volumeMounts": [tmp_mount()],
    }
    if p.environment.variables:
        container["envFrom"] = [{"configMapRef": {"name": f"{p.name}-env"}}]
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(s, fs_group=False),
        "containers": [container],
        "volumes": [tmp_volume()],
    }
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        pod["tolerations"] = [dict(t) for t in s.tolerations]
    if s.pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in s.pull_secrets]
    template = {"metadata": {"labels": {**labels(p, "serving")}}, "spec": pod}
    spec: dict[str, Any] = {}
    if serve.autoscale is None:
        spec["replicas"] = serve.replicas
    spec["revisionHistoryLimit"] = 5
    spec["selector"] = {"matchLabels": sel}
    spec["template"] = template
    desc = {"mlprism.dev/description": f"Serves {serve.model} (the model inside the serving image) on :{serve.port}."}
    if use_rollout:
        assert rollout is not None
        steps: list[dict[str, Any]] = []
        for i, weight in enumerate(rollout.steps):
            steps.append({"setWeight": weight})
            if i < len(rollout.steps) - 1 or weight < 100:
                steps.append({"pause": {"duration": s.rollout_pause}})
        spec["strategy"] = {"canary": {"maxSurge": "25%", "maxUnavailable": 0, "steps": steps}}
        workload = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "metadata": metadata(p, s, name, "serving", desc), "spec": spec}
    else:
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
        workload = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": metadata(p, s, name, "serving", desc), "spec": spec}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(p, s, name, "serving"),
         "automountServiceAccountToken": False},
        workload,
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(p, s, name, "serving"),
         "spec": {"type": "ClusterIP", "selector": sel,
                  "ports": [{"name": "http", "port": serve.port, "targetPort": "http", "protocol": "TCP"}]}},
    ]
    if serve.autoscale is not None:
        a = serve.autoscale
        docs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": metadata(p, s, name, "serving"),
                     "spec": {"scaleTargetRef": {"apiVersion": workload["apiVersion"], "kind": workload["kind"],
                                                 "name": name},
                              "minReplicas": a.min, "maxReplicas": a.max,
                              "metrics": [{"type": "Resource", "resource": {
                                  "name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.cpu}}}]}})
    docs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(p, s, name, "serving"),
                 "spec": {"maxUnavailable": 1, "selector": {"matchLabels": sel}}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(p, s, name, "serving"),
                 "spec": {"podSelector": {"matchLabels": sel}, "policyTypes": ["Ingress", "Egress"],
                          "ingress": [{"ports": [{"port": serve.port, "protocol": "TCP"}]}],
                          # The model is inside the image: the server calls nothing, so no egress at all.
                          "egress": []}})
    return docs, note
