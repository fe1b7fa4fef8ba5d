"""A cached IR points at the spec as the command line named it, from whichever directory it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlprism.runtime.ircache import load_pipeline_cached

SPEC = """\
apiVersion: mlprism/v1
name: where
steps:
  a:
    run: "echo 1 > out/a.txt"
    outputs: ["out/a.txt"]
"""


def _file(spec: str) -> str | None:
    pipeline, _ = load_pipeline_cached(spec)
    loc = pipeline.location("steps.a.run")
    assert loc is not None
    return loc.file


def test_locations_follow_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pipeline.yaml").write_text(SPEC)
    monkeypatch.delenv("MLPRISM_NO_IR_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _file("proj/pipeline.yaml") == "proj/pipeline.yaml"
    monkeypatch.chdir(proj)
    assert _file("pipeline.yaml") == "pipeline.yaml"          # not the entry compiled from the parent
    assert _file(str(proj / "pipeline.yaml")) == "pipeline.yaml"
    monkeypatch.chdir(tmp_path)
    assert _file("proj/pipeline.yaml") == "proj/pipeline.yaml"
    assert _file(str(proj / "pipeline.yaml")) == "proj/pipeline.yaml"
    assert len(list((proj / ".mlprism" / "ir").glob("*.pickle"))) == 2     # one entry per name, reused
