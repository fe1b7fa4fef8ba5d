"""A plugin whose hook raises or returns the wrong type is named (MLP301, `-p no:NAME`), exit 2 — not an
anonymous internal error (exit 3) that every command hits, nor silently accepted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import mlprism
import pytest
from mlprism._internal.compiler import load_pipeline
from mlprism._internal.plugins import load_plugins, schema_sections
from mlprism.diagnostics import DiagnosticError

SPEC = "apiVersion: mlprism/v1\nname: t\nsteps:\n  a:\n    run: echo a\n"


class _Raises:
    def __init__(self, hook: str, result: Any = None, exc: Exception | None = None) -> None:
        def impl(**_: Any) -> Any:
            if exc is not None:
                raise exc
            return result

        args = {"mlprism_validate_ir": "pipeline, diagnostics", "mlprism_config_searchpath": "spec_dir",
                "mlprism_schema_sections": ""}[hook]
        ns: dict[str, Any] = {}
        exec(f"def {hook}({args}):\n    return impl()", {"impl": impl}, ns)     # pluggy reads the argument names
        setattr(self, hook, mlprism.hookimpl(ns[hook]))


def _load(tmp_path: Path, plugin: object) -> Any:
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    return load_pipeline(str(tmp_path / "pipeline.yaml"), plugins=load_plugins(extra=[plugin]))


@pytest.mark.parametrize(("hook", "result", "exc", "expected"), [
    ("mlprism_validate_ir", None, RuntimeError("boom"), "plugin `extra-0` failed in mlprism_validate_ir: RuntimeError: boom"),
    ("mlprism_schema_sections", None, RuntimeError("boom"),
     "plugin `extra-0` failed in mlprism_schema_sections: RuntimeError: boom"),
    ("mlprism_schema_sections", ["x"], None, "plugin `extra-0` returned list from mlprism_schema_sections"),
    ("mlprism_schema_sections", {"local": {"type": "object"}}, None,
     "plugin `extra-0` contributes a schema for `targets.local`, which target `local` (plugin `local`) already defines"),
    ("mlprism_config_searchpath", None, KeyError("x"),
     "plugin `extra-0` failed in mlprism_config_searchpath: KeyError: 'x'"),
    ("mlprism_config_searchpath", "file:///tmp", None,
     "plugin `extra-0` returned str from mlprism_config_searchpath, not a list of search-path URLs"),
])
def test_a_failing_hook_names_its_plugin(hook: str, result: Any, exc: Exception | None, expected: str,
                                         tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as caught:
        _load(tmp_path, _Raises(hook, result, exc))
    (diag,) = caught.value.diagnostics
    assert diag.code == "MLP301" and diag.is_error, diag.render()
    assert diag.message.startswith(expected), diag.message
    assert diag.hint and "-p no:extra-0" in diag.hint, diag.render()


def test_well_behaved_hooks_still_work(tmp_path: Path) -> None:
    assert _load(tmp_path, _Raises("mlprism_validate_ir")).pipeline.name == "t"
    assert _load(tmp_path, _Raises("mlprism_config_searchpath", [])).pipeline.name == "t"
    plugins = load_plugins(extra=[_Raises("mlprism_schema_sections", {"shared": {"type": "object"}})])
    assert schema_sections(plugins)["shared"] == {"type": "object"}


class _Transform:
    def __init__(self, change: Any) -> None:
        self.change = change

    @mlprism.hookimpl
    def mlprism_transform_ir(self, pipeline: mlprism.Pipeline) -> Any:
        return self.change(pipeline)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda p: {"not": "a pipeline"}, "returned dict from mlprism_transform_ir, not a Pipeline"),
    (lambda p: dataclasses.replace(p, steps=(dataclasses.replace(p.steps[0], needs=("ghost",)),)),
     "returned a pipeline from mlprism_transform_ir with `needs` naming no step: `ghost`"),
    (lambda p: dataclasses.replace(p, steps=p.steps * 2),
     "returned a pipeline from mlprism_transform_ir with steps named twice: `a`"),
])
def test_a_transform_returning_a_broken_pipeline_names_its_plugin(change: Any, expected: str, tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as caught:
        _load(tmp_path, _Transform(change))
    (diag,) = caught.value.diagnostics
    assert diag.code == "MLP301" and diag.message == f"plugin `extra-0` {expected}", diag.render()
    assert diag.hint and "-p no:extra-0" in diag.hint


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    """A real third-party plugin: module `name` on sys.path and a distribution whose `mlprism` entry point
    names it, found by importlib.metadata as an installed one is."""
    site = tmp_path / "site"
    (site / f"{name}-1.0.dist-info").mkdir(parents=True)
    (site / f"{name}.py").write_text(source)
    (site / f"{name}-1.0.dist-info" / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (site / f"{name}-1.0.dist-info" / "entry_points.txt").write_text(f"[mlprism]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("MLPRISM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    from mlprism._internal import compiler, plugins
    from mlprism.runtime import ircache

    for module in (plugins, ircache):               # the entry points are scanned once per process
        monkeypatch.setattr(module, "_ENTRY_POINTS", None)
    monkeypatch.setattr(compiler, "_PLUGINS", {})    # and the plugins loaded once


HALFWAY = '''
import mlprism


class Halfway(mlprism.Target):
    name = "halfway"

    def emit(self, pipeline, context):
        return {"x.txt": "x"}


@mlprism.hookimpl
def mlprism_register_targets(registry):
    registry.add(Halfway())
    raise RuntimeError("boom after registering")
'''


def test_a_plugin_that_raises_while_registering_leaves_no_target_registered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    _install_plugin(tmp_path, monkeypatch, "mlprism_halfway", HALFWAY)
    plugins = load_plugins()
    assert "mlprism_halfway" in [p.name for p in plugins.infos]          # it was loaded, as an installed plugin
    assert "halfway" not in plugins.targets
    assert "local" in plugins.targets                                   # everything else keeps working
    (diag,) = [d for d in plugins.problems if "mlprism_halfway" in d.message]
    assert diag.code == "MLP301" and diag.message.startswith(
        "plugin `mlprism_halfway` failed to register its targets: RuntimeError: boom after registering"), diag.render()
    assert diag.hint and "-p no:mlprism_halfway" in diag.hint
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    res = cli("compile", "pipeline.yaml", "-t", "halfway", "-o", "out", cwd=tmp_path)
    assert res.code == 2 and "error[MLP300]: unknown target `halfway`" in res.err, res.err
    assert "plugin `mlprism_halfway` failed to load or to register its targets: `mlprism plugins` says why" in res.err     # the clue
    assert not (tmp_path / "out").exists()
    listed = json.loads(cli("plugins", "--json").out)
    assert [p["targets"] for p in listed["plugins"] if p["name"] == "mlprism_halfway"] == [[]]
    assert [d["code"] for d in listed["diagnostics"] if "mlprism_halfway" in d["message"]] == ["MLP301"]
