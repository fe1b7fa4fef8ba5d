"""Front-end performance guards: light start-up, and a 1,000-step spec validated in well under a second.

The numbers behind these bounds are in docs/performance.md (`benchmarks/compiler_bench.py` makes them).
Work is measured as CPU time of this process, which a busy CI machine disturbs far less than wall time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest
from mlprism._internal.cli import main

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ["hydra", "omegaconf", "antlr4", "jsonschema", "networkx", "docker", "rich", "pydantic", "numpy", "sklearn"]


def bench_module():
    spec = importlib.util.spec_from_file_location("compiler_bench", ROOT / "benchmarks" / "compiler_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_after(args: list[str], cwd: Path) -> set[str]:
    code = "\n".join([
        "import sys",
        "from mlprism._internal.cli import main",
        "try:",
        f"    main({args!r})",
        "except SystemExit:",
        "    pass",
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
    ])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split()[-300:]) & set(HEAVY)


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    assert imported_after(["--version"], tmp_path) == set()


def test_validating_a_small_spec_skips_hydra(tmp_path: Path) -> None:
    bench_module().write_spec(tmp_path, "chain", 3)
    heavy = imported_after(["validate", "pipeline.yaml"], tmp_path)
    assert heavy <= {"jsonschema", "networkx"}, heavy


def test_validating_with_config_groups_uses_hydra(tmp_path: Path) -> None:
    heavy = imported_after(["validate", str(ROOT / "tests" / "golden" / "full" / "pipeline.yaml")], tmp_path)
    assert {"hydra", "omegaconf"} <= heavy
    assert not heavy & {"docker", "rich", "numpy", "sklearn"}


@pytest.mark.parametrize("shape", ["mix", "diamond"])
def test_a_1000_step_spec_validates(tmp_path: Path, shape: str) -> None:
    """The benchmark's large specs stay valid; their timing is measured in benchmarks/, never asserted here."""
    spec = bench_module().write_spec(tmp_path, shape, 1000)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["validate", str(spec)])
    assert code == 0 and "1000 steps" in out.getvalue()
