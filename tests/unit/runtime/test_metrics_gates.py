"""Metrics files and evaluation gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlprism.diagnostics import DiagnosticError
from mlprism.ir import GateCondition, Step
from mlprism.runtime.gates import evaluate_gate
from mlprism.runtime.metrics import read_metrics


def test_read_metrics_flattens(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"acc": 0.9, "val": {"f1": 0.8, "n": 3}, "ok": True, "name": "rf", "l": [1]}))
    assert read_metrics(f) == {"acc": 0.9, "ok": 1.0, "val.f1": 0.8, "val.n": 3.0}


@pytest.mark.parametrize("content", [None, "{bad", "[1, 2]"])
def test_bad_metrics_are_mlp406(tmp_path: Path, content: str | None) -> None:
    f = tmp_path / "m.json"
    if content is not None:
        f.write_text(content)
    with pytest.raises(DiagnosticError) as exc:
        read_metrics(f)
    assert exc.value.diagnostics[0].code == "MLP406"


@pytest.mark.parametrize(("data", "name", "shown"), [
    ({"acc": "high"}, "acc", '"high"'),
    ({"val": {"f1": None}}, "val.f1", "null"),
    ({"val.f1": [0.8]}, "val.f1", "[0.8]"),
])
def test_a_gate_metric_that_is_not_a_number_is_mlp406_naming_it(tmp_path: Path, data: dict, name: str,
                                                                  shown: str) -> None:
    """A gate's metric written as a string (or null, a list): MLP406 saying so, not a gate that fails
    with "not reported"; a metric no gate reads may be anything, and a missing one is the gate's to say."""
    f = tmp_path / "m.json"
    f.write_text(json.dumps({**data, "note": "rf"}))
    with pytest.raises(DiagnosticError) as exc:
        read_metrics(f, [name])
    d = exc.value.diagnostics[0]
    assert d.code == "MLP406" and f"metric `{name}`" in d.message and f"is {shown}, not a number" in d.message
    assert d.hint
    assert read_metrics(f, ["note.x", "absent"]) == read_metrics(f)


def _step(*conds: GateCondition) -> Step:
    return Step(name="evaluate", run="x", run_template="x", gate=conds)


def test_min_max() -> None:
    s = _step(GateCondition("acc", min=0.9), GateCondition("loss", max=0.3))
    ok = evaluate_gate(s, {"acc": 0.95, "loss": 0.2}, lambda stage: None)
    assert ok.passed and [c.passed for c in ok.conditions] == [True, True]
    bad = evaluate_gate(s, {"acc": 0.85}, lambda stage: None)
    assert not bad.passed
    assert [(c.kind, c.value, c.bound, c.passed) for c in bad.conditions] == [
        ("min", 0.85, 0.9, False), ("max", None, 0.3, False)]
    text = bad.render()
    assert "FAIL acc: 0.85 >= 0.9 (min)" in text and "FAIL loss: not reported" in text


def test_not_worse_than_champion() -> None:
    s = _step(GateCondition("f1", not_worse_than="production", tolerance=0.01),
              GateCondition("loss", not_worse_than="production", goal="min"))
    asked: list[str] = []

    def champ(stage: str) -> dict[str, float] | None:
        asked.append(stage)
        return {"f1": 0.80, "loss": 0.5}

    r = evaluate_gate(s, {"f1": 0.795, "loss": 0.4}, champ)
    assert r.passed and asked == ["production"]          # asked once per stage
    assert r.conditions[0].bound == pytest.approx(0.79)
    r = evaluate_gate(s, {"f1": 0.78, "loss": 0.6}, champ)
    assert [c.passed for c in r.conditions] == [False, False]
    assert "champion 0.8" in r.render()


def test_no_champion_passes_and_says_so() -> None:
    r = evaluate_gate(_step(GateCondition("f1", not_worse_than="production")), {"f1": 0.1}, lambda s: None)
    assert r.passed and "no champion" in r.conditions[0].note


def test_condition_to_dict_is_asdict() -> None:
    """The hand-written to_dict keeps every field (a field added later must be added there too)."""
    from dataclasses import asdict

    from mlprism.runtime.gates import ConditionResult

    c = ConditionResult("f1", "not_worse_than", 0.9, 0.85, True, "production", "champion 0.86", "min")
    assert c.to_dict() == asdict(c)
