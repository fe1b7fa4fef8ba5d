"""The one definition of a step's cache key."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mlprism.ir import Environment, GateCondition, Pipeline, Step
from mlprism.runtime.fingerprint import compute_fingerprint, fingerprint_step, redact, step_params


def _pipe(**kw: object) -> Pipeline:
    step = Step(name="train", run="python train.py --lr 0.1", run_template="python train.py --lr ${params.lr}",
                inputs=("data/train.csv",), outputs=("model.bin",), params=("lr",), metrics="m.json")
    base = Pipeline(name="p", steps=(step,), params={"lr": 0.1, "other": 5},
                    environment=Environment(python="3.11", variables={"SEED": "0"}, secrets=("TOKEN",)))
    return replace(base, **kw)  # type: ignore[arg-type]


def test_same_inputs_same_fingerprint_and_json_components() -> None:
    p = _pipe()
    a = compute_fingerprint(p, p.steps[0], {"data/train.csv": "h1"}, "req")
    b = compute_fingerprint(p, p.steps[0], {"./data/train.csv": "h1"}, "req")
    assert a.digest == b.digest and len(a.digest) == 64
    json.dumps(a.components)                  # plain data
    assert a.components["params"] == {"lr": 0.1}
    assert a.components["secrets"] == ["TOKEN"]


def test_every_component_changes_it() -> None:
    p = _pipe()
    s = p.steps[0]
    base = compute_fingerprint(p, s, {"data/train.csv": "h1"}, "req").digest
    variants = [
        compute_fingerprint(p, s, {"data/train.csv": "h2"}, "req"),
        compute_fingerprint(p, s, {"data/train.csv": "h1"}, "req2"),
        compute_fingerprint(p, replace(s, run="python train.py --lr 0.2"), {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(replace(p, params={"lr": 0.2, "other": 5}), s, {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(p, replace(s, env={"X": "1"}), {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(replace(p, environment=Environment(python="3.12", variables={"SEED": "0"},
                                                               secrets=("TOKEN",))), s, {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(p, replace(s, outputs=("model2.bin",)), {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(p, replace(s, gate=(GateCondition("acc", min=0.5),)), {"data/train.csv": "h1"}, "req"),
        compute_fingerprint(p, s, {"data/train.csv": None}, "req"),
    ]
    digests = {v.digest for v in variants}
    assert base not in digests and len(digests) == len(variants)


def test_unused_params_retries_and_timeout_do_not_change_it() -> None:
    p = _pipe()
    s = p.steps[0]
    base = compute_fingerprint(p, s, {"data/train.csv": "h1"}, None).digest
    assert compute_fingerprint(replace(p, params={"lr": 0.1, "other": 6}), s, {"data/train.csv": "h1"}, None).digest == base
    assert compute_fingerprint(p, replace(s, retries=3, timeout=10, description="x"), {"data/train.csv": "h1"},
                               None).digest == base


def test_secret_values_never_enter_it() -> None:
    p = _pipe()
    s = replace(p.steps[0], run="curl -H 'token: s3cr3t-value' x")
    a = compute_fingerprint(p, s, {}, None, {"TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in json.dumps(a.components)
    other = compute_fingerprint(p, replace(s, run="curl -H 'token: other-value' x"), {}, None, {"TOKEN": "other-value"})
    assert a.digest == other.digest
    assert redact("a s3cr3t b", {"TOKEN": "s3cr3t"}) == "a [secret:TOKEN] b"


def test_param_subtrees() -> None:
    p = _pipe(params={"model": {"depth": 3, "width": 2}, "lr": 1})
    assert step_params(p, replace(p.steps[0], params=("model",))) == {"model.depth": 3, "model.width": 2}


def test_machine_independent(tmp_path: Path) -> None:
    """The same project in two places (and so in a container) has the same fingerprint."""
    p = _pipe()
    fps = []
    for where in ("a", "b/c"):
        d = tmp_path / where
        (d / "data").mkdir(parents=True)
        (d / "data" / "train.csv").write_text("x,y\n1,2\n")
        fps.append(fingerprint_step(d, p, "train", environ={}).digest)
    assert fps[0] == fps[1]


def test_a_changed_command_is_told_on_one_line() -> None:
    """A command written as a YAML block scalar has newlines; `status` and `explain` show it on one line."""
    from mlprism.runtime.executor import diff_components

    old = {"command": 'test "3" != 2 &&\n  cat a.txt > b.txt\n'}
    new = {"command": 'test "2" != 2 &&\n  cat a.txt > b.txt\n'}
    assert diff_components(old, new) == ['command changed: `test "3" != 2 && cat a.txt > b.txt` → '
                                         '`test "2" != 2 && cat a.txt > b.txt`']
    only_space = diff_components({"command": "echo a  b"}, {"command": "echo a b"})
    assert only_space == ["command changed: `'echo a  b'` → `'echo a b'`"]
