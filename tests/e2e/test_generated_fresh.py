"""The quickstart's generated files are checked in; this fails when they are stale."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLES


def test_quickstart_generated_files_are_current() -> None:
    script = EXAMPLES / "quickstart" / "generate.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        "examples/quickstart/generated is stale: run `python examples/quickstart/generate.py`\n"
        + proc.stdout + proc.stderr)
    for target in ("local", "docker", "github-actions", "kubernetes", "make"):
        assert (EXAMPLES / "quickstart" / "generated" / target).is_dir(), target
