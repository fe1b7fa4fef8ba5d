"""What a target's `emit` returns is checked: a plugin bug is an MLP001 naming the target, never a TypeError
(exit 3, "a bug in mlprism") nor a file written where the output directory should be."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import mlprism
import pytest
from mlprism._internal.compiler import emit, load_pipeline
from mlprism._internal.plugins import load_plugins
from mlprism._internal.write import normalize
from mlprism.diagnostics import DiagnosticError

SPEC = "apiVersion: mlprism/v1\nname: t\nsteps:\n  a:\n    run: echo a\n"


@pytest.mark.parametrize(("files", "expected"), [
    (["run.sh"], "returned list from emit, not a mapping"),
    (None, "returned NoneType from emit, not a mapping"),
    ({42: "x"}, "emitted a path that is not a string: 42"),
    ({"run.sh": 42}, "returned int for `run.sh`, not str, bytes or mlprism.GeneratedFile"),
    ({"run.sh": mlprism.GeneratedFile(None)}, "returned NoneType for `run.sh`"),    # type: ignore[arg-type]
    ({"": "x"}, "bad path `` (names no file)"),
    ({".": "x"}, "bad path `.` (names no file)"),
    ({"a/": "x"}, "bad path `a/` (ends with `/`)"),
    ({"./run.sh": "x"}, "bad path `./run.sh` (is not in its plain form (write `run.sh`))"),
    ({"a//b": "x"}, "bad path `a//b` (is not in its plain form (write `a/b`))"),
    ({"a/./b": "x"}, "(write `a/b`)"),
    ({"a": "x", "a/b/c": "y"}, "emitted both `a` and `a/b/c`"),
    ({"../x": "x"}, "bad path `../x` (leaves the project"),
])
def test_what_the_writer_cannot_write_is_mlp001_naming_the_target(files: Any, expected: str) -> None:
    with pytest.raises(DiagnosticError) as caught:
        normalize(files, "runsh", "mlprism-runsh")
    (diag,) = caught.value.diagnostics
    assert diag.code == "MLP001" and diag.hint, diag.render()
    assert diag.message.startswith("target `runsh` (plugin `mlprism-runsh`) "), diag.message
    assert expected in diag.message, diag.message


def test_plain_paths_pass() -> None:
    files = normalize({"run.sh": "a\r\nb\n", "x/y/z.txt": b"\0", "x/w": mlprism.GeneratedFile("s", True)}, "t")
    assert sorted(files) == ["run.sh", "x/w", "x/y/z.txt"]
    assert files["run.sh"].data() == b"a\nb\n" and files["x/w"].executable


class _Misbehaves(mlprism.Target):
    """Returns a list from emit (``returns-junk``), or calls sys.exit there (``exits``)."""

    capabilities: ClassVar[dict[str, str]] = {"steps": "x", "caching": "x"}

    def __init__(self, name: str) -> None:
        self.name = name

    def emit(self, pipeline: mlprism.Pipeline, context: mlprism.EmitContext) -> Any:
        if self.name == "exits":
            raise SystemExit(0)
        return [step.name for step in pipeline.steps]


class _Plugin:
    @mlprism.hookimpl
    def mlprism_register_targets(self, registry: mlprism.TargetRegistry) -> None:
        registry.add(_Misbehaves("returns-junk"))
        registry.add(_Misbehaves("exits"))


@pytest.mark.parametrize(("target", "expected"), [
    ("returns-junk", "target `returns-junk` (plugin `extra-0`) returned list from emit"),
    # sys.exit(0) inside emit ended `mlprism compile` with exit 0, nothing written and nothing said
    ("exits", "target `exits` (plugin `extra-0`) crashed while emitting: SystemExit"),
])
def test_a_target_that_misbehaves_in_emit_is_a_diagnostic(tmp_path: Path, target: str, expected: str) -> None:
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    plugins = load_plugins(extra=[_Plugin()])
    pipeline = load_pipeline(str(tmp_path / "pipeline.yaml"), plugins=plugins).pipeline
    with pytest.raises(DiagnosticError) as caught:
        emit(pipeline, target, plugins)
    (diag,) = caught.value.diagnostics
    assert diag.code == "MLP001" and diag.message.startswith(expected), diag.message
