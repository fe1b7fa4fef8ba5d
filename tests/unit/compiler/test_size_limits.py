"""MLP305: a generated file larger than its platform accepts is written, with a warning that says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mlprism import GeneratedFile, Target
from mlprism._internal.target import size_warnings
from mlprism.diagnostics import Severity


class _Small(Target):
    name: ClassVar[str] = "small"
    size_limits: ClassVar[dict[str, tuple[int, str, str]]] = {
        "flows/*.yml": (100, "the platform refuses bigger files", "split it"),
        "one.txt": (10, "ten bytes at most", "shorten it"),
    }


def test_only_files_above_their_pattern_limit_warn() -> None:
    files: dict[str, Any] = {
        "flows/a.yml": "x" * 100,                       # at the limit: fine
        "flows/deep/b.yml": "y" * 101,                  # `*` crosses `/`
        "one.txt": GeneratedFile("é" * 6),              # 6 characters, 12 bytes of UTF-8
        "other.txt": "z" * 10_000,                      # no limit for it
        "flows/c.yml": b"\0" * 4096,
    }
    warnings = size_warnings(_Small(), files)
    assert [w.code for w in warnings] == ["MLP305"] * 3
    assert all(w.severity is Severity.WARNING and not w.is_error for w in warnings)
    texts = [w.message for w in warnings]
    assert texts[0] == "target `small`: `flows/c.yml` is 4 KiB (at most 0 KiB): the platform refuses bigger files"
    assert "`flows/deep/b.yml` is 0 KiB" in texts[1]
    assert texts[2].startswith("target `small`: `one.txt` is 0 KiB") and warnings[2].hint == "shorten it"
    assert size_warnings(_Small(), {"one.txt": "é" * 5}) == []            # 10 bytes
    assert size_warnings(Target(), {"x": "y" * 10**6}) == []             # no limits declared


def _chain(n: int) -> str:
    steps = "".join(f"  s{i}:\n    run: echo {i} > s{i}.txt\n    outputs: [s{i}.txt]\n"
                    + (f"    inputs: [s{i - 1}.txt]\n" if i else "") for i in range(n))
    return f"apiVersion: mlprism/v1\nname: big\nsteps:\n{steps}"


def test_a_long_pipeline_warns_for_github_actions_and_still_compiles(cli: Any, project: Any, tmp_path: Path) -> None:
    proj = project({"pipeline.yaml": _chain(200)})
    r = cli("compile", str(proj / "pipeline.yaml"), "-t", "github-actions", "--out", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert "warning[MLP305]: target `github-actions`: `.github/workflows/big.yml` is" in r.err
    assert "GitHub does not start runs of a workflow file larger than that" in r.err and "hint:" in r.err
    assert (tmp_path / "out" / ".github" / "workflows" / "big.yml").stat().st_size > 500 * 1024
    short = project({"pipeline.yaml": _chain(20)}, root=tmp_path / "short")
    r = cli("compile", str(short / "pipeline.yaml"), "-t", "github-actions", "-t", "kubernetes",
            "--out", str(tmp_path / "out2"))
    assert r.code == 0 and "MLP305" not in r.err, r.err


def test_a_very_long_pipeline_warns_for_kubernetes(cli: Any, project: Any, tmp_path: Path) -> None:
    proj = project({"pipeline.yaml": _chain(1300)})
    r = cli("compile", str(proj / "pipeline.yaml"), "-t", "kubernetes", "--out", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert "warning[MLP305]: target `kubernetes`: `base/pipeline.yaml` is 1." in r.err, r.err
    assert "(at most 1.0 MiB): Argo keeps a workflow in etcd" in r.err
