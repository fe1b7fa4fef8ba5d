"""The local target: its plan.json is pure, deterministic and means what the spec means."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import mlprism
from mlprism.testing import (
    CanonicalPipeline,
    CanonicalStep,
    TargetConformance,
    assert_golden,
    cpu_millicores,
    memory_bytes,
    param_text,
)

from tests.conftest import GOLDEN, run_cli


class TestLocalConformance(TargetConformance):
    target_name = "local"
    generated = 3

    def decompile(self, files: Mapping[str, bytes]) -> CanonicalPipeline:
        plan = json.loads(files["plan.json"])
        steps = {}
        edges = set()
        for name, s in plan["steps"].items():
            steps[name] = CanonicalStep(
                name=name, run=s["command"], params={k: param_text(v) for k, v in s["params"].items()},
                env=tuple(s["env"]), secrets=tuple(s["secrets"]), cpu=cpu_millicores(s["resources"]["cpu"]),
                memory=memory_bytes(s["resources"]["memory"]), gpu=s["resources"]["gpu"], retries=s["retries"],
                timeout=s["timeout_seconds"],
                cache_inputs=tuple(sorted(Path(i).as_posix() for i in s["inputs"])) if s["cache"] else None)
            edges.update((up, name) for up in s["needs"])
        schedules = (("monitor", plan["monitor"]["schedule"]),) if plan.get("monitor", {}).get("schedule") else ()
        return CanonicalPipeline(steps=steps, edges=frozenset(edges), schedules=schedules)


def test_minimal_golden() -> None:
    files = mlprism.compile_spec(str(GOLDEN / "minimal" / "pipeline.yaml"), "local")
    assert_golden(files, GOLDEN / "minimal" / "expected" / "local")
    plan = json.loads(files["plan.json"])
    assert plan["layers"] == [["fetch"], ["upper"], ["count"]]
    assert plan["steps"]["upper"]["runtime_command"] == "mlprism run pipeline.yaml --only upper"


def test_full_spec_needs_features_local_cannot_express() -> None:
    r = run_cli("compile", str(GOLDEN / "full" / "pipeline.yaml"), "--target", "local", "--out", "/nonexistent")
    assert r.code == 2
    for feature in ("gpu", "autoscale", "canary", "push", "schedule"):
        assert f"cannot express `{feature}`" in r.err
    r = run_cli("compile", str(GOLDEN / "full" / "pipeline.yaml"), "--target", "local", "--out", "/nonexistent",
                "~steps.train.resources.gpu", "~deploy.serve.autoscale", "~deploy.rollout", "~triggers.push",
                "~triggers.schedule", "--check")
    assert "cannot express" not in r.err
