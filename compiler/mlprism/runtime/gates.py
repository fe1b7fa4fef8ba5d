"""Evaluation gates: conditions on a step's metrics that must hold for the pipeline to go on.

``min``/``max`` are fixed bounds. ``not_worse_than: <stage>`` compares the
challenger (this run) with the registry's champion in that stage: with
``goal: max`` the value must be at least ``champion - tolerance``, with
``goal: min`` at most ``champion + tolerance``. Without a champion (nothing
in that stage yet) the condition passes and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlprism.ir import Step

__all__ = ["ConditionResult", "GateReport", "evaluate_gate"]

Champion = Callable[[str], "dict[str, float] | None"]


@dataclass(frozen=True)
class ConditionResult:
    metric: str
    kind: str                      # "min", "max" or "not_worse_than"
    value: float | None            # the step's value (None: not reported)
    bound: float | None            # the bound it is compared with (None: no champion)
    passed: bool
    stage: str | None = None       # not_worse_than only
    note: str = ""
    goal: str = "max"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (dataclasses.asdict's result, without its deep copy: every run of a gated step
        records one; 0.1 ms each with asdict)."""
        return {"metric": self.metric, "kind": self.kind, "value": self.value, "bound": self.bound,
                "passed": self.passed, "stage": self.stage, "note": self.note, "goal": self.goal}

    def describe(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        value = "not reported" if self.value is None else f"{self.value:g}"
        bound = "-" if self.bound is None else f"{self.bound:g}"
        if self.kind == "min":
            rel = f"{value} >= {bound} (min)"
        elif self.kind == "max":
            rel = f"{value} <= {bound} (max)"
        else:
            op = "vs" if self.bound is None else "<=" if self.goal == "min" else ">="
            rel = f"{value} {op} {bound} (not worse than {self.stage})"
        return f"{mark} {self.metric}: {rel}" + (f" — {self.note}" if self.note else "")


@dataclass(frozen=True)
class GateReport:
    step: str
    conditions: tuple[ConditionResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.conditions)

    def render(self) -> str:
        head = f"gate of `{self.step}`: {'passed' if self.passed else 'FAILED'}"
        return "\n".join([head, *(f"  {c.describe()}" for c in self.conditions)])

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "passed": self.passed, "conditions": [c.to_dict() for c in self.conditions]}


def evaluate_gate(step: Step, metrics: dict[str, float], champion: Champion) -> GateReport:
    """Check each gate condition of ``step`` against its metrics (and the champion's)."""
    results: list[ConditionResult] = []
    champions: dict[str, dict[str, float] | None] = {}
    for cond in step.gate:
        value = metrics.get(cond.metric)
        if cond.min is not None:
            ok = value is not None and value >= cond.min
            results.append(ConditionResult(cond.metric, "min", value, float(cond.min), ok))
        if cond.max is not None:
            ok = value is not None and value <= cond.max
            results.append(ConditionResult(cond.metric, "max", value, float(cond.max), ok))
        if cond.not_worse_than is not None:
            stage = cond.not_worse_than
            if stage not in champions:
                champions[stage] = champion(stage)
            champ = champions[stage]
            if value is None:
                results.append(ConditionResult(cond.metric, "not_worse_than", None, None, False, stage))
                continue
            if champ is None or cond.metric not in champ:
                why = "no champion in this stage yet" if champ is None else "the champion has no such metric"
                results.append(ConditionResult(cond.metric, "not_worse_than", value, None, True, stage, why))
                continue
            theirs = champ[cond.metric]
            if cond.goal == "min":
                bound = theirs + cond.tolerance
                ok = value <= bound
            else:
                bound = theirs - cond.tolerance
                ok = value >= bound
            note = f"champion {theirs:g}" + (f", tolerance {cond.tolerance:g}" if cond.tolerance else "")
            results.append(ConditionResult(cond.metric, "not_worse_than", value, bound, ok, stage, note, cond.goal))
    return GateReport(step.name, tuple(results))
