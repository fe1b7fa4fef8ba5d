"""Shared fixtures: run the CLI in-process or as a real process, make projects."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent

# A suite started in the background by a shell without job control (`nohup make test &` in a script)
# inherits SIGINT ignored, and so would every process it starts: the tests that press Ctrl-C on a run
# would see it ignored. Handled here, it is back to the default in those processes.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path | None = None) -> Result:
    """Run `mlprism ARGS` in this process (fast); cwd is changed for the call."""
    from mlprism._internal.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> Result:
    """Run `mlprism ARGS` as a real process."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(BIN / "mlprism"), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def proc():
    return run_proc


@pytest.fixture
def project(tmp_path: Path):
    """Write a project: project({"pipeline.yaml": "...", "src/a.py": "..."}) -> its directory."""

    def make(files: dict[str, str], root: Path | None = None) -> Path:
        base = root or tmp_path / "proj"
        for rel, text in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"))
        return base

    return make


@pytest.fixture
def example(tmp_path: Path):
    """A fresh copy of examples/NAME (without generated state)."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns(".mlprism", "__pycache__"))
        return dest

    return copy


def require(kind: str, reason: str) -> None:
    """Skip with a visible reason, or fail when CI demands the tool (MLPRISM_REQUIRE_<KIND>=1)."""
    if os.environ.get(f"MLPRISM_REQUIRE_{kind.upper()}") == "1":
        pytest.fail(f"required in CI but unavailable: {reason}")
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--update-goldens", action="store_true", help="rewrite golden files instead of comparing")
    except ValueError:      # examples/plugins/*/tests/conftest.py (collected first) already added it
        pass


@pytest.fixture(autouse=True, scope="session")
def _update_goldens(request: pytest.FixtureRequest):
    if request.config.getoption("--update-goldens"):
        os.environ["MLPRISM_UPDATE_GOLDENS"] = "1"
    yield


GOLDEN = ROOT / "tests" / "golden"


def golden_cases() -> list[str]:
    """Names of tests/golden/<case>/ directories that hold a pipeline.yaml."""
    return sorted(p.parent.name for p in GOLDEN.glob("*/pipeline.yaml"))
