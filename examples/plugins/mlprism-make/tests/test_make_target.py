"""The `make` target: golden Makefiles, quoting through real make and sh, diagnostics."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mlprism
import pytest
from make_helpers import GOLDEN, SPECS, copy_project, make, repo_golden
from makefile_parser import parse_makefile
from mlprism.testing import assert_golden
from mlprism_make import MakeTarget, make_escape, make_value

# The full golden spec uses features make cannot express; these overrides drop them
# (exactly what the MLP302 hints say), and reach every `mlprism run` in the Makefile.
FULL_REDUCED = ("~steps.train.resources", "~sweep", "~deploy", "~monitor", "~triggers.push",
                "~triggers.schedule")


def compile_make(spec: Path, *overrides: str) -> str:
    return mlprism.compile_spec(str(spec), "make", list(overrides))["Makefile"].decode()


def mlprism_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlprism", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("case", ["minimal", "diamond", "full-reduced"])
def test_golden(case: str) -> None:
    if case == "diamond":
        files = mlprism.compile_spec(str(SPECS / "diamond" / "pipeline.yaml"), "make")
    elif case == "minimal":
        files = mlprism.compile_spec(str(repo_golden("minimal") / "pipeline.yaml"), "make")
    else:
        files = mlprism.compile_spec(str(repo_golden("full") / "pipeline.yaml"), "make", list(FULL_REDUCED))
    assert_golden(files, GOLDEN / case)


def test_registered_through_the_entry_point() -> None:
    res = mlprism_cli("plugins", "--json", cwd=SPECS)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["plugins"]}
    assert rows["make"]["distribution"] == "mlprism-make"
    assert rows["make"]["targets"] == ["make"]


def test_prerequisites_follow_the_edges() -> None:
    mk = parse_makefile(compile_make(SPECS / "diamond" / "pipeline.yaml"))
    assert mk.rules["source"].prerequisites == []
    assert mk.rules["left"].prerequisites == ["source"]
    assert mk.rules["right"].prerequisites == ["source"]
    assert mk.rules["join"].prerequisites == ["left", "right"]
    assert mk.rules["all"].prerequisites == ["source", "left", "right", "join"]
    assert set(mk.phony) == {"all", "source", "left", "right", "join"}


ODD = ["params.pause='$HOME'", "params.pause='a b#c'", "params.pause=\"it's\"", "params.pause='$(MLPRISM)'",
       "params.pause='back\\\\slash'", "params.pause='%;|&*?[`'"]


@pytest.mark.parametrize("override", ODD, ids=range(len(ODD)))
def test_recipes_reach_the_shell_intact(override: str, tmp_path: Path) -> None:
    """Real make, real sh: each argument arrives exactly as step_command built it."""
    project = copy_project(SPECS / "diamond", tmp_path / "p")
    (project / "Makefile").write_text(compile_make(project / "pipeline.yaml", override))
    # MLPRISM is the Makefile's documented knob for the command; printf shows each argument as sh passed it
    res = make(project, "-s", "-j1", "MLPRISM=printf '<%s>\\n'", "source", "left")
    assert res.returncode == 0, res.stderr
    pipeline = mlprism.load_pipeline(str(project / "pipeline.yaml"), [override])
    expected = [f"<{a}>" for step in ("source", "left") for a in mlprism.step_command(pipeline, step)[1:]]
    assert res.stdout.splitlines() == expected


def test_directory_option_runs_from_elsewhere(tmp_path: Path) -> None:
    project = copy_project(SPECS / "diamond", tmp_path / "my project")
    spec = project / "pipeline.yaml"
    spec.write_text(spec.read_text() + "targets:\n  make: {directory: ../.., mlprism: \"env X=#1 mlprism\"}\n")
    out = project / "generated" / "make"
    out.mkdir(parents=True)
    (out / "Makefile").write_text(compile_make(spec))
    res = make(out, "-n", "--no-print-directory", "source")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "cd ../.. && env X=#1 mlprism run pipeline.yaml --only source"


def test_make_escape() -> None:
    assert make_escape("a$b$$c") == "a$$b$$$$c"
    assert make_value("x#y$z") == "x\\#y$$z"


@pytest.mark.parametrize("bad", ["params.pause='a\nb'", "params.pause='a\rb'"], ids=["newline", "return"])
def test_newline_in_an_override_is_mke001(bad: str) -> None:
    with pytest.raises(mlprism.DiagnosticError) as exc:
        compile_make(SPECS / "diamond" / "pipeline.yaml", bad)
    (diag,) = exc.value.diagnostics
    assert diag.code == "MKE001"
    assert diag.location is not None and diag.location.override == bad
    assert diag.hint


def test_mke_codes_are_registered() -> None:
    assert "MKE001" in mlprism.CODES and "MKE002" in mlprism.CODES


def test_cli_reports_mke001_and_mke002_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "apiVersion: mlprism/v1\nname: clash\nsteps:\n  all:\n    run: echo hi\n"
        "targets:\n  make:\n    directory: \"a\\nb\"\n")
    res = mlprism_cli("compile", "pipeline.yaml", "--target", "make", "--out", "gen", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert re.search(r"^pipeline\.yaml:4:\d+: error\[MKE002\]", res.stderr, re.M), res.stderr
    assert re.search(r"^pipeline\.yaml:8:\d+: error\[MKE001\]", res.stderr, re.M), res.stderr
    assert not (tmp_path / "gen").exists()


def test_capabilities_are_honest_about_what_make_lacks() -> None:
    caps = MakeTarget.capabilities
    for feature in ("resources", "gpu", "sweeps", "serve", "autoscale", "canary", "monitor", "schedule", "push"):
        assert feature not in caps, f"make has no way to express {feature}"


def test_unsupported_feature_is_mlp302_with_line_and_fix(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "apiVersion: mlprism/v1\nname: gpu\nsteps:\n  train:\n    run: echo train\n"
        "    resources: {gpu: 1}\n")
    res = mlprism_cli("compile", "pipeline.yaml", "--target", "make", "--out", "gen", cwd=tmp_path)
    assert res.returncode == 2
    first = res.stderr.splitlines()[0]
    assert re.match(r"pipeline\.yaml:6:\d+: error\[MLP302\]: target `make` cannot express `gpu`", first), res.stderr
    assert "~steps.train.resources.gpu" in res.stderr
    # the hint's override works: the Makefile compiles without the GPU request
    res = mlprism_cli("compile", "pipeline.yaml", "~steps.train.resources.gpu", "--target", "make", "--out", "gen",
                      cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert shlex.split(parse_makefile((tmp_path / "gen" / "Makefile").read_text()).rules["train"].recipe[0])[-2:] == \
        ["~steps.train.resources.gpu", "$(OVERRIDES)"]


def test_plugin_imports_only_the_public_api() -> None:
    """A third-party plugin may import `mlprism` (its __all__) and, in tests, `mlprism.testing`."""
    import ast

    here = Path(__file__).resolve().parent
    sources = [(p, False) for p in (here.parent / "src" / "mlprism_make").glob("*.py")]
    sources += [(p, True) for p in here.glob("*.py")]
    for path, is_test in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mlprism":
                private = [a.name for a in node.names if a.name not in mlprism.__all__]
                assert not private, f"{path.name} imports {private} from mlprism, which are not in mlprism.__all__"
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name == "mlprism" or not name.startswith("mlprism"):
                    continue
                allowed = name.startswith("mlprism_make") or (is_test and name == "mlprism.testing")
                assert allowed, f"{path.name} imports {name}: only the public `mlprism` API is allowed"
        if not is_test:
            text = path.read_text()
            used = {n.attr for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name) and n.value.id == "mlprism"}
            assert used <= set(mlprism.__all__), f"{path.name} uses private mlprism names: {used - set(mlprism.__all__)}"
