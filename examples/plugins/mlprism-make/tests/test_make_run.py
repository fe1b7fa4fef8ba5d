"""The generated Makefile run for real: GNU make, the mlprism runtime, real files.

The same spec run by `mlprism run` (the local target) and by `make -j2` gives the
same mlprism.lock: the same fingerprints and the same output hashes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlprism
from make_helpers import SPECS, copy_project, make, repo_golden

MLPRISM = str(Path(sys.executable).parent / "mlprism")


def _compile(project: Path) -> None:
    files = mlprism.compile_spec(str(project / "pipeline.yaml"), "make")
    (project / "Makefile").write_bytes(files["Makefile"])


def test_make_j2_runs_the_minimal_golden_like_mlprism_run(tmp_path: Path) -> None:
    by_make = copy_project(repo_golden("minimal"), tmp_path / "make")
    _compile(by_make)
    res = make(by_make, "-j2", f"MLPRISM={MLPRISM}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (by_make / "out" / "upper.txt").read_text() == "HELLO\n"
    assert (by_make / "out" / "count.txt").read_text().strip() == "6"

    by_runtime = copy_project(repo_golden("minimal"), tmp_path / "local")
    run = subprocess.run([MLPRISM, "run", "pipeline.yaml", "-q"], cwd=by_runtime, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert (by_make / "mlprism.lock").read_text() == (by_runtime / "mlprism.lock").read_text()

    again = make(by_make, "-j2", f"MLPRISM={MLPRISM}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("everything up to date") == 3, again.stdout


def test_make_respects_the_diamond_and_passes_overrides(tmp_path: Path) -> None:
    project = copy_project(SPECS / "diamond", tmp_path / "d")
    _compile(project)
    res = make(project, "-j2", "--no-print-directory", f"MLPRISM={MLPRISM}", "OVERRIDES=params.pause=0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (project / "out" / "join.txt").read_text() == "source\nleft\nsource\nright\n"
    started = [ln.split("--only ")[1].split()[0] for ln in res.stdout.splitlines() if "--only " in ln]
    assert started[0] == "source" and started[-1] == "join" and set(started[1:3]) == {"left", "right"}
    # the override reached the runtime: the lock records pause=0
    assert "pause: 0" in (project / "mlprism.lock").read_text()


def test_a_failing_step_stops_make_before_its_downstream(tmp_path: Path) -> None:
    project = copy_project(SPECS / "diamond", tmp_path / "f")
    _compile(project)
    res = make(project, "-j2", f"MLPRISM={MLPRISM}", "OVERRIDES=params.pause=0 steps.right.run='exit 3'")
    assert res.returncode != 0
    assert (project / "out" / "source.txt").exists() and (project / "out" / "left.txt").exists()
    assert "MLP400" in res.stdout + res.stderr           # the runtime's "a step failed", for `right`
    assert not (project / "out" / "join.txt").exists()
    assert "--only join" not in res.stdout
