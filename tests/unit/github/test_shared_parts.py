"""Parts every job has alike (checkout, Python, install, params, a download two jobs make) are one
object in the workflow data, built once per compile; the YAML is the same as if each job had its
own copy, and nothing is kept from one compile to the next."""

from __future__ import annotations

import json

import mlprism
import pytest
from mlprism_github.target import Options
from mlprism_github.workflow import Builder, serialize

from tests.unit.github.conftest import Case

CASES = ["golden-full", "hostile", "hostile-overrides", "options"]


def _built(case: Case) -> tuple[Options, dict]:
    p = case.pipeline
    ctx = mlprism.EmitContext(options=dict(p.targets.get("github-actions") or {}), project_path=case.project_path,
                              mlprism_version="0.1.0")
    o = Options.of(p, ctx)
    return o, Builder(p, o).pipeline()


@pytest.mark.parametrize("name", CASES)
def test_shared_parts_write_as_copies_would(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    o, wf = _built(case)
    step_jobs = [wf["jobs"][s.name] for s in case.pipeline.steps]
    assert len(step_jobs) > 1
    for index in range(3):               # checkout, set up Python, install: one object each
        assert len({id(job["steps"][index]) for job in step_jobs}) == 1
    text = serialize(wf, "header", o)
    copies = json.loads(json.dumps(wf))  # every job its own objects
    assert serialize(copies, "header", o) == text
    assert json.loads(json.dumps(wf)) == copies      # writing changed nothing


def test_a_new_compile_builds_its_own_parts(cases: dict[str, Case]) -> None:
    case = cases["golden-full"]
    _, first = _built(case)
    _, second = _built(case)
    a = next(iter(first["jobs"].values()))["steps"][0]
    b = next(iter(second["jobs"].values()))["steps"][0]
    assert a == b and a is not b
