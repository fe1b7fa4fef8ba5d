"""Dropping a section removes what it generated: the monitor workflow (which retrains with `actions: write`)
kept running on GitHub after `~monitor`, and `compile --check` and `diff` called the output up to date."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import run_proc

DROP = ("~monitor", "~triggers", "~deploy")
MONITOR = "github-actions/.github/workflows/quickstart-monitor.yml"
GONE = [MONITOR, "kubernetes/base/schedules.yaml", "kubernetes/base/events.yaml", "kubernetes/base/serving.yaml"]


def test_compile_check_and_diff_after_a_section_is_dropped(example, tmp_path: Path) -> None:
    spec = example("quickstart") / "pipeline.yaml"
    out = tmp_path / "out"
    compile_ = ("compile", str(spec), "-t", "github-actions", "-t", "kubernetes", "-o", str(out))
    assert run_proc(*compile_).code == 0
    assert all((out / f).is_file() for f in GONE)
    # what the user keeps beside the generated files, and another pipeline in the same workflows directory
    (out / "github-actions/.github/workflows/lint.yml").write_text("name: lint\n")
    other = example("minimal") / "pipeline.yaml"
    assert run_proc("compile", str(other), "-t", "github-actions", "-o", str(out / "github-actions")).code == 0
    theirs = sorted(p.name for p in (out / "github-actions/.github/workflows").iterdir())
    assert "minimal.yml" in theirs and "lint.yml" in theirs

    res = run_proc(*compile_, *DROP, "--check")
    assert res.code == 1 and "error[MLP304]: " in res.err and "hint: rerun `mlprism compile`" in res.err, res.err
    for f in GONE:
        assert f"{out / f} (no longer generated: compile deletes it)" in res.err
    assert all((out / f).is_file() for f in GONE)          # --check writes and deletes nothing

    res = run_proc("diff", str(spec), "-t", "github-actions", "-t", "kubernetes", "-o", str(out), *DROP, "--stat")
    assert res.code == 1
    for f in GONE:
        assert any(line.startswith("deleted: ") and line.endswith(f) for line in res.out.splitlines()), res.out
    res = run_proc("diff", str(spec), "-t", "github-actions", "-o", str(out / "github-actions"), *DROP)
    assert "deleted file mode 100644\n" in res.out and "+++ /dev/null\n" in res.out and "-name: quickstart-monitor\n" in res.out

    res = run_proc(*compile_, *DROP)
    assert res.code == 0, res.err
    assert not any((out / f).exists() for f in GONE)
    assert f"deleted {out / MONITOR} (no longer generated)" in res.out
    assert run_proc(*compile_, *DROP, "--check").code == 0
    assert run_proc("diff", str(spec), "-t", "github-actions", "-t", "kubernetes", "-o", str(out), *DROP).code == 0
    left = sorted(p.name for p in (out / "github-actions/.github/workflows").iterdir())
    assert left == sorted(set(theirs) - {"quickstart-monitor.yml"})
    assert "lint.yml" in left and (out / "github-actions/.github/workflows/lint.yml").read_text() == "name: lint\n"

    # compiling twice gives the same bytes, manifests included
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_proc(*compile_, *DROP).code == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    # and bringing the sections back brings the files back
    assert run_proc(*compile_).code == 0
    assert all((out / f).is_file() for f in GONE)
    shutil.rmtree(out)
