"""Declared capabilities: a feature the chosen target cannot express is MLP302, never a silent drop."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import mlprism
from mlprism._internal.features import capability_errors, feature_uses

from tests.conftest import GOLDEN, run_cli

FULL = GOLDEN / "full" / "pipeline.yaml"


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_feature_uses_lists_every_key_in_spec_order(project) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        steps:
          a: {run: echo a, retries: 1, outputs: [a.txt]}
          b: {run: echo b, inputs: [a.txt]}
          c: {run: echo c, retries: 3, needs: [a], cache: false}
        """}) / "pipeline.yaml"
    p = mlprism.load_pipeline(str(spec))
    uses = feature_uses(p)
    assert uses["retries"] == ["steps.a.retries", "steps.c.retries"]
    assert uses["caching"] == ["steps.a", "steps.b"]
    assert uses["parallelism"] == ["steps.c"]        # b and c both wait for a only
    assert mlprism.features_used(p)["retries"] == "steps.a.retries"
    assert set(uses) <= set(mlprism.FEATURES)


def test_feature_uses_answers_again_for_the_same_pipeline_with_a_copy_of_its_answer(project) -> None:
    """Every target's emit asks about the same IR: it is worked out once; a new IR is asked about anew."""
    import dataclasses

    from mlprism._internal import features

    p = mlprism.load_pipeline(str(FULL))
    first = feature_uses(p)
    first["retries"].append("changed by a caller")
    del first["caching"]
    again = feature_uses(p)
    assert again == features._feature_uses(p) and "caching" in again
    assert features._LAST_USES is not None and features._LAST_USES[0] is p
    fewer = dataclasses.replace(p, steps=tuple(dataclasses.replace(s, retries=0) for s in p.steps))
    assert "retries" not in feature_uses(fewer) and "retries" in feature_uses(p)


def test_full_spec_uses_every_feature_but_mlflow_and_parallelism() -> None:
    used = set(mlprism.features_used(mlprism.load_pipeline(str(FULL))))
    assert set(mlprism.FEATURES) - used == {"mlflow", "parallelism"}   # its three steps form a chain


def test_capability_errors_name_feature_target_line_and_fix() -> None:
    p = mlprism.load_pipeline(str(FULL))
    caps = {"steps": "x", "parallelism": "x", "caching": "x", "params": "x", "data": "x", "metrics": "x",
            "env": "x", "secrets": "x", "retries": "x", "timeouts": "x", "gates": "x", "registry": "x"}
    others = {"big": {"gpu": "nodes with GPUs", "resources": "requests"}, "tiny": {"steps": "x"}}
    diags = capability_errors(p, "tiny", caps, others)
    by_feature = {re.search(r"express `([a-z]+)`", d.message).group(1): d for d in diags}
    assert set(by_feature) == {"resources", "gpu", "sweeps", "serve", "autoscale", "canary", "monitor",
                               "schedule", "push", "manual"}
    gpu = by_feature["gpu"]
    assert gpu.code == "MLP302" and "`tiny`" in gpu.message
    assert gpu.location.line == _line_of(FULL, "resources: {cpu: 2")
    assert "`~steps.train.resources.gpu`" in gpu.hint
    assert "compile to a target that can: big" in gpu.hint
    assert "docs/reference/capabilities.md" in by_feature["sweeps"].hint       # nobody else can
    lines = [d.location.line for d in diags]
    assert lines == sorted(lines), "diagnostics come in spec order"


def test_caching_hint_sets_cache_false(project) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        steps:
          a: {run: echo a}
        """}) / "pipeline.yaml"
    (diag,) = capability_errors(mlprism.load_pipeline(str(spec)), "nocache", {"steps": "x"})
    assert "`caching`" in diag.message
    assert "`+steps.a.cache=false`" in diag.hint
    assert diag.location.line == 4


def test_cli_reports_each_missing_feature_and_the_hinted_overrides_fix_it(tmp_path: Path) -> None:
    """The make target (mlprism-make, installed with the dev setup) lacks scheduling, serving, GPUs …"""
    res = run_cli("compile", str(FULL), "--target", "make", "--out", str(tmp_path / "out"))
    assert res.code == 2, res.out + res.err
    errors = [ln for ln in res.err.splitlines() if "error[MLP302]" in ln]
    assert len(errors) == 9, res.err
    line = _line_of(FULL, 'schedule: "0 3')
    assert any(f"pipeline.yaml:{line}:" in ln and "`schedule`" in ln for ln in errors), res.err
    assert not (tmp_path / "out").exists()
    overrides = []
    for hint in re.findall(r"on the command line: `([^`]+)`", res.err):
        overrides += [o for o in shlex.split(hint) if o not in overrides]
    # nested keys are covered by their parents: drop them, as a user would
    overrides = [o for o in overrides if not any(o.startswith(p + ".") for p in overrides)]
    res = run_cli("compile", str(FULL), *overrides, "--target", "make", "--out", str(tmp_path / "out"))
    assert res.code == 0, res.err
    assert (tmp_path / "out" / "Makefile").is_file()


def test_parallelism_is_used_only_when_some_steps_are_independent(project) -> None:
    chain = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: r
        steps:
          a: {run: echo a, outputs: [a.txt]}
          b: {run: echo b, inputs: [a.txt], outputs: [b.txt]}
          c: {run: echo c, inputs: [a.txt, b.txt]}
        """}) / "pipeline.yaml"
    # a -> c as well as a -> b -> c: several downstream steps, yet one order only
    assert "parallelism" not in mlprism.features_used(mlprism.load_pipeline(str(chain)))
    assert "parallelism" not in mlprism.features_used(mlprism.load_pipeline(str(FULL)))


def test_the_hint_for_registry_also_removes_gates_comparing_with_it() -> None:
    """A target without `registry`: removing only `registry` would leave `not_worse_than: production` (MLP225)."""
    p = mlprism.load_pipeline(str(FULL))
    caps = {f: "x" for f in mlprism.FEATURES if f not in ("registry", "serve", "autoscale", "canary")}
    diags = capability_errors(p, "t", caps)
    overrides: list[str] = []
    for d in diags:
        for hint in re.findall(r"on the command line: `([^`]+)`", d.hint or ""):
            overrides += [o for o in shlex.split(hint) if o not in overrides]
    overrides = [o for o in overrides if not any(o.startswith(p + ".") for p in overrides)]
    assert "~registry" in overrides and "~steps.evaluate.gate" in overrides, overrides
    reduced = mlprism.load_pipeline(str(FULL), overrides)
    assert capability_errors(reduced, "t", caps) == []
