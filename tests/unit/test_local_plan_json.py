"""The local target's plan writer gives exactly ``json.dumps(indent=2, sort_keys=True, ensure_ascii=False)``."""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from typing import Any

import pytest
from mlprism_local.jsonout import dumps_indented

_ALPHABET = ['a', 'b', 'z', '0', ' ', '"', '\\', '/', '\n', '\t', '\x00', '\x1f', '\x7f', 'é', '€', '\u2028',
             '\ud7ff', '😀', '{', '}', '[', ']', ',', ':']


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 6)))


def _scalar(rng: random.Random) -> Any:
    return rng.choice([
        lambda: _text(rng), lambda: rng.randrange(-10**20, 10**20), lambda: rng.randrange(-3, 3),
        lambda: rng.uniform(-1e6, 1e6), lambda: rng.choice([0.0, -0.0, 1e-300, 1e300, 0.1, 2.5e-8]),
        lambda: None, lambda: True, lambda: False,
    ])()


def _data(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth > 4 or kind < 0.4:
        return _scalar(rng)
    if kind < 0.7:
        n = rng.randrange(0, 5)
        if rng.random() < 0.3:
            return [_text(rng) for _ in range(n)]
        items = [_data(rng, depth + 1) for _ in range(n)]
        return tuple(items) if rng.random() < 0.2 else items
    # the same key sets again and again (as in a plan), and fresh ones
    keys = rng.choice([["a", "b", "c"], ["command", "needs", "inputs"], [_text(rng) for _ in range(rng.randrange(0, 5))]])
    return {k: _data(rng, depth + 1) for k in keys}


def _expected(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(4))
def test_same_bytes_as_json_dumps_on_fuzzed_data(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1500):
        data = _data(rng)
        assert dumps_indented(data) == _expected(data), data


@pytest.mark.parametrize("data", [
    {}, [], "x", 1, 1.5, None, True, {"a": {}}, {"a": []}, [[], {}, [[]]],
    {"b": 1, "a": [1, "x", None, {"z": 0.1, "y": [True]}]},
    {1: "int key"}, {True: "bool key"}, {None: 1}, {1.5: 2},        # non-str keys
    {"n": float("nan")}, [float("inf"), float("-inf")],                       # NaN/Infinity
    OrderedDict(b=1, a=2), {"x": OrderedDict(b=1)}, [1, 2 ** 70],             # dict subclass, big int
    {"deep": json.loads("[" * 150 + "]" * 150)},                             # deeper than the writer goes
])
def test_edge_cases_equal_json_dumps(data: Any) -> None:
    assert dumps_indented(data) == _expected(data)
    assert dumps_indented(data, indent=4) == json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False)


def test_errors_are_json_dumps_errors() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        dumps_indented(cycle)
    with pytest.raises(TypeError):
        dumps_indented({"a": object()})
    with pytest.raises(TypeError):
        dumps_indented({"b": 1, 2: 1})        # mixed key types cannot be sorted, as with json.dumps


def test_plan_json_is_json_dumps_of_the_plan(tmp_path: Any) -> None:
    import mlprism
    from mlprism_local import LocalTarget, build_plan

    spec = tmp_path / "pipeline.yaml"
    spec.write_text("apiVersion: mlprism/v1\nname: p\nparams: {lr: 0.1, opt: {name: adam, betas: [0.9, 0.99]}}\n"
                    "steps:\n  a: {run: 'echo ${params.lr} > a.txt', outputs: [a.txt], env: {X: 1},"
                    " resources: {cpu: 500m}, retries: 2, timeout: 1m}\n"
                    "  b: {run: 'cat a.txt ${params.opt} > \"b é.txt\"', inputs: [a.txt], outputs: [b é.txt],"
                    " metrics: m.json, gate: [{metric: acc, min: 0.5}]}\n", encoding="utf-8")
    pipeline = mlprism.load_pipeline(str(spec))
    files = LocalTarget().emit(pipeline, mlprism.EmitContext(options={}, project_path="."))
    assert files["plan.json"] == _expected(build_plan(pipeline, ".")) + "\n"
