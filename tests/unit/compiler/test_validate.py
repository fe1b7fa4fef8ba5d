"""Stage 3 — validate: JSON Schema (best match first, mapped to positions) and the semantic checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from mlprism._internal.compiler import get_plugins
from mlprism._internal.load import load_text
from mlprism._internal.plugins import schema_sections
from mlprism._internal.validate import (
    core_schema,
    cron_problem,
    full_schema,
    inline_refs,
    normalize_cpu,
    parse_duration,
    path_problem,
    schema_errors,
    semantic_errors,
)

OK = {"apiVersion": "mlprism/v1", "name": "demo", "steps": {"a": {"run": "echo a"}}}


def locate_in(text: str) -> Any:
    smap = load_text(text, "p.yaml").source_map

    def locate(dotted: str, prefer: str = "auto") -> Any:
        return smap.lookup(dotted, prefer)

    return locate


def test_core_and_full_schema_are_valid_json_schemas() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(core_schema())
    Draft202012Validator.check_schema(full_schema(schema_sections(get_plugins())))


def test_best_match_first_then_by_position() -> None:
    text = ("apiVersion: mlprism/v1\nname: demo\nsteps:\n  b:\n    run: echo\n    retries: many\n"
            "  a:\n    run: 3\n    ouputs: [x]\n")
    config = load_text(text, "p.yaml").data
    diags = schema_errors(config, core_schema(), locate_in(text))
    assert [(d.code, d.location.line) for d in diags] == [("MLP200", 9), ("MLP201", 8), ("MLP201", 6)]
    assert diags[0].hint == "did you mean `outputs`?"


def test_a_value_of_the_other_type_a_oneof_allows_is_judged_by_its_own_branch() -> None:
    """`runs_on` is a label or a list of labels: a bad item of a list is the error, not "should be a
    string"; a bad label is the pattern's error, not "should be a list"."""
    text = ("apiVersion: mlprism/v1\nname: demo\nsteps: {a: {run: echo}}\ntargets:\n  github-actions:\n"
            "    runs_on: [ubuntu-latest, \"$(id)\"]\n    gpu_runs_on: \"x; id\"\n")
    config = load_text(text, "p.yaml").data
    diags = schema_errors(config, full_schema(schema_sections(get_plugins())), locate_in(text))
    assert [(d.code, d.location.line, d.location.col) for d in diags] == [("MLP203", 6, 30), ("MLP203", 7, 18)]
    assert all(d.hint and "must match" in d.hint for d in diags)


def test_a_pattern_error_hint_gives_the_form_even_when_the_field_has_a_description() -> None:
    text = ("apiVersion: mlprism/v1\nname: demo\nsteps: {a: {run: echo}}\ntargets:\n  github-actions:\n"
            "    working_directory: \"a;b\"\n")
    config = load_text(text, "p.yaml").data
    [d] = schema_errors(config, full_schema(schema_sections(get_plugins())), locate_in(text))
    assert d.code == "MLP203" and d.hint and d.hint.startswith("The spec's directory") and "it must match `^" in d.hint


def test_error_order_is_deterministic() -> None:
    text = "apiVersion: v9\nname: Bad_Name\nstpes: {}\n"
    config = load_text(text, "p.yaml").data
    runs = {json.dumps([d.to_dict() for d in schema_errors(config, core_schema(), locate_in(text))])
            for _ in range(3)}
    assert len(runs) == 1


BAD_CONFIGS = [
    {**OK, "stpes": {}},
    {**OK, "name": "Upper"},
    {**OK, "steps": {"a": {"run": 3, "retries": "x", "timeout": "1d", "resources": {"cpu": [], "mem": 1}}}},
    {**OK, "steps": {"a": {"run": "x", "gate": [{"metric": "m", "min": "high"}]}}},
    {**OK, "deploy": {"serve": {"model": "BAD", "port": 1}, "rollout": {"strategy": "blue"}}},
    {**OK, "monitor": {"drift": {"reference": "", "current": 1, "method": "x", "threshold": 0}}},
    {**OK, "params": {"1bad": 1}, "data": {"x": {}}, "environment": {"secrets": ["a", "a"]}},
    {"apiVersion": 1},
    [],
]


@pytest.mark.parametrize("config", BAD_CONFIGS)
def test_inlined_refs_keep_the_meaning(config: Any) -> None:
    from jsonschema import Draft202012Validator

    schema = full_schema(schema_sections(get_plugins()))
    plain = sorted((tuple(map(str, e.absolute_path)), e.validator, e.message)
                   for e in Draft202012Validator(schema).iter_errors(config))
    fast = sorted((tuple(map(str, e.absolute_path)), e.validator, e.message)
                  for e in Draft202012Validator(inline_refs(schema)).iter_errors(config))
    assert plain == fast and plain


def test_a_broken_plugin_section_is_a_diagnostic_not_a_crash() -> None:
    schema = copy.deepcopy(core_schema())
    schema["properties"]["targets"]["properties"] = {"weird": {"type": "no-such-type"}}
    diags = schema_errors({**OK, "targets": {"weird": {}}}, schema, lambda d: None)
    assert [d.code for d in diags] == ["MLP301"] and "targets.weird" in diags[0].message


@pytest.mark.parametrize(("expr", "problem"), [
    ("0 3 * * 1", None), ("*/15 0-6,20-23 1 jan-mar MON-FRI", None), ("0 0 * * 7", None),
    ("0 3 * *", "expected 5 fields"), ("61 * * * *", "out of range"), ("* * * * funday", "not a valid day"),
    ("*/0 * * * *", "bad step"), ("0 20-8 * * *", "runs backwards"), ("0 3 * * 1-", "bad range"), (5, "string"),
])
def test_cron(expr: Any, problem: str | None) -> None:
    result = cron_problem(expr)
    assert (result is None) if problem is None else (problem in (result or ""))


@pytest.mark.parametrize(("value", "expected"), [
    (2, "2"), (0.5, "500m"), ("500m", "500m"), ("1.5", "1500m"), (0, None), (-1, None), ("0m", None),
    ("two", None), (True, None), ("2 cores", None)])
def test_cpu(value: Any, expected: str | None) -> None:
    assert normalize_cpu(value) == expected


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), (0, None), ("0m", None), ("1d", None),
    ("30 minutes", None), (True, None), ("", None)])
def test_durations(value: Any, seconds: int | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("path", "bad"), [
    ("data/x.csv", False), ("./x", False), ("a/../b", True), ("../x", True), ("/etc/passwd", True),
    ("~/x", True), ("a\\b", True), ("C:/x", True), ("out/../../x", True), ("a\nb", True)])
def test_paths(path: str, bad: bool) -> None:
    assert (path_problem(path) is not None) == bad


def test_memory_hint_for_gb() -> None:
    config = {**OK, "steps": {"a": {"run": "x", "resources": {"memory": "4GB"}}}}
    (d,) = semantic_errors(config, lambda d: None)
    assert d.code == "MLP212" and "`4Gi`" in (d.hint or "")


def test_semantic_checks_collect_every_problem() -> None:
    config = {**OK, "steps": {
        "Train": {"run": "x", "needs": ["evalute"], "gate": [{"metric": "acc", "min": 1}]},
        "evaluate": {"run": "y", "needs": ["evaluate"], "timeout": "soon"},
    }, "sweep": {"params": {"lr": [1]}}}
    codes = sorted(d.code for d in semantic_errors(config, lambda d: None))
    assert codes == ["MLP210", "MLP213", "MLP220", "MLP222", "MLP226", "MLP231"]


@pytest.mark.parametrize("spec", ["pipeline.yaml", "train.yaml"])
def test_outputs_may_not_take_the_lock_file_the_spec_or_state(spec: str) -> None:
    from mlprism._internal.validate import Protected
    from mlprism.runtime.lockfile import lock_path

    protect = Protected(spec, ["conf/env/dev.yaml"])
    assert protect.taken(lock_path(Path(spec)).name) == "is the lock file"
    assert protect.taken(spec) == "is the spec"
    assert protect.taken("./conf/env") == "holds `conf/env/dev.yaml`, a config file the spec is composed from"
    assert protect.taken(".mlprism/cache/x").startswith("is inside `.mlprism/`")
    assert protect.taken("./") == "is the project directory itself"
    for fine in ("out/mlprism.lock", "conf2", "out/.git/x", ".gitignore", "../x", "/abs"):
        assert protect.taken(fine) is None, fine
