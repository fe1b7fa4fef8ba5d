"""Parts every container of the workflow has alike (security context, mounts, quota, base and secret env)
are one object per compile; the YAML is the same as if each container had its own copy, and nothing is kept
from one compile to the next."""

from __future__ import annotations

import json
from typing import Any

import mlprism
import pytest
from mlprism_kubernetes.options import resolve
from mlprism_kubernetes.workflow import ArgoPipeline

from tests.unit.kubernetes.conftest import Case


def _containers(doc: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("container", "script") and isinstance(value, dict):
                found.append(value)
            found += _containers(value)
    elif isinstance(doc, list):
        for item in doc:
            found += _containers(item)
    return found


def _template(case: Case) -> dict[str, Any]:
    p = case.pipeline
    return ArgoPipeline(p, resolve(p, dict(p.targets.get("kubernetes") or {}))).workflow_template()


@pytest.mark.parametrize("name", ["full", "hostile", "options", "prod"])
def test_shared_parts_write_as_copies_would(cases: dict[str, Case], name: str) -> None:
    wft = _template(cases[name])
    containers = _containers(wft)
    assert len(containers) > 2
    assert len({id(c["securityContext"]) for c in containers}) == 1
    assert len({id(c["volumeMounts"]) for c in containers}) == 1
    text = mlprism.dump_yaml(wft)
    copies = json.loads(json.dumps(wft))          # every container its own objects
    assert mlprism.dump_yaml(copies) == text
    assert json.loads(json.dumps(wft)) == copies   # writing changed nothing


def test_a_new_compile_builds_its_own_parts(cases: dict[str, Case]) -> None:
    first, second = (_containers(_template(cases["full"]))[0] for _ in range(2))
    assert first["securityContext"] == second["securityContext"]
    assert first["securityContext"] is not second["securityContext"]


def test_the_brace_check_looks_into_a_shared_part_once_and_still_finds_user_braces() -> None:
    """check_argo_text skips a part it has seen (shared parts are one object) but not a different object."""
    from mlprism_kubernetes.common import Problem
    from mlprism_kubernetes.workflow import check_argo_text

    ok = {"name": "X", "value": "{{workflow.uid}}"}
    check_argo_text({"a": [ok, ok, {"b": ok}], "c": ("{{inputs.parameters.p}}",) * 3})
    bad = {"value": "{{bad}}"}
    with pytest.raises(Problem, match=r"\{\{bad\}\}"):
        check_argo_text({"a": [ok, ok], "z": [{"n": 1}, bad]})
    with pytest.raises(Problem, match="then"):      # a text met before as part of an allowed one is still checked
        check_argo_text({"a": ["{{workflow.uid}}", "{{workflow.uid}} then {{x"]})


@pytest.mark.parametrize("text, escaped", [
    ("plain", "plain"), ("$HOME", "$HOME"), ("$(HOME)", "$$(HOME)"), ("$$", "$$$"), ("a$", "a$"),
    ("it's $5 $(HOME) $$x", "it's $5 $$(HOME) $$$x"),
])
def test_k8s_escape_doubles_only_the_dollars_kubernetes_would_read(text: str, escaped: str) -> None:
    from mlprism_kubernetes.common import k8s_escape

    assert k8s_escape(text) == escaped
