"""The docker target against a real Docker engine (DOCKER_HOST), on the quickstart example.

- `mlprism build` makes the pipeline image from the locally built base image
  (`local/python-base:bookworm`: no registry is reachable on the project's machines);
- `mlprism run --in-docker` runs every step in it and writes the same lock file as a
  local run: same fingerprints, same data hashes, same output hashes;
- `mlprism build --image serve` makes the serving image with the registered model; a
  container of it answers /health (also its own HEALTHCHECK command) and /predict over HTTP.

The images are built once per session. Without an engine the tests skip with the reason
(CI sets MLPRISM_REQUIRE_DOCKER=1: there a missing engine fails them).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlprism
import pytest
import yaml
from mlprism._internal.cli.docker import build_wheel

from tests.conftest import EXAMPLES, require, run_proc

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_IMAGE = os.environ.get("MLPRISM_TEST_BASE_IMAGE", "local/python-base:bookworm")
TAG = "e2e"
PIPELINE_IMAGE = f"quickstart-pipeline:{TAG}"
SERVE_IMAGE = f"quickstart-serve:{TAG}"


@pytest.fixture(scope="session")
def engine() -> Any:
    from mlprism.runtime.container import docker_client

    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        require("docker", "no Docker engine: DOCKER_HOST is unset and /var/run/docker.sock does not exist "
                          "(`source .ci/docker-engine.sh && start_docker_engine` starts one)")
    try:
        client = docker_client(timeout=900)
    except mlprism.DiagnosticError as exc:
        require("docker", f"no Docker engine answers: {exc}")
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        require("docker", f"the base image {BASE_IMAGE} is missing (`start_docker_engine` builds it)")
    return client


def _step_labels(project: Path) -> list[str]:
    """The labels of the step containers DockerLauncher starts for one project (tests run in parallel)."""
    return ["io.mlprism.role=step", f"io.mlprism.project={project.resolve()}"]


def test_launcher_runs_a_step_in_a_container(engine: Any, tmp_path: Path) -> None:
    """DockerLauncher alone, with the base image: mount, cwd, user, env, log, exit status."""
    from mlprism.runtime.container import DockerLauncher

    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    launcher = DockerLauncher(BASE_IMAGE, project, client=engine)
    log = project / ".mlprism" / "runs" / "r1" / "step.log"
    code = launcher.run("pwd; id -u; echo \"FOO=$FOO PATH=$PATH HOME=$HOME\"; echo out > made.txt; "
                        "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; echo oops >&2; exit 3", cwd=project / "sub",
                        env={"FOO": "b a r", "PATH": "/host/only/bin", "HOME": "/root"}, log_path=log, timeout=60)
    assert code == 3
    text = log.read_text()
    assert "/workspace/sub\n" in text and f"\n{os.getuid()}\n" in text and "oops" in text
    assert "FOO=b a r " in text and "/host/only" not in text and "HOME=/tmp" in text
    # least privilege whatever the caller's uid: no capability, no way to gain one
    assert re.search(r"^CapEff:\s+0+$", text, re.M) and re.search(r"^NoNewPrivs:\s+1$", text, re.M), text
    made = project / "sub" / "made.txt"
    assert made.read_text() == "out\n" and made.stat().st_uid == os.getuid()
    left = engine.containers.list(all=True, filters={"label": _step_labels(project)})
    assert not left, [(c.attrs["Config"]["Cmd"], c.attrs["State"], c.attrs["Created"]) for c in left]


def test_launcher_kills_a_step_on_timeout(engine: Any, tmp_path: Path) -> None:
    from mlprism.runtime.container import TIMEOUT_EXIT_CODE, DockerLauncher

    launcher = DockerLauncher(BASE_IMAGE, tmp_path, client=engine)
    started = time.monotonic()
    code = launcher.run("echo started; sleep 120", cwd=tmp_path, env={}, log_path=tmp_path / "t.log", timeout=2)
    assert code == TIMEOUT_EXIT_CODE
    assert time.monotonic() - started < 30
    assert "started" in (tmp_path / "t.log").read_text()
    assert not engine.containers.list(all=True, filters={"label": _step_labels(tmp_path)})


def test_missing_image_is_a_diagnostic(engine: Any, tmp_path: Path) -> None:
    from mlprism.runtime.container import DockerLauncher

    with pytest.raises(mlprism.DiagnosticError) as err:
        DockerLauncher("mlprism-test/no-such-image:0", tmp_path, client=engine)
    assert err.value.diagnostics[0].code == "MLP452"


def _fresh_copy(dest: Path) -> Path:
    """examples/quickstart without any state or step output."""
    src = EXAMPLES / "quickstart"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".mlprism", "__pycache__", "mlprism.lock"))
    pipeline = mlprism.load_pipeline(str(dest / "pipeline.yaml"), check_inputs=False)
    for step in pipeline.steps:
        for out in (*step.outputs, step.metrics):
            if out and (dest / out).exists():
                target = dest / out
                shutil.rmtree(target) if target.is_dir() else target.unlink()
    return dest


@pytest.fixture(scope="session")
def projects(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two fresh copies of the quickstart, and the pipeline image built from the in-docker one."""
    if not (EXAMPLES / "quickstart" / "pipeline.yaml").exists():
        pytest.fail("examples/quickstart is missing")
    root = tmp_path_factory.mktemp("docker-e2e")
    local, docker = _fresh_copy(root / "local"), _fresh_copy(root / "docker")
    started = time.monotonic()
    # pytest-xdist may run these tests on two workers, each with this fixture: one builds at a time
    # (the second build is all cache hits)
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "docker-e2e-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # every build of the session installs the very same mlprism wheel (the tree may change meanwhile)
        wheels = sorted((shared / "docker-e2e-wheel").glob("mlprism-*.whl"))
        wheel = wheels[0] if wheels else build_wheel(shared / "docker-e2e-wheel")
        build = run_proc("build", "pipeline.yaml", "--image", "pipeline", "--base-image", BASE_IMAGE, "--tag", TAG,
                         "--wheel", str(wheel), "--quiet", cwd=docker, timeout=1200)
    assert build.code == 0, build.err[-4000:]
    assert build.out.startswith(f"pipeline: {PIPELINE_IMAGE} sha256:"), build.out
    print(f"pipeline image built in {time.monotonic() - started:.1f}s")
    return {"local": local, "docker": docker, "wheel": wheel}


def _host_has_pins(requirements: Path) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    for line in requirements.read_text().splitlines():
        name, sep, pinned = line.split("#", 1)[0].strip().partition("==")
        if not sep:
            continue
        try:
            if version(name.strip()) != pinned.strip():
                return False
        except PackageNotFoundError:
            return False
    return True


def _lock(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "mlprism.lock").read_text())


def test_pipeline_image_contents(engine: Any, projects: dict[str, Path]) -> None:
    image = engine.images.get(PIPELINE_IMAGE)
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"] == ["NONE"]
    assert config["Labels"]["org.opencontainers.image.title"] == "quickstart-pipeline"
    out = engine.containers.run(PIPELINE_IMAGE, ["sh", "-c", "id -u; mlprism --version; ls -A /app; "
                                                 "python -c 'import sklearn; print(sklearn.__version__)'"],
                                remove=True).decode()
    uid, _, version, *listing = out.split()
    assert uid == "10001" and version == mlprism.__version__
    assert "pipeline.yaml" in listing and "src" in listing
    assert ".mlprism" not in listing and "mlprism.lock" not in listing    # state and data stay out
    assert "1.9.1" in listing                                            # the pinned scikit-learn


def test_in_docker_run_reproduces_the_local_run(engine: Any, projects: dict[str, Path]) -> None:
    local = run_proc("run", "pipeline.yaml", cwd=projects["local"], timeout=600)
    assert local.code == 0, local.err[-3000:]
    since = int(time.time()) - 1
    indocker = run_proc("run", "pipeline.yaml", "--in-docker", "--image", PIPELINE_IMAGE, cwd=projects["docker"],
                        timeout=600)
    assert indocker.code == 0, indocker.err[-3000:] + indocker.out[-3000:]
    until = int(time.time()) + 1
    # every step ran in its own container of the pipeline image
    events = list(engine.events(since=since, until=until, decode=True,
                                filters={"type": "container", "event": "start",
                                         "label": _step_labels(projects["docker"])}))
    assert len(events) == 3, (events, indocker.out[-3000:])
    assert {e["Actor"]["Attributes"]["image"] for e in events} <= {PIPELINE_IMAGE, engine.images.get(PIPELINE_IMAGE).id}

    a, b = _lock(projects["local"]), _lock(projects["docker"])
    assert a["data"] == b["data"], (a["data"], b["data"])
    assert list(a["steps"]) == list(b["steps"]) == ["prepare", "train", "evaluate"]
    for name in a["steps"]:
        assert a["steps"][name]["fingerprint"] == b["steps"][name]["fingerprint"], (name, a, b)
        assert a["steps"][name]["inputs"] == b["steps"][name]["inputs"], (name, a, b)
    # prepare is deterministic (seeded split of the same data): byte-identical outputs
    assert a["steps"]["prepare"]["outputs"] == b["steps"]["prepare"]["outputs"]
    # so are train and evaluate (seeded), given the same libraries: when this venv has the pinned
    # versions the image installed, the model and metrics files are byte-identical too
    if _host_has_pins(projects["local"] / "requirements.txt"):
        for name in ("train", "evaluate"):
            assert a["steps"][name]["outputs"] == b["steps"][name]["outputs"], (name, a, b)
    # the same gate verdict and metrics (within float noise) from the containerized evaluate
    ma = json.loads((projects["local"] / "metrics" / "eval.json").read_text())
    mb = json.loads((projects["docker"] / "metrics" / "eval.json").read_text())
    assert ma.keys() == mb.keys() and all(abs(ma[k] - mb[k]) < 1e-6 for k in ma if isinstance(ma[k], float)), \
        (ma, mb)
    # files written by the containers belong to the invoking user
    assert (projects["docker"] / "models" / "model.joblib").stat().st_uid == os.getuid()
    # a second in-docker run is all cache hits: same fingerprints, nothing runs
    again = run_proc("run", "pipeline.yaml", "--in-docker", "--image", PIPELINE_IMAGE, cwd=projects["docker"])
    assert again.code == 0 and "3 steps cached" in again.out + again.err, again.out + again.err


def _get(url: str, timeout: float = 5) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def test_serving_image_answers_health_and_predict(engine: Any, projects: dict[str, Path]) -> None:
    project = projects["docker"]
    if not (project / "mlprism.lock").exists():      # this test alone: register a model first
        run = run_proc("run", "pipeline.yaml", "--in-docker", "--image", PIPELINE_IMAGE, cwd=project, timeout=600)
        assert run.code == 0, run.err[-3000:]
    # the user's flow: promote the registered version, then bake it into the serving image
    promote = run_proc("models", "promote", "cancer", "latest", "--stage", "production", cwd=project)
    assert promote.code == 0, promote.err
    started = time.monotonic()
    build = run_proc("build", "pipeline.yaml", "--image", "serve", "--base-image", BASE_IMAGE, "--tag", TAG,
                     "--wheel", str(projects["wheel"]), "--quiet", cwd=project, timeout=1200)
    assert build.code == 0, build.err[-4000:]
    assert build.out.startswith(f"serve: {SERVE_IMAGE} sha256:"), build.out
    print(f"serving image built in {time.monotonic() - started:.1f}s")
    # it shares the pipeline image's layers up to mlprism: only the model is new
    pipeline_layers = engine.images.get(PIPELINE_IMAGE).attrs["RootFS"]["Layers"]
    serve_layers = engine.images.get(SERVE_IMAGE).attrs["RootFS"]["Layers"]
    common = next((i for i, (a, b) in enumerate(zip(serve_layers, pipeline_layers, strict=False)) if a != b), len(serve_layers))
    assert common >= len(serve_layers) - 2, (serve_layers, pipeline_layers)
    config = engine.images.get(SERVE_IMAGE).attrs["Config"]
    assert config["User"] == "10001:10001" and "8080/tcp" in config["ExposedPorts"]
    container = engine.containers.run(SERVE_IMAGE, detach=True, ports={"8080/tcp": ("127.0.0.1", None)},
                                      labels={"io.mlprism.role": "e2e-serve"})
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        base = f"http://127.0.0.1:{port}"
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            try:
                health = _get(f"{base}/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                container.reload()
                assert container.status in ("created", "running"), container.logs().decode()[-3000:]
                time.sleep(0.5)
        assert health is not None, container.logs().decode()[-3000:]
        status, body = health
        assert status == 200 and body["status"] == "ok" and body.get("name", body.get("model")) == "cancer"
        # the image's own HEALTHCHECK command succeeds inside the container
        test = config["Healthcheck"]["Test"]
        assert test[0] == "CMD"
        assert container.exec_run(test[1:]).exit_code == 0
        # a prediction for rows of the held-out data
        _, meta = _get(f"{base}/metadata")
        features = meta["features"]
        lines = (project / "data" / "test.csv").read_text().splitlines()
        header = lines[0].split(",")
        rows = [{f: float(v) for f, v in zip(header, line.split(","), strict=True) if f in features}
                for line in lines[1:4]]
        request = urllib.request.Request(f"{base}/predict", data=json.dumps({"rows": rows}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
            answer = json.loads(resp.read())
        assert len(answer["predictions"]) == 3
        # a bad request is a 422 with the problem, not a crash
        bad = urllib.request.Request(f"{base}/predict", data=b'{"rows": [{"nope": 1}]}',
                                     headers={"Content-Type": "application/json"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 422
    finally:
        container.stop(timeout=5)
        container.remove(force=True)
