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


def test_quickstart_readme_shows_the_current_dag() -> None:
    from tests.conftest import run_cli

    res = run_cli("graph", str(EXAMPLES / "quickstart" / "pipeline.yaml"), "--format", "mermaid")
    assert res.code == 0, res.err
    readme = (EXAMPLES / "quickstart" / "README.md").read_text()
    assert f"```mermaid\n{res.out}```" in readme, "rerun `mlprism graph … --format mermaid` into the README"


def test_quickstart_push_trigger_watches_the_quickstart() -> None:
    """Push paths are relative to the spec's directory: the workflow must watch examples/quickstart/ itself."""
    import yaml

    generated = EXAMPLES / "quickstart" / "generated"
    workflow = yaml.safe_load((generated / "github-actions/.github/workflows/quickstart.yml").read_text())
    assert workflow["on"]["push"]["paths"] == ["examples/quickstart/**"]
    binding = (generated / "kubernetes/base/events.yaml").read_text()
    assert '"^(examples/quickstart/.*)$"' in binding and "examples/quickstart/examples" not in binding
