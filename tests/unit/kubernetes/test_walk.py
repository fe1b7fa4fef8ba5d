"""The emitted WorkflowTemplate, walked task by task with the real runtime on real files.

There is no cluster here, so this test stands in for Argo's controller with the little of it the
template uses: DAG order by `dependencies`, `withItems`, `continueOn.failed`, `when`, parameters
(workflow parameters from the params ConfigMap, task arguments, items, task outputs), output
parameters read from files, `retryStrategy.limit`, and Kubernetes' `$(…)`/`$$` expansion of
command, args and env. Every container and script runs for real — `mlprism run`, the sweep's
trial workspace and selection, the workspace copy — with /workspace, /app and /tmp moved under a
temporary directory. It proves the sweep design end to end: trials in their own copies, a gate
failure only drops a candidate, the winner's cache entries make the re-run a cache hit, and the
model is registered once, with the winning params.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlprism
import pytest
import yaml

from .test_target import k8s_expand

SPEC = r"""
apiVersion: mlprism/v1
name: walk
params: {a: 1, label: "it's $5 $(HOME)"}
steps:
  prep:
    run: mkdir -p data && echo base > data/base.txt
    outputs: [data/base.txt]
  train:
    run: mkdir -p models && cat data/base.txt > models/model.txt && echo "${params.a} ${params.label}" >> models/model.txt
    inputs: [data/base.txt]
    outputs: [models/model.txt]
    retries: 1
  evaluate:
    run: 'mkdir -p metrics && echo "{\"accuracy\": 0.${params.a}}" > metrics/eval.json'
    inputs: [models/model.txt]
    metrics: metrics/eval.json
    gate: [{metric: accuracy, min: 0.2}]
sweep:
  params: {a: [1, 3]}
  select: {metric: accuracy, goal: max}
registry: {name: walk, artifact: models/model.txt, register_after: evaluate}
"""

_VAR = re.compile(r"\{\{([^{}]+)\}\}")


class Walker:
    def __init__(self, files: dict[str, bytes], project: Path, root: Path) -> None:
        docs = [d for rel in sorted(files) if rel.startswith("base/") and not rel.endswith("kustomization.yaml")
                for d in yaml.safe_load_all(files[rel]) if d]
        (self.wft,) = [d for d in docs if d["kind"] == "WorkflowTemplate"]
        self.config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
        self.templates = {t["name"]: t for t in self.wft["spec"]["templates"]}
        self.root, self.uid = root, "uid-1"
        self.ws, self.app, self.tmp = root / "workspace", root / "app", root / "tmp"
        self.ws.mkdir(parents=True)
        self.tmp.mkdir()
        shutil.copytree(project, self.app, ignore=shutil.ignore_patterns(".mlprism", "out"))
        self.workflow_params = {}
        for p in self.wft["spec"]["arguments"]["parameters"]:
            ref = p["valueFrom"]["configMapKeyRef"]
            self.workflow_params[p["name"]] = self.config[ref["name"]][ref["key"]]
        self.log: list[tuple[str, dict[str, str], int, str]] = []

    def remap(self, text: str) -> str:
        return re.sub(r'(^|["\s=])/(workspace|app|tmp)(?=/|"|$|\s)',
                      lambda m: f"{m.group(1)}{self.root}/{m.group(2)}", text)

    def subst(self, text: str, scope: dict[str, str]) -> str:
        def one(m: re.Match[str]) -> str:
            key = m.group(1)
            if key == "workflow.uid":
                return self.uid
            if key.startswith("workflow.parameters."):
                return self.workflow_params[key.split(".", 2)[2]]
            return scope[key]
        return _VAR.sub(one, text)

    def run(self, name: str, inputs: dict[str, str]) -> tuple[bool, dict[str, str]]:
        t = self.templates[name]
        scope = {f"inputs.parameters.{k}": v for k, v in inputs.items()}
        if "dag" in t:
            return self.dag(t, scope), {}
        c = t.get("container") or t["script"]
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for source in c.get("envFrom", []):
            env.update(self.config[source["configMapRef"]["name"]])
        for e in c["env"]:
            if "value" in e:
                env[e["name"]] = self.remap(k8s_expand(self.subst(e["value"], scope), env))
        env["HOME"] = str(self.tmp)
        argv = [self.remap(k8s_expand(self.subst(a, scope), env)) for a in c["command"] + c.get("args", [])]
        if "script" in t:
            src = self.tmp / f"{name}.py"
            src.write_text(c["source"])
            argv = [*argv, str(src)]
        cwd = Path(self.remap(self.subst(c["workingDir"], scope)))
        for _attempt in range(1 + int(t.get("retryStrategy", {}).get("limit", 0))):
            proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                break
        self.log.append((name, inputs, proc.returncode, proc.stdout + proc.stderr))
        outputs = {}
        for o in t.get("outputs", {}).get("parameters", []):
            path = Path(self.remap(o["valueFrom"]["path"]))
            if path.exists():
                outputs[o["name"]] = path.read_text().removesuffix("\n")
        outputs["result"] = proc.stdout.removesuffix("\n")
        return proc.returncode == 0, outputs

    def dag(self, t: dict[str, Any], scope: dict[str, str]) -> bool:
        tasks = {task["name"]: task for task in t["dag"]["tasks"]}
        status: dict[str, bool | None] = {}           # None: not run
        done: set[str] = set()
        while len(done) < len(tasks):
            ready = [n for n, task in tasks.items() if n not in done and set(task.get("dependencies", [])) <= done]
            for name in ready:
                task = tasks[name]
                done.add(name)
                if not all(status[d] is not False for d in task.get("dependencies", [])) or \
                        any(status[d] is None for d in task.get("dependencies", [])):
                    status[name] = None
                    continue
                if "when" in task:
                    lhs, _, rhs = self.subst(task["when"], scope).partition(" == ")
                    if lhs.strip() != rhs.strip():
                        status[name] = None
                        continue
                ok = True
                for item in task.get("withItems", [None]):
                    local = dict(scope)
                    if item is not None:
                        local.update({f"item.{k}": v for k, v in item.items()})
                    args = {a["name"]: self.subst(a["value"], local)
                            for a in task.get("arguments", {}).get("parameters", [])}
                    child_ok, outputs = self.run(task["template"], args)
                    ok = ok and child_ok
                    scope.update({f"tasks.{name}.outputs.parameters.{k}": v for k, v in outputs.items()})
                    scope[f"tasks.{name}.outputs.result"] = outputs.get("result", "")
                status[name] = ok or bool(task.get("continueOn", {}).get("failed"))
        return all(s is not False for s in status.values())


@pytest.mark.slow
def test_walk_the_sweep_with_the_real_runtime(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipeline.yaml").write_text(textwrap.dedent(SPEC).lstrip())
    files = mlprism.compile_spec(str(project / "pipeline.yaml"), "kubernetes")
    walker = Walker(files, project, tmp_path / "cluster")
    ok = walker.dag(walker.templates["pipeline"], {})
    report = "\n".join(f"{n} {a} -> {rc}\n{textwrap.indent(out[-1500:], '    ')}" for n, a, rc, out in walker.log)
    assert ok, report
    ran = [(n, a.get("a"), rc) for n, a, rc, _ in walker.log]
    assert ("trial-evaluate", "1", 1) in ran            # a=1 fails its gate: not a candidate
    assert sum(1 for n, _, rc in ran if n == "trial-done" and rc == 0) == 1
    select = next(out for n, _a, _rc, out in walker.log if n == "select")
    assert "selected trial 1: accuracy = 0.3 (max)" in select
    refit = [out for n, a, _rc, out in walker.log if n == "step-train"]
    assert len(refit) == 1 and re.search(r"\b(cached|restored)\b", refit[0]), refit[0]
    assert not (walker.ws / ".mlprism-sweeps" / walker.uid).exists()          # the copies are removed
    assert (walker.ws / "models" / "model.txt").read_text().startswith("base\n3 it's")   # the shell's echo
    models = subprocess.run([str(Path(sys.executable).parent / "mlprism"), "models", "list", "--json"],
                            cwd=walker.ws, capture_output=True, text=True, timeout=60)
    assert models.returncode == 0, models.stderr
    (version,) = json.loads(models.stdout)["versions"]
    assert version["lineage"]["params"] == {"a": 3, "label": "it's $5 $(HOME)"}
    assert version["lineage"]["metrics"] == {"accuracy": 0.3}
