"""`mlprism build` without an engine: the staged context, the mlprism wheel, clear diagnostics."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlprism
import pytest
from mlprism._internal.cli.docker import build_wheel
from mlprism.runtime.container import DockerLauncher

from tests.conftest import GOLDEN, run_cli, run_proc

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/mlprism-test/docker.sock"}


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE["DOCKER_HOST"])


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    dest = tmp_path / "minimal"
    shutil.copytree(GOLDEN / "minimal", dest, ignore=shutil.ignore_patterns("expected"))
    return dest


def test_no_engine_is_a_diagnostic(minimal: Path) -> None:
    result = run_proc("build", "pipeline.yaml", cwd=minimal, env=NO_ENGINE)
    assert result.code == 2, result.err
    assert "error[MLP450]: no Docker engine answers at unix:///nonexistent/mlprism-test/docker.sock" in result.err
    assert "hint: start a Docker engine" in result.err
    assert "Traceback" not in result.err


def test_in_docker_without_engine_is_a_diagnostic(minimal: Path) -> None:
    result = run_cli("run", "pipeline.yaml", "--in-docker", cwd=minimal)
    assert result.code == 2, result.err
    assert "MLP450" in result.err and "Traceback" not in result.err


def test_prepare_only_stages_wheel_and_dockerfile(minimal: Path) -> None:
    result = run_cli("build", "pipeline.yaml", "--prepare-only", cwd=minimal)
    assert result.code == 0, result.err
    staged = minimal / ".mlprism" / "docker"
    wheel = staged / "wheels" / f"mlprism-{mlprism.__version__}-py3-none-any.whl"
    assert wheel.is_file()
    expected = GOLDEN / "minimal" / "expected" / "docker"
    assert (staged / "Dockerfile").read_bytes() == (expected / "Dockerfile").read_bytes()
    assert (staged / "Dockerfile.dockerignore").read_bytes() == (expected / ".dockerignore").read_bytes()
    deps = (staged / "mlprism-requirements.txt").read_text().splitlines()
    assert any(d.startswith("hydra-core") for d in deps) and any(d.startswith("fastapi") for d in deps)
    assert not any("extra ==" in d for d in deps)
    first = wheel.read_bytes()
    again = run_cli("build", "pipeline.yaml", "--prepare-only", cwd=minimal)
    assert again.code == 0 and wheel.read_bytes() == first


def test_serving_image_needs_a_registered_model(tmp_path: Path) -> None:
    project = tmp_path / "full"
    shutil.copytree(GOLDEN / "full", project, ignore=shutil.ignore_patterns("expected"))
    default = run_cli("build", "pipeline.yaml", "--prepare-only", cwd=project)
    assert default.code == 0, default.err
    assert "warning[MLP452]: skipping the serving image" in default.err
    assert "note[MLP302]: the images do not carry" in default.err      # a note, not an error, for `build`
    assert (project / ".mlprism" / "docker" / "Dockerfile").is_file()
    assert not (project / ".mlprism" / "docker" / "model").exists()
    asked = run_cli("build", "pipeline.yaml", "--prepare-only", "--image", "serve", cwd=project)
    assert asked.code == 2
    assert "MLP452" in asked.err and "cannot export churn@production" in asked.err
    assert "Traceback" not in asked.err


def _prepare_with_registered(tmp_path: Path, model: str) -> Any:
    """`build --prepare-only` of the golden `full` project (serving `churn`) with `model` registered, unpromoted."""
    from mlprism.runtime.registry import ModelRegistry

    project = tmp_path / "full"
    shutil.copytree(GOLDEN / "full", project, ignore=shutil.ignore_patterns("expected"))
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")
    ModelRegistry(project / ".mlprism").register(model, artifact, run_id="r1", lineage={})
    out = run_cli("build", "pipeline.yaml", "--prepare-only", cwd=project)
    assert out.code == 0, out.err
    return out


def test_serving_image_of_an_unpromoted_model_hints_promote(tmp_path: Path) -> None:
    # registered but not in production: "run the pipeline so it registers a model" would not help
    out = _prepare_with_registered(tmp_path, "churn")
    assert "skipping the serving image: `churn` has no version in production" in out.err
    assert "mlprism models promote churn VERSION --stage production" in out.err
    assert "so it registers a model" not in out.err


def test_serving_image_of_an_unregistered_model_still_hints_a_run(tmp_path: Path) -> None:
    # another model registered, not this one: "run the pipeline", not the registry's own hint ("registered
    # models: other, then build again")
    out = _prepare_with_registered(tmp_path, "other")
    assert "skipping the serving image: no model named `churn` in the registry" in out.err
    assert "so it registers a model, then build again" in out.err
    assert "registered models: other, then build again" not in out.err


@pytest.mark.parametrize(("args", "message"), [
    (["--tag", "latest"], "image tag `latest` is not allowed"),
    (["--base-image", "python"], "--base-image `python` is not pinned"),
    (["--base-image", "python:latest"], "is not pinned"),
])
def test_bad_build_arguments(minimal: Path, args: list[str], message: str) -> None:
    result = run_cli("build", "pipeline.yaml", *args, cwd=minimal)
    assert result.code == 2 and message in result.err, result.err


def test_wheel_is_deterministic_complete_and_installable(tmp_path: Path) -> None:
    a = build_wheel(tmp_path / "a").read_bytes()
    wheel = build_wheel(tmp_path / "b")
    assert wheel.read_bytes() == a
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"mlprism-{mlprism.__version__}.dist-info"
        assert {"mlprism/__init__.py", "mlprism/runtime/container.py", "mlprism_docker/templates/Dockerfile.j2",
                "mlprism_schemas/pipeline.v1.json", f"{info}/METADATA", f"{info}/entry_points.txt",
                f"{info}/RECORD"} <= names
        assert not any("__pycache__" in n for n in names)
        assert "docker = mlprism_docker" in zf.read(f"{info}/entry_points.txt").decode()
        for line in zf.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if digest:
                data = zf.read(name)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={want}" and int(size) == len(data), name
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                          str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stderr
    probe = ("import importlib.metadata as m, mlprism, mlprism_docker; "
             "print(mlprism.__version__, sorted(e.name for e in m.entry_points(group='mlprism')"
             " if e.dist.name == 'mlprism'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1)[0] == mlprism.__version__
    assert "'docker'" in out.stdout and "'local'" in out.stdout


def test_container_env_drops_host_only_variables() -> None:
    env = DockerLauncher.container_env({"PATH": "/host/bin", "HOME": "/root", "VIRTUAL_ENV": "/v",
                                        "PYTHONHASHSEED": "0", "API_TOKEN": "x", "MLPRISM_RUN_ID": "r1",
                                        "DOCKER_HOST": "unix:///s"})
    assert env == {"API_TOKEN": "x", "HOME": "/tmp", "MLPRISM_RUN_ID": "r1", "PYTHONHASHSEED": "0"}


class _FakeContainer:
    id = "c0ffee"

    def __init__(self, wait_error: Exception | None) -> None:
        self.wait_error = wait_error
        self.killed = False

    def start(self) -> None:
        pass

    def logs(self, **_: object) -> list[bytes]:
        return []

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        if self.wait_error is not None and not self.killed:
            raise self.wait_error
        return {"StatusCode": 137}

    def kill(self) -> None:
        self.killed = True

    def remove(self, force: bool = False) -> None:
        pass


class _FakeClient:
    """A Docker client whose engine answers (or not) and whose containers fail as told."""

    def __init__(self, *, create_error: Exception | None = None, wait_error: Exception | None = None,
                 answers: bool = True) -> None:
        import types

        self.create_error, self.wait_error, self.answers = create_error, wait_error, answers
        self.images = types.SimpleNamespace(get=lambda name: types.SimpleNamespace(id="sha256:1"))
        self.containers = types.SimpleNamespace(create=self._create)

    def _create(self, image: str, **_: object) -> _FakeContainer:
        if self.create_error is not None:
            raise self.create_error
        return _FakeContainer(self.wait_error)

    def ping(self) -> bool:
        if not self.answers:
            import requests

            raise requests.exceptions.ConnectionError("connection refused")
        return True


@pytest.mark.parametrize("where", ["create", "wait"])
def test_engine_gone_during_a_step_is_mlp450(tmp_path: Path, where: str) -> None:
    # the engine stopped while `run --in-docker` ran a step: MLP450 saying so, not MLP001 "internal error"
    import requests
    from mlprism.diagnostics import DiagnosticError

    error = (requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104))")
             if where == "create" else requests.exceptions.ChunkedEncodingError("Response ended prematurely"))
    client = _FakeClient(create_error=error if where == "create" else None,
                         wait_error=error if where == "wait" else None, answers=False)
    launcher = DockerLauncher("demo-pipeline:dev", tmp_path, client=client, user="1000:1000")
    with pytest.raises(DiagnosticError) as info:
        launcher.run("true", cwd=tmp_path, env={}, log_path=tmp_path / "step.log", timeout=None)
    d = info.value.diagnostics[0]
    assert d.code == "MLP450"
    assert "stopped answering" in d.message and "rerun" in d.message
    assert d.hint


def test_read_timeout_of_a_live_engine_is_still_a_timeout(tmp_path: Path) -> None:
    import requests
    from mlprism.runtime.container import TIMEOUT_EXIT_CODE

    client = _FakeClient(wait_error=requests.exceptions.ConnectionError("Read timed out."), answers=True)
    launcher = DockerLauncher("demo-pipeline:dev", tmp_path, client=client, user="1000:1000")
    assert launcher.run("sleep 9", cwd=tmp_path, env={}, log_path=tmp_path / "step.log", timeout=1) == TIMEOUT_EXIT_CODE


def test_an_invalid_image_reference_is_not_an_engine_problem(tmp_path: Path) -> None:
    # `--image 'Bad Image!!'`: the engine answers 400; that is the caller's typo, not "start a Docker engine"
    import docker.errors
    import requests
    from mlprism.diagnostics import DiagnosticError

    response = requests.Response()
    response.status_code = 400

    def get(name: str) -> None:
        raise docker.errors.APIError("400 Client Error", response=response,
                                     explanation="invalid reference format: repository name must be lowercase")

    client = _FakeClient()
    client.images.get = get
    with pytest.raises(DiagnosticError) as info:
        DockerLauncher("Bad Image!!", tmp_path, client=client)
    d = info.value.diagnostics[0]
    assert d.code == "MLP002" and "not a valid image reference" in d.message
    assert "Docker engine" not in (d.hint or "")


def test_step_containers_a_killed_runner_left_are_reaped(tmp_path: Path) -> None:
    # `run --in-docker` SIGKILLed: its step container goes on writing into the project; the next run
    # (which holds the project lock) kills and removes it, as it kills a local run's process groups
    listed: list[dict[str, object]] = []
    left = [_FakeContainer(None), _FakeContainer(None)]
    left[0].status, left[1].status = "running", "exited"          # type: ignore[attr-defined]
    removed: list[object] = []
    for c in left:
        c.remove = lambda force=False, c=c: removed.append(c)      # type: ignore[method-assign]

    def list_(all: bool = False, filters: dict[str, object] | None = None) -> list[_FakeContainer]:
        listed.append(filters or {})
        return left

    client = _FakeClient()
    client.containers.list = list_
    launcher = DockerLauncher("demo-pipeline:dev", tmp_path, client=client, user="1000:1000")
    assert launcher.reap_orphans() == 1
    assert listed == [{"label": ["io.mlprism.role=step", f"io.mlprism.project={tmp_path.resolve()}"]}]
    assert left[0].killed and not left[1].killed and removed == left


def _build_failure(tmp_path: Path, build: Any) -> Any:
    """The diagnostic `_build_one` raises when the engine's build stream (``build``) goes wrong."""
    import argparse
    import types

    from mlprism._internal.cli.docker import _build_one
    from mlprism.diagnostics import DiagnosticError

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    client = types.SimpleNamespace(api=types.SimpleNamespace(build=build))
    args = argparse.Namespace(no_cache=False, network=None, quiet=True)
    with pytest.raises(DiagnosticError) as info:
        _build_one(client, project=tmp_path, dockerfile="Dockerfile", tag="x-pipeline:dev", patterns=[],
                   buildargs={}, args=args, platform=None)
    return info.value.diagnostics[0]


def test_a_failed_build_shows_its_last_lines_without_colour_codes(tmp_path: Path) -> None:
    # the classic builder wraps a RUN's stderr in ESC[91m ... ESC[0m; MLP451 showed them as `\x1b[91m`
    def build(**_: object) -> list[dict[str, object]]:
        return [{"stream": "Step 11/23 : RUN pip install -r /tmp/requirements.txt\n"},
                {"stream": "\x1b[91mERROR: Invalid requirement: 'scikit-learn >>>= 1'\n\x1b[0m"},
                {"error": "The command '/bin/sh -c pip install' returned a non-zero code: 1",
                 "errorDetail": {"message": "The command '/bin/sh -c pip install' returned a non-zero code: 1"}}]

    message = _build_failure(tmp_path, build).message
    assert "ERROR: Invalid requirement" in message
    assert "\x1b" not in message


def test_engine_gone_during_a_build_is_mlp450(tmp_path: Path) -> None:
    # dockerd stopped while `mlprism build` streamed the build: MLP450, not MLP001 "internal error: ProtocolError"
    import urllib3.exceptions

    def build(**_: object) -> Iterator[dict[str, str]]:      # a generator, like the SDK's
        yield {"stream": "Step 11/23 : RUN pip install -r /tmp/requirements.txt\n"}
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)")

    d = _build_failure(tmp_path, build)
    assert d.code == "MLP450" and "stopped answering while building x-pipeline:dev" in d.message and d.hint
