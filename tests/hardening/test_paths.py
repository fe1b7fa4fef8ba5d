"""Paths cannot escape the project: `..`, absolute paths and symlinks out are refused (MLP230)
at validate time and again before a run starts, unless the data is declared `external: true`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPEC = """\
apiVersion: mlprism/v1
name: paths
data:
  raw: {path: data/raw.txt}
steps:
  copy:
    run: mkdir -p out && cp data/raw.txt out/copy.txt
    inputs: [data/raw.txt]
    outputs: [out/copy.txt]
"""


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "elsewhere"
    d.mkdir()
    (d / "raw.txt").write_text("from outside\n")
    return d


def diags(result) -> list[dict]:
    return json.loads(result.out)["diagnostics"]


def test_an_input_symlinked_out_of_the_project_is_refused(cli, project, outside: Path) -> None:
    proj = project({"pipeline.yaml": SPEC})
    (proj / "data").mkdir()
    (proj / "data" / "raw.txt").symlink_to(outside / "raw.txt")
    r = cli("validate", str(proj / "pipeline.yaml"), "--json")
    assert r.code == 2, r.out + r.err
    found = {(d["code"], d["message"]) for d in diags(r)}
    assert ("MLP230", f"data `raw` `data/raw.txt` leads outside the project through a symlink (to "
            f"`{outside.resolve() / 'raw.txt'}`)") in found
    assert any(d["code"] == "MLP230" and "step `copy` input" in d["message"] and d["location"]["line"] == 8
               for d in diags(r))
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 2 and "MLP230" in r.err and "Traceback" not in r.err + r.out
    assert not (proj / "out").exists()                      # nothing ran


def test_an_output_directory_symlinked_out_is_refused(cli, project, outside: Path) -> None:
    proj = project({"pipeline.yaml": SPEC, "data/raw.txt": "inside\n"})
    (proj / "out").symlink_to(outside)
    r = cli("validate", str(proj / "pipeline.yaml"), "--json")
    assert r.code == 2
    (d,) = diags(r)
    assert d["code"] == "MLP230" and d["message"].startswith("step `copy` output `out/copy.txt` leads outside")
    assert "external: true" in d["hint"]
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 2 and "MLP230" in r.err
    assert not (outside / "copy.txt").exists()               # nothing was written through the link


def test_a_symlink_made_after_validation_is_refused_at_run_time(cli, project, outside: Path) -> None:
    proj = project({"pipeline.yaml": SPEC, "data/raw.txt": "inside\n"})
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err
    (proj / "data" / "raw.txt").unlink()
    (proj / "data" / "raw.txt").symlink_to(outside / "raw.txt")
    r = cli("run", "pipeline.yaml", cwd=proj)              # the compiled spec is cached: the runtime checks
    assert r.code == 2 and "MLP230" in r.err and "leads outside the project through a symlink" in r.err
    assert (proj / "out" / "copy.txt").read_text() == "inside\n"


def test_symlinks_inside_the_project_are_fine(cli, project) -> None:
    proj = project({"pipeline.yaml": SPEC, "store/raw-v2.txt": "v2\n"})
    (proj / "data").mkdir()
    (proj / "data" / "raw.txt").symlink_to("../store/raw-v2.txt")
    r = cli("run", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert (proj / "out" / "copy.txt").read_text() == "v2\n"


@pytest.mark.parametrize("how", ["symlink", "absolute", "dotdot"])
def test_external_data_is_allowed_when_declared(cli, project, outside: Path, how: str) -> None:
    proj = project({"pipeline.yaml": SPEC})
    if how == "symlink":
        path = "data/raw.txt"
        (proj / "data").mkdir()
        (proj / "data" / "raw.txt").symlink_to(outside / "raw.txt")
    elif how == "absolute":
        path = str(outside / "raw.txt")
    else:
        path = "../elsewhere/raw.txt"
    spec = SPEC.replace("data/raw.txt", path).replace(f"{{path: {path}}}", f"{{path: {path}, external: true}}")
    (proj / "pipeline.yaml").write_text(spec)
    r = cli("validate", "pipeline.yaml", cwd=proj)
    assert r.code == 0, r.out + r.err
    r = cli("run", "pipeline.yaml", "--json", cwd=proj)
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["data"]["raw"]["path"] == path
    assert (proj / "out" / "copy.txt").read_text() == "from outside\n"
    lock = (proj / "mlprism.lock").read_text()
    assert path in lock


def test_without_external_the_same_paths_are_refused(cli, project, outside: Path) -> None:
    for path in (str(outside / "raw.txt"), "../elsewhere/raw.txt"):
        proj = project({"pipeline.yaml": SPEC.replace("data/raw.txt", path)}, root=outside.parent / "p")
        r = cli("validate", "pipeline.yaml", "--json", cwd=proj)
        assert r.code == 2
        found = diags(r)
        assert {d["code"] for d in found} == {"MLP230"} and len(found) == 2     # the data and the input
        assert all("external: true" in d["hint"] for d in found)


def test_external_covers_only_the_data_and_inputs_under_it(cli, project, outside: Path) -> None:
    spec = f"""\
apiVersion: mlprism/v1
name: paths
data:
  raw: {{path: {outside}, external: true}}
steps:
  copy:
    run: cp {outside}/raw.txt {outside}/copy.txt
    inputs: [{outside}/raw.txt, /etc/hostname]
    outputs: [{outside}/copy.txt]
"""
    proj = project({"pipeline.yaml": spec})
    r = cli("validate", "pipeline.yaml", "--json", cwd=proj)
    assert r.code == 2
    bad = sorted((d["message"], d["location"]["line"]) for d in diags(r))
    assert bad == [("step `copy` input `/etc/hostname` is absolute", 8),
                   (f"step `copy` output `{outside}/copy.txt` is absolute", 9)]
