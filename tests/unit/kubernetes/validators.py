"""Real validators for the kubernetes target's output (see docs/targets/kubernetes.md).

- ``kubectl kustomize`` builds base/ and every overlay (offline);
- core objects: ``kubernetes_validate.validate(obj, VERSION, strict=True)``;
- Argo Workflows objects: hera's pydantic models (generated from Argo's OpenAPI schema) with
  unknown fields forbidden, and a round trip that catches snake_case spellings hera would accept;
- Argo Rollouts ``Rollout``: no hera model exists, so ROLLOUT_SCHEMA below (the fields we emit,
  checked against the Rollout CRD of Argo Rollouts v1.8: spec.replicas, selector, template,
  revisionHistoryLimit, strategy.canary.{maxSurge, maxUnavailable, steps[].setWeight|pause.duration})
  plus its pod template validated as a Deployment's by kubernetes-validate;
- any other kind fails.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require

ARGO_KINDS = {"Workflow", "WorkflowTemplate", "CronWorkflow", "WorkflowEventBinding"}

_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
ROLLOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Rollout"},
        "metadata": {"type": "object"},          # validated as the Deployment's ObjectMeta below
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "template", "strategy"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "revisionHistoryLimit": {"type": "integer", "minimum": 0},
                "selector": {"type": "object"},  # as the Deployment's
                "template": {"type": "object"},  # as the Deployment's
                "strategy": {
                    "type": "object", "additionalProperties": False, "required": ["canary"],
                    "properties": {"canary": {
                        "type": "object", "additionalProperties": False, "required": ["steps"],
                        "properties": {
                            "maxSurge": _INT_OR_STRING,
                            "maxUnavailable": _INT_OR_STRING,
                            "steps": {"type": "array", "minItems": 1, "items": {
                                "type": "object", "minProperties": 1, "maxProperties": 1,
                                "additionalProperties": False,
                                "properties": {
                                    "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
                                    "pause": {"type": "object", "additionalProperties": False,
                                              "properties": {"duration": _INT_OR_STRING}},
                                }}},
                        }}},
                },
            },
        },
    },
}


def have_kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        require("validators", "kubectl is not installed (needed for `kubectl kustomize`)")
    return str(path)


class KubectlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML read as kubectl reads it (go-yaml): PyYAML's YAML 1.1 rules plus go-yaml's wider float
    syntax, so a string such as `1e-05` left unquoted by a YAML 1.1 writer shows up as the number
    kubectl would send (and a ConfigMap value then fails validation)."""


KubectlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"))


def load_kubectl(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=KubectlLoader) if d is not None]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed as kubectl parses it."""
    proc = subprocess.run([have_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return load_kubectl(proc.stdout)


@functools.cache
def _hera() -> Any:
    """hera's models with unknown fields forbidden: the switch must be set before the models are built."""
    try:
        import hera.shared._pydantic as hp
    except ImportError:
        require("validators", "hera is not installed (pip install -e '.[dev]')")
    hp.APIBaseModel.model_config["extra"] = "forbid"
    import hera.workflows.models as models

    probe = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "x"},
             "spec": {"entrypoint": "m", "templates": [], "notAField": 1}}
    try:
        models.WorkflowTemplate.model_validate(probe)
    except Exception:
        return models
    raise AssertionError("hera.workflows.models was imported before extra=forbid was set: unknown fields pass")


def _same(a: Any, b: Any, where: str) -> list[str]:
    """Differences between what we emitted and hera's re-serialization (by alias)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{where}.{k}: dropped by the model (not an Argo field name?)")
            elif k not in a:
                continue
            else:
                out += _same(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: list length {len(a)} != {len(b)}"]
        return [x for i, (u, v) in enumerate(zip(a, b, strict=True)) for x in _same(u, v, f"{where}[{i}]")]
    if a != b and str(a) != str(b):
        return [f"{where}: {a!r} became {b!r}"]
    return []


def validate_argo(doc: dict[str, Any]) -> None:
    models = _hera()
    model = getattr(models, doc["kind"])
    obj = model.model_validate(doc)
    back = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    problems = _same(doc, back, doc["kind"])
    assert not problems, f"{doc['kind']} {doc['metadata']['name']}: " + "; ".join(problems[:10])


def validate_rollout(doc: dict[str, Any], version: str) -> None:
    import jsonschema

    kubernetes_validate = _kubernetes_validate()
    jsonschema.validate(doc, ROLLOUT_SCHEMA)
    spec = doc["spec"]
    as_deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": copy.deepcopy(doc["metadata"]),
                     "spec": {"selector": spec["selector"], "template": spec["template"]}}
    kubernetes_validate.validate(as_deployment, version, strict=True)


@functools.cache
def _kubernetes_validate() -> Any:
    """kubernetes_validate, reading each of its schema files once per session (it re-reads the
    definitions file, megabytes of JSON, on every call; the files do not change)."""
    try:
        import kubernetes_validate
        import kubernetes_validate.utils as utils
    except ImportError:
        require("validators", "kubernetes-validate is not installed (pip install -e '.[dev]')")
    utils.schema_contents = functools.cache(utils.schema_contents)
    return kubernetes_validate


def validate_objects(docs: list[dict[str, Any]], version: str) -> dict[str, int]:
    """Validate every object; return a count per kind. Any kind nobody can validate fails."""
    kubernetes_validate = _kubernetes_validate()
    from kubernetes_validate.utils import SchemaNotFoundError
    counts: dict[str, int] = {}
    for doc in docs:
        kind, api = doc["kind"], doc["apiVersion"]
        if api.startswith("argoproj.io/") and kind in ARGO_KINDS:
            validate_argo(doc)
        elif api == "argoproj.io/v1alpha1" and kind == "Rollout":
            validate_rollout(doc, version)
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except SchemaNotFoundError:
                raise AssertionError(f"no validator knows {api} {kind}") from None
        counts[kind] = counts.get(kind, 0) + 1
    return counts
