"""Keeps the benchmark harness (benchmarks/) from rotting. Asserts shapes and outputs, never timings."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import mlprism
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _load(name: str):  # type: ignore[no-untyped-def]
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


specs = _load("specs")
peers = _load("peers")


@pytest.mark.parametrize("shape", specs.SHAPES)
def test_every_shape_is_a_valid_spec_with_the_same_dag_for_every_tool(shape: str, tmp_path: Path) -> None:
    w = specs.generate(shape, 23)
    assert len(w.steps) == 23
    spec = specs.write_mlprism_project(w, tmp_path / "mlprism")
    pipeline = mlprism.load_pipeline(str(spec))
    assert len(pipeline.steps) == 23
    assert specs.MID in w.mid_step.inputs
    expanded = w.expanded()
    assert len(expanded) == w.executions() >= 23

    dvc = peers.Dvc()
    dvc.write(w, tmp_path / "dvc")
    stages = yaml.safe_load((tmp_path / "dvc" / "dvc.yaml").read_text())["stages"]
    assert len(stages) == len(expanded)

    snake = peers.Snakemake()
    snake.write(w, tmp_path / "snakemake")
    assert (tmp_path / "snakemake" / "Snakefile").read_text().count("\nrule ") == len(expanded) + 1

    ploomber = peers.Ploomber()
    ploomber.write(w, tmp_path / "ploomber")
    tasks = yaml.safe_load((tmp_path / "ploomber" / "pipeline.yaml").read_text())["tasks"]
    assert len(tasks) == len(expanded)
    for task in tasks:
        source = (tmp_path / "ploomber" / task["source"]).read_text()
        assert "{{product[" in source
        for key in task.get("params", {}).get("resources_", {}):
            assert f"resources_['{key}']" in source

    kfp = peers.Kfp()
    kfp.write(w, tmp_path / "kfp")
    ast.parse((tmp_path / "kfp" / "pipeline_kfp.py").read_text())


def test_run_py_end_to_end_at_tiny_n(tmp_path: Path) -> None:
    """The one command, no peers: every section that runs mlprism, plus hashing on a small file."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--sizes", "5", "--repeat", "1", "--only", "dag,run,hash",
         "--shapes", "chain", "--run-shapes", "chain", "--hash-mib", "4", "--workdir", str(tmp_path / "work"),
         "--save", "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout
    assert "| chain | 5 |" in report
    assert "## Local execution of N trivial steps" in report
    assert "## Hashing a 4 MiB file" in report
    [saved] = list((tmp_path / "results").glob("*.json"))
    rows = json.loads(saved.read_text())["rows"]
    ops = {(r["tool"], r["op"]) for r in rows if r["status"] == "ok"}
    assert {("mlprism", "validate"), ("mlprism", "compile --target all"), ("mlprism", "cold: run -j 2"),
            ("mlprism", "no-op: run -j 2"), ("mlprism", "mid input changed: run -j 2")} <= ops
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]


def test_compiler_bench_reports_every_stage(tmp_path: Path) -> None:
    bench = _load("compiler_bench")
    table = bench.bench(["diamond", "mix"], [12], 1, "all", 2)
    header, _, diamond, mix = table.splitlines()
    assert header.startswith("| shape | N | load | compose | validate |") and "emit docker" in header
    assert diamond.startswith("| diamond | 12 |") and mix.startswith("| mix | 12 |")
    assert "—" in mix and "—" not in diamond        # docker and make refuse mix's sweep: not compiled


def test_ab_runs_two_versions_in_turn(tmp_path: Path) -> None:
    """benchmarks/ab.py exports both versions and runs each with its own code first on the path."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "ab.py"), "HEAD", "WORKTREE", "--cases", "small", "--runs", "1",
         "--workdir", str(tmp_path / "work"), "--build", str(tmp_path / "ab")],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("validate, 3 steps")]
    assert " | HEAD " in line and " | WORKTREE " in line and "exit" not in line, line
    for name in ("a", "b"):
        assert list((tmp_path / "ab" / name / "compiler" / "mlprism").glob("__pycache__/*.pyc"))


def test_phases_times_the_stages_of_a_run(tmp_path: Path) -> None:
    """benchmarks/phases.py finds every stage it times in the current code (a renamed internal shows here)."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "phases.py"), "mix", "12", "--no-op", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "not timed" not in out, out                  # a sweep imports every module phases.py times
    cold, noop = out.split("no-op run 1:")
    for label in ("IR cache key", "compile", "IR cache write (sweep)", "shared steps", "loop", "lock file (sweep)",
                  "posix_spawn, ", "exit (seen inside / from outside)"):
        assert f"  {label}" in cold, (label, cold)
    assert "EXIT" not in out and "compile " not in noop, out        # the rerun takes the IR from the cache
    assert noop.count("  loop ") == 3, noop                         # one loop per combination of the sweep


def test_phases_per_step_times_the_parts_of_every_step(tmp_path: Path) -> None:
    """--per-step times each part of a step (a renamed internal shows as "not timed") and the gaps between."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "phases.py"), "chain", "6", "--per-step", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "EXIT" not in out and "executor" not in out.split("not timed:")[-1], out
    for label in ("decide (", "start (", "exit handled (", "finish (", "save (", "posix_spawn ("):
        assert any(line.strip().startswith(label) and "(6)" in line for line in out.splitlines()), (label, out)
    # a chain of 6: each exit but the last is followed by the next step's start
    assert "exit handled -> next process started (5)" in out, out
    assert "process started -> its exit handled (6)" in out, out
