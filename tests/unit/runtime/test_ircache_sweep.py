"""load_pipelines_cached: a sweep's combinations compiled together give what compiling each one alone gives."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from mlprism._internal import compose as compose_module
from mlprism._internal.compiler import Shared, load_pipeline
from mlprism.diagnostics import DiagnosticError
from mlprism.runtime.ircache import load_pipeline_cached, load_pipelines_cached

from tests.unit.compiler.test_frontend_fast_paths import _all_dotted

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"


def _one_by_one(spec: Path, lists: Sequence[Sequence[str]], state: Path) -> Any:
    """What sweeps did before: load_pipeline_cached once per list, stopping at the first error."""
    try:
        return [load_pipeline_cached(spec, o, state_dir=state) for o in lists]
    except DiagnosticError as exc:
        return exc.diagnostics


def _together(spec: Path, lists: Sequence[Sequence[str]], state: Path) -> Any:
    try:
        return load_pipelines_cached(spec, lists, state_dir=state)
    except DiagnosticError as exc:
        return exc.diagnostics


def _same(expected: Any, got: Any) -> None:
    if isinstance(expected, list) and expected and isinstance(expected[0], tuple):
        assert isinstance(got, list) and len(got) == len(expected)
        for (p1, w1), (p2, w2) in zip(expected, got, strict=True):
            assert p1 == p2 and w1 == w2
            assert list(p1.locations.items()) == list(p2.locations.items())     # the same order too
            assert [s.name for s in p1.steps] == [s.name for s in p2.steps]
    else:
        assert got == expected, (got, expected)


@pytest.fixture
def variants(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many compositions were derived without Hydra (a spy on compose_variant; it still runs)."""
    derived: list[int] = []
    real = compose_module.compose_variant

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        derived.append(result is not None)
        return result

    monkeypatch.setattr(compose_module, "compose_variant", spy)
    monkeypatch.delenv("MLPRISM_NO_IR_CACHE", raising=False)
    return derived


def _check(spec: Path, lists: list[list[str]], tmp_path: Path) -> Any:
    """Compare, cold (nothing cached) and then warm (what the first calls cached)."""
    expected = _one_by_one(spec, lists, tmp_path / "a")
    got = _together(spec, lists, tmp_path / "b")
    _same(expected, got)
    _same(_one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b"))   # from the cache
    # and with no cache at all: every combination compiled (shared work only)
    compiled = []
    shared = Shared()
    try:
        for o in lists:
            c = load_pipeline(spec, o, shared=shared)
            compiled.append((c.pipeline, c.warnings))
    except DiagnosticError as exc:
        compiled = exc.diagnostics
    _same(expected, compiled)
    return expected


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mix")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "specs.py"), "mix", "60", "--project", str(out)],
                   check=True, capture_output=True)
    return out / "pipeline.yaml"


def test_benchmark_mix_sweep(mix: Path, tmp_path: Path, variants: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    lists = [["params.alpha=1"], ["params.alpha=2"], ["params.alpha=3"]]
    hydra: list[object] = []
    real = compose_module._hydra_compose
    monkeypatch.setattr(compose_module, "_hydra_compose", lambda *a, **k: hydra.append(a) or real(*a, **k))
    result = _check(mix, lists, tmp_path)
    assert [p.params["alpha"] for p, _ in result] == [1, 2, 3]
    assert not hydra                   # every combination only sets a param: composed without Hydra
    # the swept value reached the steps that use it
    runs = {s.name: s.run for s in result[2][0].steps}
    assert any("3" in r for r in runs.values())


def test_batch_entry_is_one_file(mix: Path, tmp_path: Path, variants: list[int]) -> None:
    lists = [["params.alpha=1"], ["params.alpha=2"], ["params.alpha=3"], ["params.alpha=2", "params.lr=0.5"]]
    state = tmp_path / "s"
    first = load_pipelines_cached(mix, lists, state_dir=state)
    entries = sorted((state / "ir").glob("*.pickle"))
    assert len(entries) == 1        # one entry for all (one per list would push other entries out)
    again = load_pipelines_cached(mix, lists, state_dir=state)
    _same(first, again)
    assert again[0][0].steps[0] is again[1][0].steps[0] or again[0][0].steps[0] == again[1][0].steps[0]


@pytest.mark.parametrize("lists", [
    [["params.n_estimators=100", "params.max_depth=4"], ["params.n_estimators=100", "params.max_depth=8"],
     ["params.n_estimators=400", "params.max_depth=4"], ["params.n_estimators=400", "params.max_depth=8"]],
    [["env=prod", "params.max_depth=4"], ["env=prod", "params.max_depth=8"]],          # a config group, fixed
    [["params.max_depth=4"], ["env=prod", "params.max_depth=4"], ["params.max_depth=5"]],   # ... or not
    [["params.test_size=0.3"], ["params.test_size='0.3'"], ["params.test_size=1e-3"], ["params.test_size=true"],
     ["params.test_size=null"], ["params.test_size=[1,2]"], ["params.test_size=a b"]],  # values of every kind
    [["params.max_depth=4"], ["params.max_depth=${params.n_estimators}"], ["params.max_depth=6"]],
    [["params.max_depth=4"], ["+params.max_depth=5"]],
    [["params.max_depth=4"], ["params.nope=5"]],                 # MLP111: not in the spec
    [["params.max_depth=4"], ["params.max_depth=[1"]],           # MLP110: does not parse
    [["params.max_depth=4"], ["hydra.run.dir=x"]],               # MLP110: Hydra's own settings
])
def test_golden_full(lists: list[list[str]], tmp_path: Path, variants: list[int]) -> None:
    project = tmp_path / "p"
    shutil.copytree(GOLDEN / "full", project, ignore=shutil.ignore_patterns("expected"))
    _check(project / "pipeline.yaml", lists, tmp_path)
    if lists[0] == ["params.n_estimators=100", "params.max_depth=4"] or lists[0][0] == "env=prod":
        assert all(variants) and variants     # derived without Hydra, and the same


def _project(tmp_path: Path, spec: str, files: dict[str, str] | None = None) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pipeline.yaml").write_text(spec)
    for rel, text in (files or {}).items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    return project / "pipeline.yaml"


SPEC = """\
apiVersion: mlprism/v1
name: t
params: {cpu: 1, timeout: 10m, lr: 0.1, name: out}
defaults: [{model: small}, _self_]
steps:
  a:
    run: echo ${params.lr} ${params.size} > ${params.name}.txt
    outputs: ["${params.name}.txt"]
    resources: {cpu: "${params.cpu}"}
    timeout: ${params.timeout}
  b:
    run: cat ${params.name}.txt
    inputs: ["${params.name}.txt"]
"""
GROUPS = {"conf/model/small.yaml": "# @package _global_\nparams: {size: 1}\n",
          "conf/model/big.yaml": "# @package _global_\nparams: {size: 9, lr: 0.5}\n"}


@pytest.mark.parametrize("lists", [
    [["params.lr=0.1"], ["params.lr=0.2"], ["params.lr=0.3"]],
    [["model=big", "params.lr=0.1"], ["model=big", "params.lr=0.2"]],
    [["params.size=2"], ["params.size=3"]],                       # set by the config group, overridden
    [["params.cpu=2"], ["params.cpu=-1"], ["params.cpu=3"]],      # MLP2xx: the second fails validation
    [["params.timeout=5m"], ["params.timeout=soon"]],             # an invalid duration, from an override
    [["params.name=x"], ["params.name=y"], ["params.name=../up"]],  # files change: graph and input checks again
])
def test_config_groups_and_failures(lists: list[list[str]], tmp_path: Path, variants: list[int]) -> None:
    _check(_project(tmp_path, SPEC, GROUPS), lists, tmp_path)
    assert any(variants)                  # derived without Hydra (where it fails, compiled again), and the same


def test_a_param_named_like_a_group_is_composed_by_hydra(tmp_path: Path, variants: list[int]) -> None:
    files = {**GROUPS, "conf/params.lr/fast.yaml": "x: 1\n"}
    _check(_project(tmp_path, SPEC, files), [["params.lr=0.1"], ["params.lr=0.2"]], tmp_path)
    assert not any(variants)


def test_failure_reports_the_first_failing_list(tmp_path: Path, variants: list[int]) -> None:
    spec = _project(tmp_path, SPEC, GROUPS)
    lists = [["params.cpu=2"], ["params.cpu=-1"], ["params.timeout=x"]]
    diags = _together(spec, lists, tmp_path / "s")
    assert [(d.code, "`-1`" in d.message) for d in diags] == [("MLP212", True)]    # the second list's error


def test_a_missing_input_is_reported_from_the_batch_entry(tmp_path: Path, variants: list[int]) -> None:
    project = tmp_path / "p"
    shutil.copytree(GOLDEN / "full", project, ignore=shutil.ignore_patterns("expected"))
    spec = project / "pipeline.yaml"
    lists = [["params.max_depth=4"], ["params.max_depth=8"]]
    _same(_one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b"))
    (project / "src" / "prepare.py").unlink()          # cached pipelines read it: MLP223 now, as one by one
    expected, got = _one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b")
    assert [d.code for d in got] == ["MLP223"] and got == expected


@pytest.mark.parametrize("overrides", [
    ["params.max_depth=4"], ["params.max_depth=5", "+extra.key=1", "~environment.python"], ["env=prod", "name=x"],
    ["+params={a: 1}"], ["params.max_depth=6", "++steps.prepare.run=x"],
])
def test_locate_many_with_a_shared_memo_answers_as_locate(overrides: list[str]) -> None:
    from mlprism._internal.compose import compose, locate
    from mlprism._internal.load import load_file

    spec = GOLDEN / "full" / "pipeline.yaml"
    loaded = load_file(spec, "pipeline.yaml")
    memo: dict[str, Any] = {}
    for ovs in (["params.max_depth=3"], overrides, []):
        composed = compose(spec, ovs, [], display="pipeline.yaml", loaded=loaded)
        dotteds = [*_all_dotted(composed.raw), "nope", "", "steps", "params.max_depth.x", "extra"]
        expected = {d: loc for d in dotteds if (loc := locate(d, composed.overrides, composed.maps)) is not None}
        got = composed.locate_many(dotteds, memo if composed.maps[0] is loaded.source_map else None)
        assert list(got.items()) == list(expected.items())


def test_a_cached_batch_is_not_reused_once_an_override_holds_a_secret(tmp_path: Path, variants: list[int],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _project(tmp_path, "apiVersion: mlprism/v1\nname: s\nenvironment: {secrets: [TOKEN]}\n"
                              "params: {note: none}\nsteps:\n  a: {run: 'echo ${params.note}'}\n")
    lists = [["params.note=tok-0001aa"], ["params.note=tok-0002bb"]]
    monkeypatch.setenv("TOKEN", "tok-old0ne")
    _same(_one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b"))
    monkeypatch.setenv("TOKEN", "tok-0002bb")       # the second list's value is now the secret's
    expected, got = _one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b")
    assert [d.code for d in got] == ["MLP204"] and got == expected


def _names(code: Any) -> set[str]:
    import types

    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def _ir_fields() -> set[str]:
    import dataclasses

    import mlprism.ir as ir

    return {f.name for v in vars(ir).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
            for f in dataclasses.fields(v)} | {"step_names", "step", "environment"}


def test_what_the_shared_input_checks_read_is_in_their_key() -> None:
    """Shared.check_inputs skips the checks for a pipeline whose `_paths_checked` equals one that passed:
    a tripwire for a check that starts reading another field (then add it to `_paths_checked`)."""
    from mlprism._internal.compiler import _paths_checked
    from mlprism._internal.lower import missing_inputs
    from mlprism._internal.validate import escaping_paths

    read = (_names(escaping_paths.__code__) | _names(missing_inputs.__code__)) & _ir_fields()
    keyed = _names(_paths_checked.__code__) | {"monitor"}
    assert read <= keyed, read - keyed


def test_what_the_graph_reads_is_in_its_key() -> None:
    """Shared.build_graph reuses the order and edges for steps with the same names, files and needs."""
    from mlprism._internal import graph

    code = [graph.build.__wrapped__.__code__, graph.infer_edges.__code__, graph.Graph.__init__.__code__,  # type: ignore[attr-defined]
            graph.Graph.topological_order.__code__]
    read = set().union(*(_names(c) for c in code)) & _ir_fields()
    assert read <= {"steps", "step_names", "name", "inputs", "outputs", "metrics", "needs",
                    "source", "target", "kind", "path"}, read      # the last four: of the edges it makes


def test_the_spec_loaded_before_is_reused_only_while_unchanged(tmp_path: Path, variants: list[int]) -> None:
    spec = _project(tmp_path, SPEC, GROUPS)
    lists = [["params.lr=0.1"], ["params.lr=0.2"]]
    load_pipeline_cached(spec, [], state_dir=tmp_path / "b")        # what `mlprism run` compiles first
    _same(_one_by_one(spec, lists, tmp_path / "a"), _together(spec, lists, tmp_path / "b"))
    spec.write_text(SPEC.replace("cpu: 1,", "cpu: 2,").replace("steps:", "description: edited\nsteps:"))
    got = _together(spec, lists, tmp_path / "b")
    _same(_one_by_one(spec, lists, tmp_path / "a"), got)
    assert got[0][0].description == "edited" and got[1][0].steps[0].resources.cpu == "2"
