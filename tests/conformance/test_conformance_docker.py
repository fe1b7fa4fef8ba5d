"""The conformance suite for the docker target: compose.yaml read back.

One service per step: its `command` is the step command (the spec, the step and
the overrides reach `mlprism run` inside the container), `depends_on` with
`service_completed_successfully` gives the order, `environment` variables
(NAME=value: the step sees them and those the runtime sets) and the secrets (NAME only: passed through from the invoking
shell), `deploy.resources` the CPU, memory and GPU requests. What the runtime
does inside the container (params, retries, timeouts, cache) is read from the
runtime's view of the command, run in the directory the project is mounted from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from mlprism.testing import CanonicalPipeline, TargetConformance, step_from_invocation

from tests.conformance.yaml12 import load

#: Variables the target sets for itself (not from the spec).
OWN_VARIABLES = {"HOME"}
_DOCKER_MEMORY = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def docker_memory(text: Any) -> int:
    """Compose memory ("4g", "512m", bytes) in bytes: Docker's units are binary."""
    text = str(text).strip().lower()
    if text[-1].isdigit():
        return int(text)
    return round(float(text[:-1]) * _DOCKER_MEMORY[text[-1]])


_COMPOSE_VAR = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def compose_interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """What compose makes of a string: `$$` is `$`, `${X:-d}` is X or d, `$X` is X (empty when unset)."""
    environ = environ or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        name = m.group(2) or m.group(4)
        return environ.get(name) or (m.group(3) or "")

    return _COMPOSE_VAR.sub(sub, text)


def decompile_compose(compose: Mapping[str, Any], spec_dir: Any) -> CanonicalPipeline:
    services = compose["services"]
    steps = {}
    waits: dict[str, list[str]] = {}
    for name, svc in services.items():
        command = [compose_interpolate(str(a)) for a in svc.get("command") or []]
        if "run" not in command or "--only" not in command:
            continue                      # the model server, not a step
        mounts = {m["target"]: m["source"] for m in svc.get("volumes") or [] if isinstance(m, dict)}
        workdir = svc["working_dir"]
        assert workdir in mounts, f"{name}: working_dir {workdir} is not a mounted project"
        cwd = spec_dir / mounts[workdir]
        step = step_from_invocation(command, cwd)
        assert step.name == name, f"service {name} runs step {step.name}"
        env, secrets = set(), set()
        for entry in svc.get("environment") or []:
            if "=" in entry:
                env.add(entry.split("=", 1)[0])
            else:
                secrets.add(entry)
        res = ((svc.get("deploy") or {}).get("resources") or {})
        limits = res.get("limits") or {}
        devices = (res.get("reservations") or {}).get("devices") or []
        gpu = sum(int(d.get("count", 0)) for d in devices if "gpu" in (d.get("capabilities") or []))
        steps[name] = dataclasses.replace(
            step,
            # the runtime in the container sets the spec's variables too: the step sees both
            env=tuple(sorted((env - OWN_VARIABLES) | set(step.env))),
            secrets=tuple(sorted(secrets)),
            cpu=round(float(limits["cpus"]) * 1000) if "cpus" in limits else None,
            memory=docker_memory(limits["memory"]) if "memory" in limits else None,
            gpu=gpu,
        )
        deps = svc.get("depends_on") or {}
        for up, how in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            assert (how or {}).get("condition") == "service_completed_successfully", \
                f"{name} must wait for {up} to complete successfully, not {how}"
        waits[name] = list(deps)
    edges = {(up, name) for name, ups in waits.items() for up in ups if up in steps}
    return CanonicalPipeline(steps=steps, edges=frozenset(edges), schedules=())


class TestDockerConformance(TargetConformance):
    target_name = "docker"

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        return decompile_compose(load(files["compose.yaml"]), self.spec_dir)
