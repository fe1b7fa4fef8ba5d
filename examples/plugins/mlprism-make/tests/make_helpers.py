"""Paths and small helpers shared by the plugin's tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
GOLDEN = HERE / "golden"


def repo_golden(case: str) -> Path:
    """tests/golden/<case>/ of the mlprism repository this plugin lives in."""
    for parent in HERE.parents:
        candidate = parent / "tests" / "golden" / case
        if (candidate / "pipeline.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"tests/golden/{case} of the mlprism repository")


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".mlprism", "expected", "__pycache__", "out"))
    return dest


def make(directory: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    make_bin = shutil.which("make")
    assert make_bin, "GNU make is needed to run the generated Makefile"
    return subprocess.run([make_bin, "-C", str(directory), *args], capture_output=True, text=True,
                          timeout=timeout)
