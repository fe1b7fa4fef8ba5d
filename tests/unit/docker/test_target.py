"""The docker target's emitted files: goldens, determinism, structure, escaping, option checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mlprism
import pytest
import yaml
from docker.utils.build import exclude_paths
from mlprism.testing import assert_golden
from mlprism_docker.target import (
    compose_string,
    copy_args,
    cpu_limit,
    dockerfile_string,
    dockerignore_pattern,
    memory_limit,
)

from tests.conftest import GOLDEN, run_cli
from tests.unit.docker.cases import CASES, FULL_OVERRIDES, FULL_UNSUPPORTED, compiled


# -- goldens and determinism ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    assert_golden(compiled(name), CASES[name].expected)


def test_emitted_files() -> None:
    assert sorted(compiled("minimal")) == [".dockerignore", "Dockerfile", "compose.yaml"]
    assert sorted(compiled("full")) == [".dockerignore", "Dockerfile", "compose.yaml", "serve.Dockerfile"]


def test_recompile_is_byte_identical_and_check_passes(tmp_path: Path) -> None:
    spec = str(GOLDEN / "full" / "pipeline.yaml")
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = run_cli("compile", spec, *FULL_OVERRIDES, "--target", "docker", "--out", str(out))
        assert result.code == 0, result.err
        outs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outs[0] == outs[1]
    assert outs[0].pop(".mlprism-generated/churn.docker.env=dev.json")      # the writer's record of them
    assert outs[0] == compiled("full")
    check = run_cli("compile", spec, *FULL_OVERRIDES, "--target", "docker", "--out", str(tmp_path / "a"), "--check")
    assert check.code == 0, check.err


# -- capabilities and option checks -------------------------------------------------------------
def test_full_spec_without_overrides_names_each_unsupported_feature() -> None:
    result = run_cli("compile", str(GOLDEN / "full" / "pipeline.yaml"), "--target", "docker", "--out", "/nonexistent")
    assert result.code == 2
    named = set(re.findall(r"error\[MLP302\]: target `docker` cannot express `([a-z]+)`", result.err))
    assert named == FULL_UNSUPPORTED
    assert "Traceback" not in result.err


def test_capabilities_are_known_features() -> None:
    from mlprism_docker import DockerTarget

    assert set(DockerTarget.capabilities) <= set(mlprism.FEATURES)
    assert not FULL_UNSUPPORTED & set(DockerTarget.capabilities)


def _spec(project, docker: str, python: str = "3.11") -> Path:
    return project({"pipeline.yaml": f"""
        apiVersion: mlprism/v1
        name: t
        environment: {{python: "{python}"}}
        steps:
          a: {{run: echo a}}
        targets:
          docker: {docker}
        """}) / "pipeline.yaml"


@pytest.mark.parametrize(("docker", "python", "message"), [
    ("{base_image: 'python:latest'}", "3.11", "`python:latest` is not pinned"),
    ("{base_image: 'ghcr.io/acme/py'}", "3.11", "no tag means `latest`"),
    ("{tag: latest}", "3.11", "image tag `latest` is not allowed"),
    ("{}", "3.7", "no default base image for Python 3.7"),
])
def test_unpinned_images_are_refused(project, docker: str, python: str, message: str) -> None:
    spec = _spec(project, docker, python)
    result = run_cli("compile", str(spec), "--target", "docker", "--out", str(spec.parent / "out"))
    assert result.code == 2
    assert "error[MLP303]" in result.err and message in result.err
    assert re.search(r"pipeline\.yaml:\d+:\d+: error\[MLP303\]", result.err), result.err


@pytest.mark.parametrize(("docker", "code"), [
    ("{uid: 0}", "MLP203"),
    ("{user: Root}", "MLP203"),
    ("{apt_packages: ['curl; rm -rf /']}", "MLP203"),
    ("{build_secrets: [lower]}", "MLP203"),
    ("{colour: blue}", "MLP200"),
])
def test_options_schema(project, docker: str, code: str) -> None:
    spec = _spec(project, docker)
    result = run_cli("validate", str(spec))
    assert result.code == 2
    assert f"error[{code}]" in result.err, result.err


def test_pinned_and_digest_base_images_are_used(project) -> None:
    digest = "sha256:" + "a" * 64
    for image in ("local/python-base:bookworm", f"python@{digest}", "registry.local:5000/py:3.11"):
        spec = _spec(project, f"{{base_image: '{image}'}}")
        files = mlprism.compile_spec(str(spec), "docker")
        assert f"FROM ${{BASE_IMAGE:-{image}}} AS base\n" in files["Dockerfile"].decode()


# -- what the Dockerfiles promise ----------------------------------------------------------------
def test_requirements_install_before_code_and_mlprism_inside() -> None:
    text = compiled("full")["Dockerfile"].decode()
    order = [text.index(s) for s in ("COPY requirements.txt /tmp/requirements.txt",
                                     "RUN pip install --no-cache-dir -r /tmp/requirements.txt",
                                     "RUN pip install --no-cache-dir -r /tmp/mlprism-requirements.txt",
                                     "RUN pip install --no-cache-dir --no-deps \"/tmp/wheels/mlprism-",
                                     "COPY --from=project --chown=10001:10001 /src /app")]
    assert order == sorted(order)
    assert f"mlprism-{mlprism.__version__}-py3-none-any.whl" in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_non_root_labels_no_latest_no_timestamps(name: str) -> None:
    for path, data in compiled(name).items():
        if not path.endswith("Dockerfile"):
            continue
        text = data.decode()
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and all(not u.startswith(("0", "root")) for u in users), path
        assert ":latest" not in text
        assert "org.opencontainers.image.title=" in text and 'org.opencontainers.image.revision="${VCS_REF}"' in text
        assert not re.search(r"\b20\d\d-\d\d-\d\d", text)         # no dates: same bytes every day
        assert "HEALTHCHECK" in text


def test_serving_image() -> None:
    text = compiled("full")["serve.Dockerfile"].decode()
    assert ('ENTRYPOINT ["mlprism", "serve", "--model-dir", "/app/model", "--host", "0.0.0.0", "--port", "8080"]'
            in text)
    assert "EXPOSE 8080" in text
    assert re.search(r"HEALTHCHECK .*\n  CMD .*http://127\.0\.0\.1:8080/health", text)
    assert "COPY .mlprism/docker/model/ /app/model/" in text
    assert "COPY .mlprism/docker/mlprism-requirements.txt /tmp/mlprism-requirements.txt" in text
    assert "COPY . " not in text                               # no project code or data in the server


def test_serving_image_logs_requests_where_it_can_write() -> None:
    """`deploy.serve.log_requests` reaches the serving image (its pods run with a read-only root but /tmp)."""
    files = mlprism.compile_spec(str(CASES["full"].spec), "docker",
                                 [*FULL_OVERRIDES, "+deploy.serve.log_requests=true"])
    text = files["serve.Dockerfile"].decode()
    assert ('ENTRYPOINT ["mlprism", "serve", "--model-dir", "/app/model", "--host", "0.0.0.0", "--port", "8080", '
            '"--log-requests", "/tmp/mlprism/serve/requests.csv"]') in text
    assert "--log-requests" not in compiled("full")["serve.Dockerfile"].decode()


def test_secret_values_never_written(monkeypatch) -> None:
    monkeypatch.setenv("WAREHOUSE_TOKEN", "s3cr3t-VALUE-123")
    files = mlprism.compile_spec(str(CASES["full"].spec), "docker", list(FULL_OVERRIDES))
    assert not any(b"s3cr3t-VALUE-123" in data for data in files.values())
    compose = yaml.safe_load(files["compose.yaml"])
    assert "WAREHOUSE_TOKEN" in compose["services"]["train"]["environment"]     # by name, from the shell
    assert b"WAREHOUSE_TOKEN" not in files["Dockerfile"]


def test_build_secrets_use_secret_mounts() -> None:
    files = compiled("options")
    text = files["Dockerfile"].decode()
    assert text.count("RUN --mount=type=secret,id=PIP_INDEX_URL") == 2
    assert "ARG PIP_INDEX_URL" not in text and "ENV PIP_INDEX_URL" not in text
    compose = yaml.safe_load(files["compose.yaml"])
    assert compose["secrets"] == {"PIP_INDEX_URL": {"environment": "PIP_INDEX_URL"}}
    assert compose["services"]["hello"]["build"]["secrets"] == ["PIP_INDEX_URL"]


# -- the compose file -------------------------------------------------------------------------------
def test_compose_runs_steps_in_order_and_serves() -> None:
    pipeline = mlprism.load_pipeline(str(CASES["full"].spec), list(FULL_OVERRIDES))
    compose = yaml.safe_load(compiled("full")["compose.yaml"])
    services = compose["services"]
    assert list(services) == [*pipeline.step_names, "serve"]
    for step in pipeline.steps:
        svc = services[step.name]
        assert svc["command"] == mlprism.step_command(pipeline, step)
        assert svc["image"] == "churn-pipeline:dev"
        ups = pipeline.upstream(step.name)
        assert svc.get("depends_on", {}) == {u: {"condition": "service_completed_successfully"} for u in ups}
        assert svc["volumes"] == [{"type": "bind", "source": ".", "target": "/workspace"}]
    train = services["train"]["deploy"]["resources"]
    assert train["limits"] == {"cpus": "2", "memory": "4g"}
    assert train["reservations"]["devices"][0]["count"] == 1
    serve = services["serve"]
    assert serve["image"] == "churn-serve:dev" and serve["build"]["dockerfile"] == "serve.Dockerfile"
    assert serve["ports"] == ["8080-8081:8080"] and serve["deploy"] == {"replicas": 2}
    # least privilege in every service: no capability, none to gain; the server's file system read-only
    for svc in services.values():
        assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"], svc
    assert serve["read_only"] is True and serve["tmpfs"] == ["/tmp"]
    manifest = compose["x-mlprism"]
    assert manifest["model"] == "churn@production"
    assert manifest["images"]["serve"]["name"] == "churn-serve:dev"


def test_compose_escapes_dollars_and_names_registry_images() -> None:
    compose = yaml.safe_load(compiled("options")["compose.yaml"])
    hello = compose["services"]["hello"]
    assert "GREETING=say \"hi\" $$USER \\ ok" in hello["environment"]
    assert "API_TOKEN" in hello["environment"]
    assert hello["image"] == "ghcr.io/acme/ml/opts-pipeline:1.2.0"
    assert hello["user"] == "${MLPRISM_UID:-20000}:${MLPRISM_GID:-20000}"
    assert hello["deploy"]["resources"]["limits"] == {"cpus": "0.5", "memory": "1610612736"}
    assert hello["build"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert compose["services"]["other"]["deploy"]["resources"]["limits"] == {"memory": "300000000"}


# -- .dockerignore, checked with the Docker SDK's own matcher -----------------------------------
def test_dockerignore_keeps_code_and_build_folder_drops_state_and_data(tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(GOLDEN / "full", project, ignore=shutil.ignore_patterns("expected"))
    for rel in (".git/HEAD", ".venv/bin/python", ".mlprism/cache/objects/ab/cd", ".mlprism/ledger.db",
                ".mlprism/docker/wheels/mlprism-0.1.0-py3-none-any.whl", ".mlprism/docker/model/model.joblib",
                "src/__pycache__/x.cpython-311.pyc", "data/train.csv", "models/model.joblib",
                "metrics/eval.json", "mlprism.lock", ".env"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x")
    patterns = [line for line in compiled("full")[".dockerignore"].decode().splitlines()
                if line.strip() and not line.startswith("#")]
    kept = {p for p in exclude_paths(str(project), patterns) if (project / p).is_file()}
    assert kept >= {"pipeline.yaml", "requirements.txt", "src/train.py", "conf/env/dev.yaml",
                    ".mlprism/docker/wheels/mlprism-0.1.0-py3-none-any.whl", ".mlprism/docker/model/model.joblib"}
    for dropped in (".git/HEAD", ".venv/bin/python", ".mlprism/cache/objects/ab/cd", ".mlprism/ledger.db",
                    "src/__pycache__/x.cpython-311.pyc", "data/raw.csv", "data/train.csv", "models/model.joblib",
                    "metrics/eval.json", "mlprism.lock", ".env"):
        assert dropped not in kept


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_dockerignore_escapes_patterns(tmp_path: Path) -> None:
    for name in ("weird [x]*.txt", "#hash.txt", "!bang?.txt", "plain.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "weird x.txt").write_text("x")
    patterns = [dockerignore_pattern(p) for p in ("weird [x]*.txt", "#hash.txt", "!bang?.txt", "plain.txt")]
    assert sorted(exclude_paths(str(tmp_path), patterns)) == ["weird x.txt"]


# -- helpers ------------------------------------------------------------------------------------------
def test_value_helpers() -> None:
    assert dockerfile_string('a "b" $c \\d') == '"a \\"b\\" \\$c \\\\d"'
    with pytest.raises(mlprism.DiagnosticError):
        dockerfile_string("two\nlines")
    assert copy_args("requirements.txt", "/tmp/r.txt") == "requirements.txt /tmp/r.txt"
    assert copy_args("a b.txt", "/tmp/r.txt") == '["a b.txt", "/tmp/r.txt"]'
    assert compose_string("$HOME ${X}") == "$$HOME $${X}"
    assert [memory_limit(q) for q in ("4Gi", "512Mi", "1.5Gi", "1G", "100", "2Ki")] == \
        ["4g", "512m", "1610612736", "1000000000", "100", "2k"]
    assert [cpu_limit(q) for q in ("2", "500m", "1500m", "0.25")] == ["2", "0.5", "1.5", "0.25"]


def test_a_line_break_in_an_environment_value_is_located(project) -> None:
    """Legitimate for the targets that carry it (local, kubernetes, github-actions); a Dockerfile ENV cannot."""
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        environment:
          variables: {X: "a\\nb: c", Y: ok}
        steps:
          a: {run: echo a}
        """}) / "pipeline.yaml"
    result = run_cli("compile", str(spec), "--target", "docker", "--out", str(spec.parent / "out"))
    assert result.code == 2
    assert re.search(r"pipeline\.yaml:4:18: error\[MLP302\]: .*`X`", result.err), result.err
    assert "hint:" in result.err
    for target in ("local", "kubernetes", "github-actions"):
        assert run_cli("compile", str(spec), "--target", target, "--out", str(spec.parent / target)).code == 0, target


def test_a_multi_line_description_is_one_label_line(project) -> None:
    spec = project({"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        description: |
          Trains the model.
          Then evaluates it.
        steps:
          a: {run: echo a}
        """}) / "pipeline.yaml"
    files = mlprism.compile_spec(str(spec), "docker")
    assert 'org.opencontainers.image.description="Trains the model. Then evaluates it."' in files["Dockerfile"].decode()
