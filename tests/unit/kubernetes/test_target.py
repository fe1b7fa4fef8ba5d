"""Goldens, values carried faithfully (Hydra, Kubernetes `$(…)` expansion), options and diagnostics."""

from __future__ import annotations

import re
from pathlib import Path

import mlprism
import pytest
from mlprism.testing import assert_golden
from mlprism_kubernetes.common import hydra_value, k8s_escape
from mlprism_kubernetes.workflow import cron_name, glob_regex

from tests.conftest import GOLDEN, run_cli

from .conftest import Case


@pytest.mark.parametrize("name", ["full", "minimal"])
def test_goldens(cases: dict[str, Case], name: str) -> None:
    assert_golden(cases[name].files, GOLDEN / name / "expected" / "kubernetes")
    again = mlprism.compile_spec(str(GOLDEN / name / "pipeline.yaml"), "kubernetes")
    assert again == cases[name].files, "same IR, same bytes"


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of container command/args/env values (k8s.io/kubernetes
    third_party/forked/golang/expansion): `$$` is `$`, `$(NAME)` is NAME's value when defined."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            out.append(env.get(name, text[i:end + 1]))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


@pytest.mark.parametrize("text", ["plain", "$(API_TOKEN)", "$$(API_TOKEN)", "price $5", "a$", "$$", "$((x))",
                                  "$(HOME) and $HOME", "\\${x}", "$(unterminated"])
def test_kubernetes_sees_exactly_the_text(text: str) -> None:
    env = {"API_TOKEN": "secret-value", "HOME": "/tmp", "x": "X"}
    assert k8s_expand(k8s_escape(text), env) == text


def test_params_survive_configmap_argo_kubernetes_and_hydra(cases: dict[str, Case]) -> None:
    """A ConfigMap value goes into args as `params.NAME=VALUE`: the runtime composes the same params."""
    for name in ("hostile", "full"):
        case = cases[name]
        (cm,) = [c for c in case.objects("ConfigMap") if c["metadata"]["name"].endswith("-params")]
        spec = case.template["spec"]
        arg_of = {a["name"]: a for a in spec["arguments"]["parameters"]}
        flat = case.pipeline.flat_params()
        overrides = []
        for dotted in flat:
            key = re.sub(r"[^-a-zA-Z0-9_]", "_", dotted)
            value = k8s_expand(cm["data"][key], {"API_TOKEN": "leak"})
            assert arg_of[key]["valueFrom"]["default"] == cm["data"][key]
            overrides.append(f"params.{dotted}={value}")
        again = mlprism.load_pipeline(str(case.spec), overrides)
        assert again.flat_params() == flat


@pytest.mark.parametrize("value", ["it's", "a\\", "a\\'b", "${x}", "true", "1e-05", "ünï ✓", "", " lead", "[1]",
                                   "a,b", "x=y", 3, 0.1, 1e-05, 1e20, True, None, [1, "two words"], -4])
def test_hydra_value_round_trips(project, value: object) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: v
        params: {x: 0}
        steps:
          a: {run: echo}
        """}) / "pipeline.yaml"
    p = mlprism.load_pipeline(str(spec), [f"params.x={hydra_value(value)}"])
    assert p.params["x"] == value


def test_glob_regex_follows_github_path_globs() -> None:
    def m(glob: str, path: str) -> bool:
        return re.match(glob_regex(glob), path) is not None

    assert m("src/**", "src/a/b.py") and not m("src/**", "srcx/a")
    assert m("src/**/*.py", "src/a.py") and m("src/**/*.py", "src/x/y.py") and not m("src/**/*.py", "src/a.txt")
    assert m("conf/?.yaml", "conf/a.yaml") and not m("conf/?.yaml", "conf/ab.yaml")
    assert m("refs/heads/release/*", "refs/heads/release/1") and not m("refs/heads/release/*", "refs/heads/release/1/2")
    assert m("pipeline.yaml", "pipeline.yaml") and not m("pipeline.yaml", "pipelineXyaml")


def test_push_paths_are_relative_to_the_repository(cases: dict[str, Case]) -> None:
    case = cases["full"]
    files = mlprism.compile_spec(str(case.spec), "kubernetes", project_path="ml/churn")
    assert b'"^(ml/churn/src/.*|ml/churn/data/.*|ml/churn/pipeline\\\\.yaml)$"' in files["base/events.yaml"]
    assert b'"^(src/.*|data/.*|pipeline\\\\.yaml)$"' in case.files["base/events.yaml"]


def test_cron_workflow_names_fit_argo_limit(project) -> None:
    name = "a" * 49 + "z"
    spec = project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: {name}
        steps:
          a: {{run: echo, outputs: [x]}}
        monitor: {{drift: {{reference: x, current: x}}, schedule: "0 * * * *"}}
        triggers: {{schedule: "0 3 * * *"}}
        """}) / "pipeline.yaml"
    p = mlprism.load_pipeline(str(spec), check_inputs=False)
    names = [cron_name(p, "schedule"), cron_name(p, "monitor")]
    assert all(len(n) <= 52 for n in names) and len(set(names)) == 2


def test_compile_overrides_become_parameter_defaults(cases: dict[str, Case]) -> None:
    spec = cases["prod"].template["spec"]
    argv = next(t for t in spec["templates"] if t["name"] == "step-prepare")["container"]["args"]
    assert "env={{workflow.parameters.config-env}}" in argv
    assert "++params.extra={{workflow.parameters.extra}}" in argv          # added with `+` at compile time
    assert "params.n_estimators={{workflow.parameters.n_estimators}}" in argv
    assert "params.n_estimators=300" not in argv and "env=prod" not in argv
    assert argv[-1] == "~triggers.push"                                    # the rest pass through as given
    defaults = {a["name"]: a["valueFrom"]["default"] for a in spec["arguments"]["parameters"]}
    assert defaults["config-env"] == "prod" and defaults["n_estimators"] == "300"


def test_docker_section_supplies_image_names_and_user(project, tmp_path: Path) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: img
        steps:
          a: {run: echo}
        targets:
          docker: {registry: registry.example.com/team, tag: "2.0", uid: 12345}
        """}) / "pipeline.yaml"
    files = mlprism.compile_spec(str(spec), "kubernetes")
    text = files["base/pipeline.yaml"].decode()
    assert "image: registry.example.com/team/img-pipeline:2.0" in text
    assert "runAsUser: 12345" in text


def _diag(project, targets: str, *extra: str) -> tuple[int, str]:
    spec = project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: d
        params: {{greeting: hello}}
        steps:
          a:
            run: echo ${{params.greeting}}
        {targets}
        """}) / "pipeline.yaml"
    r = run_cli("compile", str(spec), "--target", "kubernetes", "--out", str(spec.parent / "out"), *extra)
    return r.code, r.err


def test_diagnostics(project) -> None:
    code, err = _diag(project, "targets: {kubernetes: {image: {tag: latest}}}")
    assert code == 2 and "MLP303" in err and "latest" in err and "pipeline.yaml:" in err
    code, err = _diag(project, "targets: {kubernetes: {image: {project_dir: /workspace}}}")
    assert code == 2 and "MLP303" in err and "clashes" in err
    code, err = _diag(project, "targets: {kubernetes: {namespce: ml}}")
    assert code == 2 and "MLP200" in err and "namespce" in err
    code, err = _diag(project, "", "params.greeting='{{workflow.name}}'")
    assert code == 2 and "MLP320" in err and "params.greeting" in err and "Traceback" not in err
    assert "MLP320" in mlprism.CODES


def test_step_names_the_workflow_uses_are_refused(project) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        steps:
          select: {run: echo}
        """}) / "pipeline.yaml"
    r = run_cli("compile", str(spec), "--target", "kubernetes", "--out", str(spec.parent / "out"))
    assert r.code == 2 and "MLP320" in r.err and "pipeline.yaml:4:" in r.err and "rename the step" in r.err


def test_braces_anywhere_in_the_workflow_are_refused(project) -> None:
    """The last line of defence: any `{{` that is not the target's own Argo variable, wherever it lands
    (here: the overrides the workflow records)."""
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        steps:
          a: {run: echo, outputs: [x]}
        """}) / "pipeline.yaml"
    r = run_cli("compile", str(spec), "--target", "kubernetes", "--out", str(spec.parent / "out"),
                "steps.a.run='echo first {{workflow.name}} then {{bad'")
    assert r.code == 2 and "MLP320" in r.err and "Traceback" not in r.err
    assert "then {{bad" in r.err


def test_the_last_line_of_defence_shows_the_value_on_one_line() -> None:
    from mlprism_kubernetes.common import Problem
    from mlprism_kubernetes.workflow import check_argo_text

    with pytest.raises(Problem) as info:
        check_argo_text({"spec": {"templates": [{"name": "x", "script": {"source": "ok {{inputs.parameters.a}}"}},
                                                {"annotations": {"a": "first line\nthen {{bad"}}]}})
    assert "first line\\nthen {{bad" in str(info.value) and "\n" not in str(info.value)


def test_braces_in_the_description_are_refused_at_the_key(project) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        description: "d {{x}}"
        steps:
          a: {run: echo, outputs: [x]}
        """}) / "pipeline.yaml"
    r = run_cli("compile", str(spec), "--target", "kubernetes", "--out", str(spec.parent / "out"))
    assert r.code == 2 and "MLP320" in r.err and "Traceback" not in r.err
    assert "pipeline.yaml:3:14:" in r.err and "`description` contains `{{`" in r.err, r.err
