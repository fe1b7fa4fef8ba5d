"""What no schema checks: the WorkflowTemplate's DAGs against the spec's graph.

Every dependency names a task of its DAG, there is no cycle, the step tasks form exactly the
spec's graph (in the main DAG and in a sweep's trial DAG), every file a step reads is written by
an ancestor task, every artifact consumed is produced upstream under the same path, and every
`{{…}}` reference resolves the way Argo's validator requires (declared inputs and workflow
parameters, ancestor tasks, declared outputs, item keys).
"""

from __future__ import annotations

import re
from typing import Any

import mlprism
import pytest
from mlprism_kubernetes.workflow import TRIAL

from .conftest import Case

_TASK = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
_PARAM = re.compile(r"^[-a-zA-Z0-9_]+$")
_REF = re.compile(r"\{\{([^{}]*)\}\}")
CASES = ["full", "minimal", "options", "prod", "hostile"]


def _templates(case: Case) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in case.template["spec"]["templates"]}


def _ancestors(tasks: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(tasks[name].get("dependencies", []))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(tasks[n].get("dependencies", []))
    return seen


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _step_of(template: str) -> str | None:
    for prefix in ("step-", "trial-"):
        if template.startswith(prefix) and template not in ("trial-workspace", "trial-done"):
            return template[len(prefix):]
    return None


def _step_graph(tasks: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """step -> the nearest step tasks upstream of it (through helper tasks such as `select`)."""
    steps = {n for n, t in tasks.items() if _step_of(t["template"]) == n}
    out: dict[str, set[str]] = {}
    for name in steps:
        found: set[str] = set()
        todo, seen = list(tasks[name].get("dependencies", [])), set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in steps:
                found.add(n)
            else:
                todo.extend(tasks[n].get("dependencies", []))
        out[name] = found
    return out


@pytest.mark.parametrize("name", CASES)
def test_dags_are_well_formed(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    templates = _templates(case)
    assert case.template["spec"]["entrypoint"] in templates
    for t in templates.values():
        assert _TASK.match(t["name"]), t["name"]
        if "dag" not in t:
            continue
        tasks = {task["name"]: task for task in t["dag"]["tasks"]}
        assert len(tasks) == len(t["dag"]["tasks"]), f"duplicate task names in {t['name']}"
        for task in tasks.values():
            assert _TASK.match(task["name"]), task["name"]
            assert task["template"] in templates, f"{t['name']}.{task['name']}: no template {task['template']}"
            for dep in task.get("dependencies", []):
                assert dep in tasks, f"{t['name']}.{task['name']} depends on unknown task {dep}"
            assert task["name"] not in _ancestors(tasks, task["name"]), f"cycle through {task['name']}"


@pytest.mark.parametrize("name", CASES)
def test_task_graph_equals_the_spec_graph(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    p = case.pipeline
    templates = _templates(case)
    main = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    graph = _step_graph(main)
    trial_steps: list[str] = []
    if "trial" in templates:
        trial = {t["name"]: t for t in templates["trial"]["dag"]["tasks"]}
        tgraph = _step_graph(trial)
        trial_steps = sorted(tgraph)
        for step, ups in tgraph.items():
            assert ups == set(p.upstream(step)) & set(trial_steps), f"trial {step}: {ups}"
            assert trial[step]["template"] == f"trial-{step}"
        # Everything a trial needs from outside the sweep is finished before the fan-out starts.
        outside = {u for s in trial_steps for u in p.upstream(s)} - set(trial_steps)
        assert outside <= _ancestors(main, "sweep")
        assert {item[TRIAL] for item in main["sweep"]["withItems"]} == {str(i) for i in range(len(p.sweep.combinations()))}
    refit = p.sweep is not None and p.sweep.select is not None
    expected = set(p.step_names) if (refit or not trial_steps) else set(p.step_names) - set(trial_steps)
    assert set(graph) == expected
    for step, ups in graph.items():
        assert ups == set(p.upstream(step)) & expected, f"{step}: tasks {ups} != spec {set(p.upstream(step))}"
        assert main[step]["template"] == f"step-{step}"
        if step in trial_steps:
            assert "select" in _ancestors(main, step), f"{step} must run after the selection"
    if p.monitor is not None:
        mon = {t["name"]: t for t in templates["monitor"]["dag"]["tasks"]}
        assert mon["drift"]["dependencies"] == ["workspace"]
        if p.monitor.on_drift == "retrain":
            assert mon["retrain"]["template"] == "pipeline"
            assert mon["retrain"]["when"] == "{{tasks.drift.outputs.parameters.drift}} == true"
        else:
            assert "retrain" not in mon


@pytest.mark.parametrize("name", CASES)
def test_every_input_is_written_upstream(cases: dict[str, Case], name: str) -> None:
    """Files on the shared volume: the producer of each input a step reads is an ancestor task."""
    case = cases[name]
    p = case.pipeline
    producer = {o: s.name for s in p.steps for o in s.outputs}
    templates = _templates(case)
    main = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    trial = {t["name"]: t for t in templates["trial"]["dag"]["tasks"]} if "trial" in templates else {}
    for s in p.steps:
        for path in s.inputs:
            src = producer.get(path)
            if src is None or src == s.name:
                continue
            if s.name in main:
                assert src in _ancestors(main, s.name), f"{s.name} reads {path} before {src} writes it"
            if s.name in trial:
                where = _ancestors(trial, s.name) if src in trial else _ancestors(main, "sweep")
                assert src in where, f"trial {s.name} reads {path} before {src} writes it"


def test_artifacts_are_produced_upstream(cases: dict[str, Case]) -> None:
    case = cases["options"]          # the artifact repository is on there
    p = case.pipeline
    assert case.template["spec"]["artifactRepositoryRef"] == {"configMap": "artifacts", "key": "s3"}
    templates = _templates(case)
    consumed = 0
    for dag_name in ("pipeline", "trial"):
        tasks = {t["name"]: t for t in templates[dag_name]["dag"]["tasks"]}
        dag_inputs = {a["name"] for a in templates[dag_name].get("inputs", {}).get("artifacts", [])}
        for task in tasks.values():
            declared = {a["name"]: a for a in templates[task["template"]].get("inputs", {}).get("artifacts", [])}
            given = {a["name"]: a for a in task.get("arguments", {}).get("artifacts", [])}
            assert set(declared) == set(given), f"{task['name']}: artifacts {set(declared)} != {set(given)}"
            for art_name, arg in given.items():
                m = re.fullmatch(r"\{\{(tasks\.([-a-zA-Z0-9]+)\.outputs|inputs)\.artifacts\.([-a-zA-Z0-9_]+)\}\}",
                                 arg["from"])
                assert m, arg
                if m.group(1) == "inputs":
                    assert m.group(3) in dag_inputs
                    continue
                src = m.group(2)
                assert src in _ancestors(tasks, task["name"]), f"{task['name']} takes {art_name} from {src}"
                outs = {a["name"]: a for a in templates[tasks[src]["template"]].get("outputs", {}).get("artifacts", [])}
                assert m.group(3) in outs, f"{src} does not produce {m.group(3)}"
                if "path" in declared[art_name] and declared[art_name]["path"].startswith("/workspace/"):
                    assert declared[art_name]["path"] == outs[m.group(3)]["path"], "same file on both sides"
                consumed += 1
        # memoized steps are keyed by the runtime's fingerprint, computed by a task before them
        for task in tasks.values():
            tpl = templates[task["template"]]
            if "memoize" in tpl:
                assert tpl["memoize"]["key"] == f"{task['name']}-{{{{inputs.parameters.fingerprint}}}}"
                fp = f"fingerprint-{task['name']}"
                assert fp in task["dependencies"]
                assert {"name": "fingerprint", "value": f"{{{{tasks.{fp}.outputs.result}}}}"} in \
                    task["arguments"]["parameters"]
                argv = templates[fp]["container"]["command"] + templates[fp]["container"]["args"]
                assert argv[:4] == ["mlprism", "fingerprint", p.spec_file, task["name"]]
    assert consumed >= 4


@pytest.mark.parametrize("name", CASES)
def test_references_resolve(cases: dict[str, Case], name: str) -> None:
    """Argo's own validation, offline: each `{{…}}` names something that exists where it is used."""
    case = cases[name]
    spec = case.template["spec"]
    templates = _templates(case)
    workflow_params = {a["name"] for a in spec["arguments"]["parameters"]}
    assert all(_PARAM.match(n) for n in workflow_params)

    def outputs(template: str, kind: str) -> set[str]:
        return {o["name"] for o in templates[template].get("outputs", {}).get(kind, [])}

    for t in templates.values():
        inputs = {k: {i["name"] for i in t.get("inputs", {}).get(k, [])} for k in ("parameters", "artifacts")}
        assert all(_PARAM.match(n) for k in inputs.values() for n in k)
        body = {k: v for k, v in t.items() if k != "dag"}
        tasks = {task["name"]: task for task in t.get("dag", {}).get("tasks", [])}
        scopes: list[tuple[str | None, list[str]]] = [(None, _strings(body))]
        scopes += [(n, _strings(task)) for n, task in tasks.items()]
        for task_name, texts in scopes:
            for text in texts:
                for ref in _REF.findall(text):
                    parts = ref.split(".")
                    where = f"{t['name']}{'.' + task_name if task_name else ''}: {{{{{ref}}}}}"
                    if parts[0] == "workflow":
                        assert ref == "workflow.uid" or (parts[1] == "parameters" and parts[2] in workflow_params), where
                    elif parts[0] == "inputs":
                        assert parts[2] in inputs[parts[1]], where
                    elif parts[0] == "item":
                        assert task_name is not None and all(parts[1] in i for i in tasks[task_name]["withItems"]), where
                    elif parts[0] == "tasks":
                        assert task_name is not None, where
                        src = parts[1]
                        assert src in _ancestors(tasks, task_name), f"{where}: not an ancestor"
                        tpl = tasks[src]["template"]
                        if parts[3] == "result":
                            assert "container" in templates[tpl] or "script" in templates[tpl], where
                        else:
                            assert parts[4] in outputs(tpl, parts[3]), where
                    else:
                        raise AssertionError(f"unknown reference {where}")
        # Each task gives its template exactly the inputs it declares without a value.
        for task in tasks.values():
            want = {i["name"] for i in templates[task["template"]].get("inputs", {}).get("parameters", [])
                    if "value" not in i}
            got = {a["name"] for a in task.get("arguments", {}).get("parameters", [])}
            assert want == got, f"{t['name']}.{task['name']}: gives {got}, needs {want}"


@pytest.mark.parametrize("name", CASES)
def test_each_step_runs_through_the_runtime(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    p = case.pipeline
    templates = _templates(case)
    flat = p.flat_params()
    for t in templates.values():
        step = _step_of(t["name"])
        if step is None:
            continue
        c = t["container"]
        argv = c["command"] + c["args"]
        assert argv[:5] == mlprism.step_command(p, step)[:5] == ["mlprism", "run", p.spec_file, "--only", step]
        keys = [a.split("=", 1)[0].lstrip("+") for a in argv if "=" in a]
        assert [k for k in keys if k.startswith("params.")] == [f"params.{n}" for n in flat], "every param, in order"
        assert all(g in keys for g in p.config_choices)
        assert "--no-sweep" in argv if p.sweep else "--no-sweep" not in argv
        assert ("--no-register" in argv) == t["name"].startswith("trial-")
        st = p.step(step)
        if st.retries:
            assert t["retryStrategy"]["limit"] == st.retries and f"steps.{step}.retries=0" in argv
        else:
            assert "retryStrategy" not in t
        assert t.get("activeDeadlineSeconds") == st.timeout
        limits = c["resources"]["limits"]
        assert limits.get("nvidia.com/gpu") == (str(st.resources.gpu) if st.resources.gpu else None)
        if st.resources.cpu:
            assert c["resources"]["requests"]["cpu"] == st.resources.cpu == limits["cpu"]
        if st.resources.memory:
            assert c["resources"]["requests"]["memory"] == st.resources.memory == limits["memory"]
        if t["name"].startswith("trial-"):
            assert c["workingDir"].endswith(f"/{{{{workflow.uid}}}}/{{{{inputs.parameters.{TRIAL}}}}}")
        else:
            assert c["workingDir"] == "/workspace"
