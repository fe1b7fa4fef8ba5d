"""`mlprism init` scaffolds a project that validates and runs; `mlprism diff` shows what compile would change."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_proc


def test_init_creates_a_project_that_validates(tmp_path: Path) -> None:
    res = run_cli("init", "My_Project", cwd=tmp_path)
    assert res.code == 0, res.err
    root = tmp_path / "My_Project"
    for rel in ("pipeline.yaml", "conf/env/dev.yaml", "conf/env/prod.yaml", "src/prepare.py", "src/train.py",
                "src/evaluate.py", "requirements.txt", ".gitignore"):
        assert (root / rel).is_file(), rel
    assert ".mlprism/" in (root / ".gitignore").read_text().split()
    spec = (root / "pipeline.yaml").read_text()
    assert "name: my-project" in spec and spec.count("#") > 20          # commented
    for overrides in ((), ("env=prod",), ("params.rows=50",)):
        res = run_cli("validate", "pipeline.yaml", *overrides, "--json", cwd=root)
        assert res.code == 0, res.out + res.err
        assert json.loads(res.out)["steps"] == 3
    # the step scripts use only the standard library
    for script in (root / "src").glob("*.py"):
        imports = {line.split()[1].split(".")[0] for line in script.read_text().splitlines()
                   if line.startswith(("import ", "from "))}
        assert imports <= {"argparse", "csv", "json", "random", "pathlib", "__future__"}, (script, imports)


def test_init_runs_as_generated(tmp_path: Path) -> None:
    assert run_cli("init", "proj", "--name", "starter", cwd=tmp_path).code == 0
    root = tmp_path / "proj"
    first = run_proc("run", "pipeline.yaml", cwd=root, timeout=120)
    assert first.code == 0, first.out + first.err
    metrics = json.loads((root / "metrics" / "eval.json").read_text())
    assert metrics["accuracy"] >= 0.7
    second = run_proc("run", "pipeline.yaml", cwd=root, timeout=120)
    assert second.code == 0 and "cached" in second.out + second.err


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "pipeline.yaml").write_text("mine\n")
    (root / ".gitignore").write_text("*.pyc")
    res = run_cli("init", str(root), cwd=tmp_path)
    assert res.code == 2
    assert "error[MLP003]" in res.err and "pipeline.yaml" in res.err
    assert (root / "pipeline.yaml").read_text() == "mine\n"
    assert not (root / "src").exists()                                  # nothing written
    res = run_cli("init", str(root), "--force", cwd=tmp_path)
    assert res.code == 0
    assert (root / "pipeline.yaml").read_text() != "mine\n"
    assert (root / ".gitignore").read_text().startswith("# mlprism")


def test_init_adds_to_an_existing_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    assert run_cli("init", cwd=tmp_path).code == 0
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "*.pyc"
    assert ".mlprism/" in (tmp_path / ".gitignore").read_text().split()
    again = run_cli("init", "--force", cwd=tmp_path)
    assert again.code == 0


def test_init_rejects_a_bad_name(tmp_path: Path) -> None:
    res = run_cli("init", "p", "--name", "Bad_Name", cwd=tmp_path)
    assert res.code == 2 and "MLP210" in res.err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run_cli("init", "p", cwd=tmp_path).code == 0
    return tmp_path / "p"


def test_diff_shows_new_files_then_nothing_after_compile(project: Path) -> None:
    res = run_cli("diff", "pipeline.yaml", "--target", "ir", "--out", "gen", cwd=project)
    assert res.code == 1
    assert "+++ b/gen/pipeline.ir.json" in res.out and "--- /dev/null" in res.out
    assert run_cli("compile", "pipeline.yaml", "--target", "ir", "--out", "gen", cwd=project).code == 0
    res = run_cli("diff", "pipeline.yaml", "--target", "ir", "--out", "gen", cwd=project)
    assert res.code == 0 and res.out == ""
    assert "no changes" in res.err


def test_diff_is_a_patch_that_applies(project: Path) -> None:
    assert run_cli("compile", "pipeline.yaml", "-t", "ir", "-o", "gen", cwd=project).code == 0
    res = run_cli("diff", "pipeline.yaml", "-t", "ir", "-o", "gen", "params.rows=77", cwd=project)
    assert res.code == 1
    assert '-    "rows": 400' in res.out and '+    "rows": 77' in res.out
    before = (project / "gen" / "pipeline.ir.json").read_text()
    patch = subprocess.run(["patch", "-p1", "--dry-run"], input=res.out, text=True, capture_output=True,
                           cwd=project)
    if patch.returncode == 127:      # pragma: no cover - no `patch` on the machine
        pytest.skip("patch not installed")
    assert patch.returncode == 0, patch.stdout + patch.stderr
    assert (project / "gen" / "pipeline.ir.json").read_text() == before      # diff writes nothing


def test_diff_every_target_and_stat(project: Path) -> None:
    res = run_cli("diff", "pipeline.yaml", "--target", "all", "--out", "gen", "--stat", cwd=project)
    assert res.code == 1
    assert all(line.startswith("new file: gen/") for line in res.out.splitlines())
    assert run_cli("compile", "pipeline.yaml", "--target", "all", "--out", "gen", cwd=project).code == 0
    assert run_cli("diff", "pipeline.yaml", "--target", "all", "--out", "gen", cwd=project).code == 0


def test_file_diff_modes_and_binary(tmp_path: Path) -> None:
    from mlprism._internal.cli.project import file_diff
    from mlprism._internal.target import GeneratedFile

    (tmp_path / "run.sh").write_text("echo hi\n")
    (tmp_path / "run.sh").chmod(0o644)
    out = file_diff(tmp_path, "run.sh", GeneratedFile("echo hi\n", executable=True))
    assert "old mode 100644\nnew mode 100755" in out and "@@" not in out
    assert file_diff(tmp_path, "blob.bin", GeneratedFile(b"\xff\x00")).endswith("differ\n")
    assert file_diff(tmp_path, "run.sh", GeneratedFile("echo hi")) .endswith("\\ No newline at end of file\n")


@pytest.mark.parametrize(("args", "code"), [(("-t", "nope"), "MLP300"), (("-t", "ir", "params.nope=1"), "MLP111")])
def test_diff_errors_are_diagnostics(project: Path, args: tuple[str, ...], code: str) -> None:
    res = run_cli("diff", "pipeline.yaml", *args, cwd=project)
    assert res.code == 2 and code in res.err
