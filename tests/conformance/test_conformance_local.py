"""The conformance suite for the local target: plan.json read back.

The local target runs the pipeline here (`mlprism run`); what it compiles is
the plan that run follows: each step's resolved command, params, variables,
secrets, retries, timeout, cache inputs, the steps it waits for, and the
command that runs it alone. The plan must agree with the runtime's view of
that command, and both with the spec. The monitor's schedule is the one
`mlprism monitor --watch` reads from the spec the plan names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Mapping

import mlprism
from mlprism.testing import CanonicalPipeline, TargetConformance, param_text, step_from_invocation


def decompile_plan(plan: Mapping[str, object], spec_dir) -> CanonicalPipeline:  # type: ignore[no-untyped-def]
    steps = {}
    edges = set()
    for name, s in plan["steps"].items():  # type: ignore[attr-defined]
        view = step_from_invocation(shlex.split(s["runtime_command"]), spec_dir)
        assert view.name == name
        assert s["command"] == view.run, f"{name}: the plan runs {s['command']!r}, the runtime {view.run!r}"
        if view.cpu:
            assert s["slots"] == max(1, math.ceil(view.cpu / 1000)), f"{name}: {s['slots']} slots for {view.cpu}m"
        steps[name] = dataclasses.replace(
            view,
            run=s["command"],
            params={k: param_text(v) for k, v in s["params"].items()},
            env=tuple(sorted(s["env"])),
            secrets=tuple(sorted(s["secrets"])),
            retries=s["retries"],
            timeout=s["timeout_seconds"],
            cache_inputs=tuple(sorted(s["inputs"])) if s["cache"] else None,
        )
        edges |= {(up, name) for up in s["needs"]}
    # `mlprism monitor --watch` reads the monitor's schedule from the spec the plan names
    spec = mlprism.load_pipeline(str(spec_dir / plan["spec"]), list(plan["overrides"]), check_inputs=False)  # type: ignore[call-overload]
    schedules = (("monitor", spec.monitor.schedule),) if spec.monitor and spec.monitor.schedule else ()
    return CanonicalPipeline(steps=steps, edges=frozenset(edges), schedules=schedules)


class TestLocalConformance(TargetConformance):
    target_name = "local"

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        return decompile_plan(json.loads(files["plan.json"]), self.spec_dir)
