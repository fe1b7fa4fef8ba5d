"""The fast validity check says "valid" only when jsonschema finds no error (and usually when it does not)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mlprism._internal.compiler import get_plugins
from mlprism._internal.load import load_file
from mlprism._internal.plugins import schema_sections
from mlprism._internal.validate import full_schema, inline_refs, is_valid_fast, schema_errors

ROOT = Path(__file__).resolve().parents[2]
N = 1000
SPECS = [ROOT / "golden" / "full" / "pipeline.yaml", ROOT / "golden" / "minimal" / "pipeline.yaml"]

_VALUES: list[Any] = [
    "", "x", "30m", "1h30m", "90", "0s", "abc", "Abc", "a-b", "a_b", "-a", "a" * 51, "a" * 1025, "mlprism/v1",
    "mlprism/v2", "500m", "0.5", "4Gi", "max", "min", "staging", "production", "psi", "0 3 * * 1", "ledger",
    "${params.lr}", "data/x.csv", "/abs", "../up", "é", 0, 1, -1, 2, 20, 21, 64, 65, 1.0, 1.5, -0.5, 0.0, 1e9,
    True, False, None, [], {}, ["a"], ["a", "a"], ["a", "b"], [1], [True], [1, True], [None], [[]], [{}],
    {"a": 1}, {"metric": "acc"}, {"metric": "acc", "min": 0.5}, {"run": "echo"}, {"run": ""}, {"path": "p"},
    {"A": 1}, {"1a": "x"}, {"name": "m", "artifact": "a"},
]


def _nodes(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out.extend(_nodes(v, (*path, k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_nodes(v, (*path, i)))
    return out


def _mutate(data: Any, rng: random.Random) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        path = rng.choice(_nodes(data)[1:])
        parent = data
        for p in path[:-1]:
            parent = parent[p]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(_VALUES))
        elif action < 0.8:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "run", "min", "cpu", "gpu", "X_1", "1bad", "steps"])] = copy.deepcopy(
                rng.choice(_VALUES))
        else:
            parent.append(copy.deepcopy(rng.choice(_VALUES)))
    return data


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return full_schema(schema_sections(get_plugins()))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_agrees_with_jsonschema_on_mutated_specs(spec: Path, schema: dict[str, Any]) -> None:
    reference = Draft202012Validator(schema)
    base = load_file(spec).data
    assert is_valid_fast(base, schema) and reference.is_valid(base)
    rng = random.Random(spec.parent.name)
    agree = valid = 0
    for _ in range(N):
        data = _mutate(base, rng)
        fast, slow = is_valid_fast(data, schema), reference.is_valid(data)
        if fast:
            assert slow, data        # never "valid" where jsonschema finds an error
        valid += slow
        agree += fast == slow
    assert valid > 100                # the mutations leave enough valid specs to mean something
    assert agree == N              # and the check is not merely cautious: same answer every time


def test_unusual_schemas_are_left_to_jsonschema() -> None:
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "integer"}}}, {"a": "s"}),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, [1]),
        ({"type": "string", "format": "email"}, "not-an-email"),        # format is an annotation
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, "a"),
        ({"minLength": "x"}, "abc"),                                      # broken keyword values
        ({"type": "strnig"}, "abc"),
        ({"additionalProperties": 5}, {"a": 1}),
        ({"uniqueItems": True}, [1, True, 1.0]),
        ({"enum": [1, [True], {"a": None}]}, [1]),
        ({"enum": [1, [True], {"a": None}]}, {"a": None}),
        ({"const": 1}, True), ({"const": 1.0}, 1), ({"type": "integer"}, 2.0), ({"type": "number"}, False),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1),
        ({"not": {"type": "null"}, "maxProperties": 1, "propertyNames": {"pattern": "^a"}}, {"ab": 1}),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 1}, 1), ({"minimum": 0}, "-1"),
    ]
    for schema, instance in cases:
        reference = Draft202012Validator(inline_refs(schema))
        try:
            slow = reference.is_valid(instance)
        except Exception:
            slow = None
        fast = is_valid_fast(instance, schema)
        assert not fast or slow is True, (schema, instance)
        if slow is None:
            assert not fast


def test_schema_errors_unchanged_for_invalid_specs(schema: dict[str, Any]) -> None:
    bad = {"apiVersion": "mlprism/v1", "name": "Bad_Name", "steps": {"a": {"run": "x", "retries": 99}}}
    diags = schema_errors(bad, schema, lambda dotted: None)
    assert [d.code for d in diags] == ["MLP210", "MLP203"]
