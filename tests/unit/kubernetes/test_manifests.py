"""Real validators on the built trees: `kubectl kustomize`, kubernetes-validate (strict), hera's
Argo models (unknown fields forbidden), the Rollout check; plus security and configuration."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GOLDEN, run_cli

from . import validators
from .conftest import Case


def test_every_tree_builds_and_every_object_validates(all_cases: list[Case], built: dict) -> None:
    kinds: dict[str, int] = {}
    for case in all_cases:
        for d in case.kustomize_dirs():
            for kind, n in validators.validate_objects(built[(case.name, d.name)], case.version).items():
                kinds[kind] = kinds.get(kind, 0) + n
    # Every kind the target can emit was validated at least once.
    assert set(kinds) == {"ConfigMap", "ServiceAccount", "Secret", "Role", "RoleBinding", "PersistentVolumeClaim",
                          "NetworkPolicy", "WorkflowTemplate", "CronWorkflow", "WorkflowEventBinding", "Service",
                          "Deployment", "Rollout", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_overlays_exist_per_env_choice(cases: dict[str, Case], built: dict) -> None:
    assert [d.name for d in cases["full"].kustomize_dirs()] == ["base", "dev"]
    assert [d.name for d in cases["prod"].kustomize_dirs()] == ["base", "prod"]
    assert [d.name for d in cases["minimal"].kustomize_dirs()] == ["base"]     # no `env` group
    objs = built[("prod", "prod")]
    assert all(o["metadata"]["labels"]["mlprism.dev/env"] == "prod" for o in objs)
    (params,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "churn-params"]
    assert params["data"]["config-env"] == "prod"
    assert params["data"]["n_estimators"] == "300"           # the compile's override is the default
    assert params["data"]["extra"] == "on"
    assert all(o["metadata"]["namespace"] == "churn" for o in objs)
    options = built[("options", "dev")]
    assert {o["metadata"]["namespace"] for o in options} == {"ml-prod"}


@pytest.mark.parametrize("mutation", ["core-unknown-field", "argo-unknown-field", "argo-snake-case",
                                      "rollout-unknown-field", "rollout-pod-field", "unknown-kind"])
def test_validators_reject_what_kubernetes_would(built: dict, mutation: str) -> None:
    docs = copy.deepcopy(built[("full", "base")])
    by_kind = {d["kind"]: d for d in docs}
    if mutation == "core-unknown-field":
        by_kind["Service"]["spec"]["ports"][0]["targetPrt"] = 80
    elif mutation == "argo-unknown-field":
        by_kind["WorkflowTemplate"]["spec"]["templates"][1]["container"]["workdir"] = "/x"
    elif mutation == "argo-snake-case":
        tpl = next(t for t in by_kind["WorkflowTemplate"]["spec"]["templates"] if "activeDeadlineSeconds" in t)
        tpl["active_deadline_seconds"] = tpl.pop("activeDeadlineSeconds")
    elif mutation == "rollout-unknown-field":
        by_kind["Rollout"]["spec"]["strategy"]["canary"]["steps"].append({"setWeigth": 20})
    elif mutation == "rollout-pod-field":
        by_kind["Rollout"]["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    else:
        docs.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises(Exception):  # noqa: B017 - each validator raises its own error type
        validators.validate_objects(docs, "1.32")


def test_kubectl_reads_numbers_the_yaml_1_1_writer_leaves_bare() -> None:
    docs = validators.load_kubectl("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: 1e-05}\n")
    with pytest.raises(Exception):  # noqa: B017
        validators.validate_objects(docs, "1.32")


def _containers(obj: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod-level settings, container) for every container the object will run."""
    if obj["kind"] in ("Deployment", "Rollout"):
        pod = obj["spec"]["template"]["spec"]
        return [(pod, c) for c in pod["containers"]]
    if obj["kind"] == "WorkflowTemplate":
        spec = obj["spec"]
        return [(spec, t.get("container") or t.get("script")) for t in spec["templates"]
                if "container" in t or "script" in t]
    return []


def test_pod_security_everywhere(all_cases: list[Case], built: dict) -> None:
    seen = 0
    for case in all_cases:
        objs = built[(case.name, "base")]
        for obj in objs:
            for pod, c in _containers(obj):
                seen += 1
                assert pod["automountServiceAccountToken"] is False
                ctx = pod["securityContext"]
                assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] >= 1000
                assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
                assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
                assert c["resources"]["requests"] and c["resources"]["limits"]
                assert ":latest" not in c["image"] and (":" in c["image"] or "@sha256:" in c["image"])
            if obj["kind"] == "ServiceAccount":
                assert obj["automountServiceAccountToken"] is False
    assert seen > 40


def test_secrets_only_by_reference(all_cases: list[Case], built: dict) -> None:
    for case in all_cases:
        secrets = set(case.pipeline.environment.secrets)
        secret_name = case.options.get("secret_name", f"{case.pipeline.name}-secrets")
        objs = built[(case.name, "base")]
        for obj in objs:
            if obj["kind"] == "Secret":     # only Kubernetes-filled service-account tokens, no data
                assert obj["type"] == "kubernetes.io/service-account-token"
                assert "data" not in obj and "stringData" not in obj
            for _pod, c in _containers(obj):
                refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c.get("env", [])
                        if "secretKeyRef" in e.get("valueFrom", {})}
                for name, ref in refs.items():
                    assert ref == {"name": secret_name, "key": name} and name in secrets
                if obj["kind"] == "WorkflowTemplate" and c["command"] == ["mlprism"]:
                    assert set(refs) == secrets
                for e in c.get("env", []):
                    assert e["name"] not in secrets or "value" not in e


def test_least_privilege_rbac(cases: dict[str, Case], built: dict) -> None:
    roles = {o["metadata"]["name"]: o["rules"] for o in built[("full", "base")] if o["kind"] == "Role"}
    assert roles["churn-executor"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                                        "verbs": ["create", "patch"]}]
    assert roles["churn-github"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workfloweventbindings"], "verbs": ["list"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "resourceNames": ["churn"], "verbs": ["get"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]
    spec = cases["full"].template["spec"]
    assert spec["serviceAccountName"] == "churn-workflow" and spec["executor"] == {"serviceAccountName": "churn-executor"}
    assert "churn-github" not in {o["metadata"]["name"] for o in built[("prod", "base")]}   # push removed there
    assert cases["options"].template["spec"]["serviceAccountName"] == "churn-runner"


def test_serving(cases: dict[str, Case], built: dict) -> None:
    full = {(o["kind"], o["metadata"]["name"]): o for o in built[("full", "base")]}
    rollout = full[("Rollout", "churn-serve")]
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [
        {"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 50}, {"pause": {"duration": "5m"}},
        {"setWeight": 100}]
    assert "replicas" not in rollout["spec"]             # the HPA owns the replica count
    hpa = full[("HorizontalPodAutoscaler", "churn-serve")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "churn-serve"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    server = rollout["spec"]["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert server["image"] == "churn-serve:dev"
    pdb = full[("PodDisruptionBudget", "churn-serve")]["spec"]
    assert pdb["selector"]["matchLabels"] == rollout["spec"]["selector"]["matchLabels"]
    net = full[("NetworkPolicy", "churn-serve")]["spec"]
    assert net["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}] and net["egress"] == []
    # Rollouts off: a Deployment with a rolling update, and a note in the file saying why.
    opt = {(o["kind"], o["metadata"]["name"]): o for o in built[("options", "base")]}
    dep = opt[("Deployment", "churn-serve")]
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert opt[("HorizontalPodAutoscaler", "churn-serve")]["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert b"a rolling update replaces the pods" in cases["options"].files["base/serving.yaml"]
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/acme/acme/churn-server@sha256:" + "2" * 64


def test_options_reach_every_pod(cases: dict[str, Case]) -> None:
    spec = cases["options"].template["spec"]
    assert spec["nodeSelector"] == {"pool": "ml"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["securityContext"]["runAsUser"] == 20000
    step = next(t for t in spec["templates"] if t["name"] == "step-prepare")["container"]
    assert step["image"] == "ghcr.io/acme/churn-pipeline@sha256:" + "1" * 64
    assert step["imagePullPolicy"] == "IfNotPresent"
    assert step["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    ws = next(t for t in spec["templates"] if t["name"] == "workspace")["container"]
    assert "/opt/project" in ws["args"]
    (pvc,) = cases["options"].objects("PersistentVolumeClaim")
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
                           "storageClassName": "fast-rwo"}
    crons = cases["options"].objects("CronWorkflow")
    assert {c["spec"]["timezone"] for c in crons} == {"Europe/Paris"}
    full = cases["full"].template["spec"]
    assert next(t for t in full["templates"] if t["name"] == "step-prepare")["container"]["image"] == \
        "churn-pipeline:dev"


def test_kubectl_applies_nothing_without_a_cluster_but_kustomize_is_offline(tmp_path: Path) -> None:
    """The CLI writes the tree a user applies; `kubectl kustomize` builds it with no cluster."""
    r = run_cli("compile", str(GOLDEN / "minimal" / "pipeline.yaml"), "--target", "kubernetes",
                "--out", str(tmp_path / "deploy"))
    assert r.code == 0, r.err
    out = subprocess.run([validators.have_kubectl(), "kustomize", str(tmp_path / "deploy" / "base")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "kind: WorkflowTemplate" in out.stdout
    again = run_cli("compile", str(GOLDEN / "minimal" / "pipeline.yaml"), "--target", "kubernetes",
                    "--out", str(tmp_path / "deploy"), "--check")
    assert again.code == 0, again.err
