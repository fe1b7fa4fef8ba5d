"""The `targets.kubernetes` section: its JSON Schema, and the resolved settings emit works from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import mlprism

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_QUANTITY = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_REPOSITORY = r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
_REGISTRY = r"^[a-z0-9][a-z0-9._:-]*(/[a-z0-9][a-z0-9._-]*)*$"
_DIGEST = r"^sha256:[a-f0-9]{64}$"
_DURATION = r"^[0-9]+(s|m|h)$"
_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"

#: Kubernetes versions kubernetes-validate ships schemas for (the manifests use APIs stable since 1.25).
KUBERNETES_VERSIONS = tuple(f"1.{minor}" for minor in range(25, 38))
#: Argo Workflows versions whose schema the emitted objects fit (`schedules`, `synchronization.mutexes`:
#: 3.6 and later). The tests validate against 4.0's (hera 7.x).
ARGO_VERSIONS = ("3.6", "3.7", "4.0")

_IMAGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "repository": {"type": "string", "pattern": _REPOSITORY,
                       "description": "Repository under `image.registry` (default: the docker target's "
                                      "`<name>-pipeline` / `<name>-serve`)."},
        "tag": {"type": "string", "pattern": _TAG, "description": "Tag of this image (default `image.tag`)."},
        "digest": {"type": "string", "pattern": _DIGEST,
                   "description": "Pin the image by digest (`sha256:…`); wins over the tag."},
    },
}

_TOLERATION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "key": {"type": "string", "pattern": _LABEL_KEY},
        "operator": {"enum": ["Exists", "Equal"], "default": "Equal"},
        "value": {"type": "string", "pattern": _LABEL_VALUE},
        "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "tolerationSeconds": {"type": "integer", "minimum": 0},
    },
}

#: JSON Schema of the spec's `targets.kubernetes` section.
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Options of the kubernetes target (a kustomize tree: Argo Workflows for the pipeline, "
                   "core objects for serving).",
    "properties": {
        "namespace": {"type": "string", "pattern": _DNS_LABEL,
                      "description": "Namespace of every object (default: the pipeline's name). It must exist."},
        "kubernetes_version": {"enum": list(KUBERNETES_VERSIONS), "default": "1.32",
                               "description": "Kubernetes version the manifests are written and validated for."},
        "argo_version": {"enum": list(ARGO_VERSIONS), "default": "4.0",
                         "description": "Argo Workflows version of the cluster (3.6 or later)."},
        "image": {
            "type": "object",
            "additionalProperties": False,
            "description": "The images the docker target builds (`mlprism build`).",
            "properties": {
                "registry": {"type": "string", "pattern": _REGISTRY,
                             "description": "Registry and namespace, e.g. ghcr.io/acme "
                                            "(default: `targets.docker.registry`)."},
                "tag": {"type": "string", "pattern": _TAG,
                        "description": "Tag of both images (default: `targets.docker.tag`, else `dev`). "
                                       "`latest` is refused."},
                "pull_policy": {"enum": ["Always", "IfNotPresent", "Never"], "default": "Always",
                                "description": "imagePullPolicy (`Always` suits a moving tag; use a digest "
                                               "and IfNotPresent to pin)."},
                "pull_secrets": {"type": "array", "uniqueItems": True,
                                 "items": {"type": "string", "pattern": _DNS_SUBDOMAIN}, "default": [],
                                 "description": "Names of existing docker-registry Secrets."},
                "pipeline": {**_IMAGE, "description": "The pipeline image (every step runs in it)."},
                "serving": {**_IMAGE, "description": "The serving image (`mlprism serve`, the model inside)."},
                "project_dir": {"type": "string", "pattern": r"^/[A-Za-z0-9_./-]*$", "default": "/app",
                                "description": "Where the pipeline image holds the project (its WORKDIR)."},
                "uid": {"type": "integer", "minimum": 1000, "maximum": 65535,
                        "description": "Non-root UID/GID of the images (default: `targets.docker.uid`, "
                                       "else 10001)."},
            },
        },
        "storage": {
            "type": "object",
            "additionalProperties": False,
            "description": "The PersistentVolumeClaim that holds the project workspace: data, outputs, the "
                           "runtime's cache, ledger and registry.",
            "properties": {
                "class": {"type": "string", "pattern": _DNS_SUBDOMAIN,
                          "description": "StorageClass (default: the cluster's default class)."},
                "size": {"type": "string", "pattern": _QUANTITY, "default": "10Gi"},
                "access_mode": {"enum": ["ReadWriteMany", "ReadWriteOnce"], "default": "ReadWriteMany",
                                "description": "ReadWriteMany lets parallel steps run on different nodes; "
                                               "with ReadWriteOnce they must share one node."},
            },
        },
        "service_account": {"type": "string", "pattern": _DNS_SUBDOMAIN,
                            "description": "ServiceAccount of the workflow pods (default `<name>-workflow`; "
                                           "created, without a token or any permission)."},
        "secret_name": {"type": "string", "pattern": _DNS_SUBDOMAIN,
                        "description": "Secret holding `environment.secrets`, one key per name "
                                       "(default `<name>-secrets`). Create it yourself: it is never generated."},
        "node_selector": {"type": "object", "propertyNames": {"pattern": _LABEL_KEY},
                          "additionalProperties": {"type": "string", "pattern": _LABEL_VALUE}, "default": {},
                          "description": "nodeSelector of every pod (workflow and serving)."},
        "tolerations": {"type": "array", "items": _TOLERATION, "default": [],
                        "description": "Tolerations of every pod, e.g. for tainted GPU nodes."},
        "default_resources": {
            "type": "object",
            "additionalProperties": False,
            "description": "Requests and limits of containers whose step (or `deploy.serve`) gives none.",
            "properties": {"cpu": {"type": "string", "pattern": _QUANTITY, "default": "500m"},
                           "memory": {"type": "string", "pattern": _QUANTITY, "default": "1Gi"}},
        },
        "read_only_root_filesystem": {"type": "boolean", "default": True,
                                      "description": "Containers write only to the workspace and an emptyDir "
                                                     "/tmp; turn off for steps that write elsewhere."},
        "artifact_repository": {
            "type": "object",
            "additionalProperties": False,
            "description": "Pass step outputs through Argo's artifact repository (and memoize steps by "
                           "fingerprint) instead of only the shared volume.",
            "properties": {
                "enabled": {"type": "boolean", "default": False},
                "config_map": {"type": "string", "pattern": _DNS_SUBDOMAIN, "default": "artifact-repositories",
                               "description": "ConfigMap of the artifact repositories (artifactRepositoryRef)."},
                "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$",
                        "description": "Key in that ConfigMap (default: the one it marks as default)."},
                "memoize_max_age": {"type": "string", "pattern": _DURATION, "default": "720h",
                                    "description": "How long a memoized step stays valid."},
            },
        },
        "argo_rollouts": {
            "type": "object",
            "additionalProperties": False,
            "description": "`deploy.rollout: canary` as an Argo Rollouts Rollout (else a rolling update).",
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "pause": {"type": "string", "pattern": _DURATION, "default": "5m",
                          "description": "Pause after each canary weight before the next."},
            },
        },
        "timezone": {"type": "string", "pattern": r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$", "default": "UTC",
                     "description": "Time zone of `triggers.schedule` and `monitor.schedule` (the spec's cron "
                                    "expressions are UTC)."},
    },
}


@dataclass(frozen=True)
class Image:
    ref: str
    pull_policy: str


@dataclass(frozen=True)
class Settings:
    """`targets.kubernetes` with every default filled in."""

    namespace: str
    kubernetes_version: str
    argo_version: str
    pipeline_image: Image
    serving_image: Image
    pull_secrets: tuple[str, ...]
    project_dir: str
    uid: int
    storage_class: str | None
    storage_size: str
    access_mode: str
    service_account: str
    executor_account: str
    secret_name: str
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, Any], ...]
    default_cpu: str
    default_memory: str
    read_only_root: bool
    artifacts: bool
    artifact_config_map: str
    artifact_key: str | None
    memoize_max_age: str
    rollouts: bool
    rollout_pause: str
    timezone: str


def _fail(p: mlprism.Pipeline, key: str, message: str, hint: str) -> mlprism.DiagnosticError:
    return mlprism.DiagnosticError([mlprism.Diagnostic("MLP303", message, p.location(f"targets.kubernetes.{key}"),
                                                       hint)])


def resolve(p: mlprism.Pipeline, options: dict[str, Any]) -> Settings:
    """Fill in defaults (some come from the docker target's section, which builds the images)."""
    docker = p.targets.get("docker") or {}
    image = dict(options.get("image") or {})
    registry = str(image.get("registry") or docker.get("registry") or "").rstrip("/")
    tag = str(image.get("tag") or docker.get("tag") or "dev")
    pull_policy = str(image.get("pull_policy") or "Always")

    def one(kind: str, default_repo: str) -> Image:
        spec = dict(image.get(kind) or {})
        repo = str(spec.get("repository") or default_repo)
        own_tag = str(spec.get("tag") or tag)
        if own_tag == "latest":
            where = f"image.{kind}.tag" if spec.get("tag") else "image.tag"
            raise _fail(p, where, "image tag `latest` is not allowed (it moves: pods of one rollout could run "
                                  "different code)", "use a version, a commit id or `image.<kind>.digest`")
        name = f"{registry}/{repo}" if registry else repo
        ref = f"{name}@{spec['digest']}" if spec.get("digest") else f"{name}:{own_tag}"
        return Image(ref, pull_policy)

    storage = dict(options.get("storage") or {})
    resources = dict(options.get("default_resources") or {})
    artifacts = dict(options.get("artifact_repository") or {})
    rollouts = dict(options.get("argo_rollouts") or {})
    uid = int(image.get("uid") or docker.get("uid") or 10001)
    project_dir = str(image.get("project_dir") or "/app").rstrip("/") or "/"
    if project_dir in ("/", "/workspace", "/tmp") or project_dir.startswith(("/workspace/", "/tmp/")):
        raise _fail(p, "image.project_dir", f"`image.project_dir` `{project_dir}` clashes with the volumes "
                                            "mounted at /workspace and /tmp", "use the image's WORKDIR, e.g. /app")
    if re.search(r"(^|/)\.\.?(/|$)", project_dir):
        raise _fail(p, "image.project_dir", f"`image.project_dir` `{project_dir}` is not a normal path",
                    "an absolute path without `.` or `..` parts, e.g. /app")
    return Settings(
        namespace=str(options.get("namespace") or p.name),
        kubernetes_version=str(options.get("kubernetes_version") or "1.32"),
        argo_version=str(options.get("argo_version") or "4.0"),
        pipeline_image=one("pipeline", f"{p.name}-pipeline"),
        serving_image=one("serving", f"{p.name}-serve"),
        pull_secrets=tuple(image.get("pull_secrets") or ()),
        project_dir=project_dir,
        uid=uid,
        storage_class=storage.get("class"),
        storage_size=str(storage.get("size") or "10Gi"),
        access_mode=str(storage.get("access_mode") or "ReadWriteMany"),
        service_account=str(options.get("service_account") or f"{p.name}-workflow"),
        executor_account=f"{p.name}-executor",
        secret_name=str(options.get("secret_name") or f"{p.name}-secrets"),
        node_selector=dict(options.get("node_selector") or {}),
        tolerations=tuple(dict(t) for t in options.get("tolerations") or ()),
        default_cpu=str(resources.get("cpu") or "500m"),
        default_memory=str(resources.get("memory") or "1Gi"),
        read_only_root=bool(options.get("read_only_root_filesystem", True)),
        artifacts=bool(artifacts.get("enabled", False)),
        artifact_config_map=str(artifacts.get("config_map") or "artifact-repositories"),
        artifact_key=artifacts.get("key"),
        memoize_max_age=str(artifacts.get("memoize_max_age") or "720h"),
        rollouts=bool(rollouts.get("enabled", True)),
        rollout_pause=str(rollouts.get("pause") or "5m"),
        timezone=str(options.get("timezone") or "UTC"),
    )
