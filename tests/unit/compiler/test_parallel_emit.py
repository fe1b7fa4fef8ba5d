"""`compile` emits several targets side by side in forked workers: the same bytes as one after another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Runs in its own process: forking is only done by a single-threaded process (pytest-xdist's is not).
SCRIPT = r"""
import json, os, sys
import mlprism._internal.compiler as c

real_emit = c.emit

def emit(pipeline, name, plugins, project_path="."):
    files = real_emit(pipeline, name, plugins, project_path)
    return {**files, "_pid": c.GeneratedFile(str(os.getpid()))}

c.emit = emit
plugins = c.get_plugins()
pipeline = c.load_pipeline(sys.argv[1], plugins=plugins).pipeline
names = sys.argv[2].split(",")
out = {}
for jobs in (1, 2):
    emitted, errors = c.emit_many(pipeline, names, plugins, ".", jobs=jobs, min_steps=0)
    out[jobs] = {
        "pids": sorted({int(files.pop("_pid").content) for files in emitted.values()}),
        "files": {n: {p: f.data().decode() for p, f in files.items()} for n, files in emitted.items()},
        "errors": [d.render() for d in errors],
    }
print(json.dumps({"parent": os.getpid(), "runs": out}))
"""


def _run(spec: Path, names: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(spec), ",".join(names)],
                       capture_output=True, text=True, check=True, cwd=spec.parent)
    return json.loads(r.stdout)


def test_parallel_emission_gives_the_serial_bytes() -> None:
    names = ["docker", "github-actions", "kubernetes", "local"]
    result = _run(ROOT / "tests" / "golden" / "minimal" / "pipeline.yaml", names)
    serial, parallel = result["runs"]["1"], result["runs"]["2"]
    assert serial["pids"] == [result["parent"]]
    assert result["parent"] not in parallel["pids"] and len(parallel["pids"]) == 2   # really in two workers
    assert list(parallel["files"]) == names
    assert parallel["files"] == serial["files"] and not serial["errors"]


def test_parallel_emission_reports_every_targets_errors_in_order() -> None:
    # the full spec uses sweeps, which docker refuses (MLP302); the other targets still emit
    names = ["docker", "kubernetes", "github-actions"]
    result = _run(ROOT / "tests" / "golden" / "full" / "pipeline.yaml", names)
    serial, parallel = result["runs"]["1"], result["runs"]["2"]
    assert parallel["errors"] == serial["errors"] and any("MLP302" in e for e in serial["errors"])
    assert parallel["files"] == serial["files"] and set(serial["files"]) == {"kubernetes", "github-actions"}


def test_jobs_option(cli, tmp_path: Path) -> None:
    spec = ROOT / "tests" / "golden" / "minimal" / "pipeline.yaml"
    r = cli("compile", str(spec), "-t", "local", "-t", "docker", "--out", str(tmp_path / "out"), "-j", "0")
    assert r.code == 2 and "MLP002" in r.err and "at least 1" in r.err
    r = cli("compile", str(spec), "-t", "local", "-t", "docker", "--out", str(tmp_path / "out"), "-j", "1")
    assert r.code == 0 and (tmp_path / "out" / "local").is_dir() and (tmp_path / "out" / "docker").is_dir()
