"""A reader that goes away (`mlprism validate bad.yaml --json | head -1`) never turns a diagnostic into a
traceback: the exit code stays the diagnostic's, 2 for a user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD = "apiVersion: mlprism/v1\nname: t\nsteps: {a: {run: 'true', foo: 1}}\n"
GOOD = "apiVersion: mlprism/v1\nname: t\nsteps: {a: {run: 'true'}}\n"


def _with_closed_stdout(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)                                   # the reader is gone before mlprism writes a byte
    try:
        return subprocess.run([sys.executable, "-m", "mlprism", *args], cwd=cwd, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)


@pytest.mark.parametrize(("spec", "args", "code"), [
    (BAD, ["validate", "pipeline.yaml", "--json"], 2),
    (BAD, ["graph", "pipeline.yaml", "--json"], 2),
    (BAD, ["run", "pipeline.yaml", "--json"], 2),
    (GOOD, ["validate", "pipeline.yaml", "--json"], 0),
])
def test_json_diagnostics_to_a_closed_pipe(tmp_path: Path, spec: str, args: list[str], code: int) -> None:
    (tmp_path / "pipeline.yaml").write_text(spec)
    r = _with_closed_stdout(args, tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, r.stderr
