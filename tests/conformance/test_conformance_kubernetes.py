"""The conformance suite for the kubernetes target: the Argo WorkflowTemplate's DAG read back.

The entrypoint's DAG tasks whose template runs `mlprism run SPEC --only STEP`
are the steps; `dependencies` give the order (through helper tasks: the
workspace copy, the sweep's trials and selection). Argo parameters in the
arguments are resolved the way Argo would with no `-p`: workflow parameters
from the params ConfigMap (or their default), task inputs from the task's
arguments; a value only known after the sweep's selection leaves its override
out (the spec's value is the default). The step's template gives what Argo
does itself: `retryStrategy.limit` (the runtime's own retries are turned off
with an override), `activeDeadlineSeconds`, container requests (the target's
`default_resources` when the spec asks for none), `nvidia.com/gpu`, secrets by
`secretKeyRef`, variables from the env ConfigMap. CronWorkflows give the
schedules: the one whose entrypoint is `monitor` is the monitor's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlprism
from mlprism.testing import (
    CanonicalPipeline,
    CanonicalStep,
    TargetConformance,
    cpu_millicores,
    memory_bytes,
    step_from_invocation,
)

from tests.conformance.yaml12 import load_all, upstream_through

_PARAM = re.compile(r"\{\{\s*([a-z]+)\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")
OWN_VARIABLES = {"HOME"}


def _docs(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(files):
        if path.startswith("base/") and path.endswith(".yaml") and not path.endswith("kustomization.yaml"):
            docs += [d for d in load_all(files[path]) if isinstance(d, dict)]
    return docs


def _default_resources(spec: Path) -> tuple[int | None, int | None]:
    from mlprism._internal.compiler import get_plugins

    target = get_plugins().targets.get("kubernetes")
    pipeline = mlprism.load_pipeline(str(spec), check_inputs=False)
    given = (pipeline.targets.get("kubernetes") or {}).get("default_resources") or {}
    schema = (target.options_schema or {})["properties"]["default_resources"]["properties"]
    cpu = given.get("cpu", schema["cpu"].get("default"))
    memory = given.get("memory", schema["memory"].get("default"))
    return cpu_millicores(cpu), memory_bytes(memory)


def decompile_argo(files: Mapping[str, bytes], spec_dir: Path) -> CanonicalPipeline:
    docs = _docs(files)
    templates_docs = [d for d in docs if d.get("kind") == "WorkflowTemplate"]
    assert len(templates_docs) == 1, f"expected one WorkflowTemplate, found {len(templates_docs)}"
    wt = templates_docs[0]
    spec = wt["spec"]
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}

    workflow_params: dict[str, str] = {}
    for p in (spec.get("arguments") or {}).get("parameters") or []:
        source = p.get("valueFrom") or {}
        ref = source.get("configMapKeyRef")
        if ref and ref["key"] in config_maps.get(ref["name"], {}):
            workflow_params[p["name"]] = str(config_maps[ref["name"]][ref["key"]])
        elif "value" in p:
            workflow_params[p["name"]] = str(p["value"])
        elif "default" in source:
            workflow_params[p["name"]] = str(source["default"])

    templates = {t["name"]: t for t in spec["templates"]}
    entry = templates[spec["entrypoint"]]
    tasks = entry["dag"]["tasks"]
    steps: dict[str, CanonicalStep] = {}
    task_step: dict[str, str] = {}
    waits: dict[str, list[str]] = {}
    default_cpu = default_memory = None
    for task in tasks:
        waits[task["name"]] = list(task.get("dependencies") or [])
        if "depends" in task:
            raise AssertionError(f"task {task['name']}: `depends` expressions are not read by this decompiler")
        template = templates[task["template"]]
        container = template.get("container") or {}
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if "run" not in argv or "--only" not in argv:
            continue
        task_args = {a["name"]: str(a.get("value", "")) for a in (task.get("arguments") or {}).get("parameters") or []}

        def resolve(text: str, task_args: dict[str, str] = task_args) -> str | None:
            for _ in range(5):
                m = _PARAM.search(text)
                if not m:
                    return text
                scope, name = m.groups()
                if scope == "workflow":
                    value = workflow_params[name]
                elif scope == "inputs":
                    value = task_args[name]
                    if "{{tasks." in value:
                        return None          # chosen by the sweep at run time
                else:
                    raise AssertionError(f"unknown Argo parameter scope in {text!r}")
                text = text[:m.start()] + value + text[m.end():]
            raise AssertionError(f"cannot resolve {text!r}")

        resolved = [r for r in (resolve(a) for a in argv) if r is not None]
        assert not any("{{" in a for a in resolved), resolved
        workdir = container.get("workingDir")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        assert workdir in mounts, f"{task['name']}: workingDir {workdir} is not a mounted volume"
        step = step_from_invocation(resolved, spec_dir)
        task_step[task["name"]] = step.name

        env, secrets = set(), set()
        for e in container.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                assert ref["key"] == e["name"], f"secret {ref['key']} exposed as {e['name']}"
                secrets.add(e["name"])
            elif e["name"] not in OWN_VARIABLES:
                env.add(e["name"])
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            if ref:
                env |= set(config_maps[ref["name"]])
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if default_cpu is None:
            spec_file = spec_dir / next(a for a in resolved[resolved.index("run") + 1:] if not a.startswith("-"))
            default_cpu, default_memory = _default_resources(spec_file)
        cpu = cpu_millicores(requests.get("cpu"))
        memory = memory_bytes(requests.get("memory"))
        if step.cpu is None:
            assert cpu == default_cpu, f"{step.name}: cpu {cpu} is not the default {default_cpu}"
            cpu = None
        if step.memory is None:
            assert memory == default_memory, f"{step.name}: memory {memory} is not the default {default_memory}"
            memory = None
        retry = template.get("retryStrategy") or {}
        steps[step.name] = dataclasses.replace(
            step,
            env=tuple(sorted(env | set(step.env))),
            secrets=tuple(sorted(secrets)),
            cpu=cpu, memory=memory,
            gpu=int(limits.get("nvidia.com/gpu", 0)),
            retries=int(retry.get("limit", 0)) + step.retries,
            timeout=template.get("activeDeadlineSeconds", step.timeout),
        )
    graph = {name: deps for name, deps in waits.items()}
    edges = {(task_step[a], task_step[b]) for a, b in upstream_through(graph, set(task_step))}

    schedules = []
    for d in docs:
        if d.get("kind") == "CronWorkflow":
            ws = d["spec"]["workflowSpec"]
            assert (ws.get("workflowTemplateRef") or {}).get("name") == wt["metadata"]["name"]
            kind = "monitor" if ws.get("entrypoint") == "monitor" else "pipeline"
            crons = d["spec"].get("schedules") or ([d["spec"]["schedule"]] if "schedule" in d["spec"] else [])
            schedules += [(kind, c) for c in crons]
    return CanonicalPipeline(steps=steps, edges=frozenset(edges), schedules=tuple(sorted(schedules)))


class TestKubernetesConformance(TargetConformance):
    target_name = "kubernetes"

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        return decompile_argo(files, self.spec_dir)
