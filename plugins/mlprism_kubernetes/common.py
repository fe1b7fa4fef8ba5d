"""Shared pieces: names, labels, Hydra values, pod security, resources, environment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import mlprism

from .options import Settings

#: Where the shared volume (the project workspace) and the scratch emptyDir are mounted.
WORKSPACE = "/workspace"
TMP = "/tmp"
#: Sweep trials run in their own copies of the project, under the workspace (removed after selection).
SWEEPS_DIR = f"{WORKSPACE}/.mlprism-sweeps"

MANAGED_BY = "mlprism"
_ARGO_NAME = re.compile(r"[^-a-zA-Z0-9_]")


class Problem(Exception):
    """A spec value the target cannot carry; turned into an MLP320 diagnostic by the target."""

    def __init__(self, message: str, key: str | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.hint = hint


def labels(p: mlprism.Pipeline, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": p.name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": MANAGED_BY}


def selector(p: mlprism.Pipeline, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": p.name, "app.kubernetes.io/component": component}


def metadata(p: mlprism.Pipeline, s: Settings, name: str, component: str,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": s.namespace, "labels": labels(p, component)}
    if annotations:
        md["annotations"] = annotations
    return md


def argo_name(name: str) -> str:
    """A name Argo accepts for a parameter or an artifact (`[-a-zA-Z0-9_]+`)."""
    return _ARGO_NAME.sub("_", name)


def unique_argo_names(names: list[str], what: str, key: str) -> dict[str, str]:
    """name -> Argo name; two names that map to one are a problem, not a silent merge."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for n in names:
        a = argo_name(n)
        if a in seen:
            raise Problem(f"{what} `{seen[a]}` and `{n}` both become the Argo name `{a}`", key,
                          "rename one of them (Argo names allow letters, digits, `_` and `-`)")
        seen[a] = n
        out[n] = a
    return out


def hydra_value(value: Any) -> str:
    """:func:`mlprism.hydra_value`; a value Hydra's grammar cannot write is this target's MLP320."""
    try:
        return mlprism.hydra_value(value)
    except ValueError as exc:
        raise Problem(str(exc), None, "use keys made of letters, digits and `_`") from None


def k8s_escape(text: str) -> str:
    """Kubernetes expands `$(VAR)` in a container's command, args and env values, and reads `$$` as
    `$`: escape exactly the `$` that would be read, so the process sees `text` unchanged."""
    return _K8S_DOLLAR.sub("$$", text) if "$" in text else text


_K8S_DOLLAR = re.compile(r"\$(?=[$(])")


@dataclass(frozen=True)
class Quota:
    """Requests of the small helper containers (copying, selecting, marking); same fields as a step's."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0


HELPER = Quota("250m", "256Mi")


def quantity(value: str) -> str:
    return str(value)


def resources(s: Settings, res: Any) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS); GPUs as `nvidia.com/gpu` limits."""
    cpu = quantity(res.cpu) if res is not None and res.cpu else s.default_cpu
    memory = quantity(res.memory) if res is not None and res.memory else s.default_memory
    out: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}
    if res is not None and res.gpu:
        out["limits"]["nvidia.com/gpu"] = str(res.gpu)
    return out


def pod_security(s: Settings, fs_group: bool = True) -> dict[str, Any]:
    ctx: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": s.uid, "runAsGroup": s.uid}
    if fs_group:
        ctx["fsGroup"] = s.uid
        ctx["fsGroupChangePolicy"] = "OnRootMismatch"
    ctx["seccompProfile"] = {"type": "RuntimeDefault"}
    return ctx


def container_security(s: Settings) -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": s.read_only_root,
            "runAsNonRoot": True, "runAsUser": s.uid, "runAsGroup": s.uid,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def secret_env(p: mlprism.Pipeline, s: Settings) -> list[dict[str, Any]]:
    """Declared secrets as references to keys of one Secret: names only, never values."""
    return [{"name": name, "valueFrom": {"secretKeyRef": {"name": s.secret_name, "key": name}}}
            for name in p.environment.secrets]


def base_env() -> list[dict[str, Any]]:
    # The root file system is read-only: HOME (caches, config dirs) lives on the /tmp emptyDir.
    return [{"name": "HOME", "value": TMP}]


def tmp_volume() -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {}}


def tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": TMP}
