"""The minimal and sweep-champion examples run as documented (the quickstart has its own test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlprism.runtime.registry import ModelRegistry


@pytest.mark.parametrize("name", ["quickstart", "sweep-champion", "minimal"])
def test_examples_validate(name: str, cli) -> None:
    spec = Path(__file__).resolve().parents[2] / "examples" / name / "pipeline.yaml"
    r = cli("validate", str(spec), "--json")
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["ok"] is True


def test_minimal_runs_and_caches(example, cli) -> None:
    proj = example("minimal")
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert {s["status"] for s in json.loads(r.out)["steps"].values()} == {"succeeded"}
    report = (proj / "build" / "report.md").read_text()
    assert "| the | 7 |" in report and report.count("\n| ") == 6      # header row + 5 words
    assert json.loads((proj / "metrics" / "top.json").read_text()) == {"distinct_words": 48, "total_words": 78}
    r = cli("run", "pipeline.yaml", "params.top=2", "--json", cwd=proj)
    steps = json.loads(r.out)["steps"]
    assert (steps["count"]["status"], steps["top"]["status"], steps["report"]["status"]) == \
        ("cached", "succeeded", "succeeded")


def test_sweep_selects_and_registers_the_best_run(example, cli) -> None:
    proj = example("sweep-champion")
    # a 1 x 2 grid keeps the test short; the example's own grid is 3 x 2
    r = cli("run", "pipeline.yaml", "sweep.params.n_estimators=[3]", "--json", "-j", "2", cwd=proj)
    assert r.code == 0, r.out + r.err
    res = json.loads(r.out)
    runs = res["sweep"]["runs"]
    assert len(runs) == 2
    mv = ModelRegistry(proj / ".mlprism").resolve("wine@latest")
    assert mv.version == 1 and mv.lineage["params"]["max_depth"] == 3 and mv.lineage["params"]["n_estimators"] == 3
    assert mv.metrics["f1_macro"] == max(run_metrics(run) for run in runs)


def run_metrics(run: dict) -> float:
    return float((run.get("metrics") or {}).get("f1_macro", -1))
