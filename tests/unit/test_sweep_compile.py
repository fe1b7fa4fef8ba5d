"""Overrides that only set existing values (a sweep's combinations) are composed without Hydra.

`compose.set_existing_values` must give exactly what Hydra gives (the same raw and resolved config,
the same IR, the same diagnostics) and hand everything else to Hydra; `compose.simple_override` must
read each value as Hydra's own override parser does.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlprism._internal import compose as compose_mod
from mlprism._internal.compiler import load_pipeline
from mlprism._internal.compose import compose, simple_override
from mlprism._internal.overrides import hydra_value
from mlprism.diagnostics import DiagnosticError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


# -- the override parser's part -------------------------------------------------------------------

def _hydra(override: str) -> Any:
    """(key, value) as Hydra parses a plain change `KEY=VALUE`; None for anything else or an error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except Exception:
        return None
    if (parsed.type.name != "CHANGE" or parsed.package is not None or parsed.value_type is None
            or parsed.value_type.name != "ELEMENT"):
        return None
    return str(parsed.key_or_group), parsed.value()


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


VALUES = ["1", "-1", "+1", "0", "-0", "00", "01", "1_000", "1__0", "1_", "1.5", "1.", ".5", "-.5", "1.5.2", "1e5", "1E-5",
          "1.0e-05", "1e", "1e+", "1_0.5_5", "inf", "-inf", "+Inf", "NaN", "-nan", "infinity", "nan_x", "true", "TRUE",
          "False", "tRuE", "trueish", "null", "NULL", "abc", "a-b", "_x", "_", "x1", "info", "1abc", "0x10", "data/x.csv",
          "./a", "a:b", ":", "-", "+", ".", "/", "%", "a%b", "a|b", "@x", "?", "*", "a*b", "-abc", "a.b.c",
          "'0.3'", '"a b"', "''", '""', "'it''s'", "'a\\'b'", "'${x}'", "'a,b'", '"x\'y"', "a b", " a", "a ", "[1,2]",
          "{a:1}", "1,2", "${x}", "$x", "a\\,b", "x=y", "range(1,3)", "choice(a,b)", "", "é", "a~b", "a#b", "'a", "a'",
          "a!", "a&b", "a;b"]


@pytest.mark.parametrize("text", VALUES)
def test_a_value_is_read_as_hydra_reads_it(text: str) -> None:
    got = simple_override(f"params.x={text}")
    if got is not None:
        expected = _hydra(f"params.x={text}")
        assert expected is not None and expected[0] == got[0] and _same_value(got[1], expected[1]), (got, expected)


def test_the_common_values_are_read_without_hydra() -> None:
    for text, value in [("1", 1), ("-3", -3), ("0.5", 0.5), ("1.0e-05", 1e-05), ("inf", math.inf), ("true", True),
                        ("False", False), ("adam", "adam"), ("data/x.csv", "data/x.csv"), ("'0.3'", "0.3"),
                        ("1_000", 1000), ("00", "00"), ("1.5.2", "1.5.2")]:
        assert simple_override(f"params.a-b.c_d={text}") == ("params.a-b.c_d", value), text


@pytest.mark.parametrize("override", ["+params.x=1", "++params.x=1", "~params.x", "~params.x=1", "params.x@y=1",
                                      "params/x=1", "1x=1", "params..x=1", ".x=1", "x.=1", "=1", "params.x",
                                      "hydra.run.dir=x", "hydra=1", "params.$x=1", "params.x=null", " params.x=1"])
def test_other_overrides_are_left_to_hydra(override: str) -> None:
    assert simple_override(override) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="aeEfinNtrulsx019_-+./:%*@?|'\" ,$\\{}[]()=~", max_size=8))
def test_any_value_read_without_hydra_is_hydras(text: str) -> None:
    test_a_value_is_read_as_hydra_reads_it(text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.floats(), st.booleans(),
                 st.text(alphabet="abcXYZ019_-./: '\"", max_size=6)))
def test_what_a_sweep_writes_is_read_back(value: Any) -> None:
    got = simple_override(f"params.v={hydra_value(value)}")
    if got is not None:
        assert _same_value(got[1], value), (hydra_value(value), got)


# -- composition ----------------------------------------------------------------------------------

SPEC = """\
apiVersion: mlprism/v1
name: t
description: "${name} at ${params.lr}"
params:
  lr: 0.1
  alpha: 1
  name: out
  flag: true
  alias: ${params.lr}
  empty: {}
  model: {depth: 3, layers: [1, 2], deep: {a: {b: 4}}}
  text: "a\\\\b"
steps:
  a:
    run: echo ${params.lr} ${params.alpha} ${params.alias} ${params.model.depth} > ${params.name}.txt
    outputs: ["${params.name}.txt"]
    resources: {cpu: 1}
    retries: 1
  b:
    run: cat ${params.name}.txt && echo ${params.flag}
    inputs: ["${params.name}.txt"]
    env: {MODE: "x ${params.alpha}"}
"""


def _project(tmp_path: Path, spec: str = SPEC, files: dict[str, str] | None = None) -> Path:
    project = tmp_path / "p"
    project.mkdir(exist_ok=True)
    (project / "pipeline.yaml").write_text(textwrap.dedent(spec))
    for rel, text in (files or {}).items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    return project / "pipeline.yaml"


@pytest.fixture
def hydra_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each composition Hydra did (a spy on compose._hydra_compose; it still runs)."""
    calls: list[Any] = []
    real = compose_mod._hydra_compose

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(compose_mod, "_hydra_compose", spy)
    return calls


def _outcome(spec: Path, overrides: list[str], **kwargs: Any) -> Any:
    try:
        c = compose(spec, overrides, **kwargs)
    except DiagnosticError as exc:
        return exc.diagnostics
    return (json.dumps(c.raw), json.dumps(c.config), c.choices, c.overrides, [m.file for m in c.maps],
            [({k: m.lookup(k, "key") for k in m.keys}, {k: m.lookup(k, "value") for k in m.values}, m.block)
             for m in c.maps], c.warnings)


def _same_as_hydra(spec: Path, overrides: list[str], hydra_calls: list[Any]) -> bool:
    """compose() as it is == compose() through Hydra; True if the first went through Hydra too."""
    hydra_calls.clear()
    got = _outcome(spec, overrides)
    used_hydra = bool(hydra_calls)
    expected = _outcome(spec, overrides, force_hydra=True)
    assert got == expected
    return used_hydra


def _mix(tmp_path: Path, n: int = 40) -> Path:
    out = tmp_path / "mix"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "specs.py"), "mix", str(n), "--project", str(out)],
                   check=True, capture_output=True)
    return out / "pipeline.yaml"


@pytest.mark.parametrize("overrides", [
    ["params.alpha=2"], ["params.alpha=2", "params.lr=0.5"], ["params.lr=abc"], ["params.lr='0.5'"],
    ["params.alpha=1e-3"], ["params.flag=FALSE"], ["params.name=data/x.csv"], ["params.alias=7"],
    ["params.model.depth=9"], ["params.text=z"], ["name=other"], ["description=plain"], ["steps.a.retries=3"],
    ["steps.a.resources.cpu=2", "params.alpha=-1"], ["params.lr=inf"], ["params.name=a:b"],
])
def test_setting_existing_values_gives_what_hydra_gives(overrides: list[str], tmp_path: Path,
                                                        hydra_calls: list[Any]) -> None:
    assert not _same_as_hydra(_project(tmp_path), overrides, hydra_calls)     # ... without Hydra


def test_the_benchmark_sweep_and_the_minimal_example(tmp_path: Path, hydra_calls: list[Any]) -> None:
    mix = _mix(tmp_path)
    for alpha in (1, 2, 3):
        assert not _same_as_hydra(mix, [f"params.alpha={alpha}"], hydra_calls)
    assert not _same_as_hydra(GOLDEN / "minimal" / "pipeline.yaml", ["params.greeting=hi"], hydra_calls)


@pytest.mark.parametrize(("case", "overrides"), [
    ("plain", ["+params.new=1"]),                      # adds a key
    ("plain", ["++params.alpha=1"]),
    ("plain", ["~params.alpha"]),                      # deletes one
    ("plain", ["params.nope=1"]),                      # MLP111: no such key
    ("plain", ["params.model.nope.x=1"]),
    ("plain", ["params.model=1"]),                     # a mapping, not a scalar
    ("plain", ["params.model.layers=1"]),              # a list
    ("plain", ["params.lr=[1,2]"]),                    # not a scalar value
    ("plain", ["params.lr=null"]),
    ("plain", ["params.lr=${params.alpha}"]),
    ("plain", ["params.lr=a b"]),
    ("plain", ["params.alpha=1", "params.alpha=2"]),   # the same key twice
    ("plain", ["params.model=1", "params.model.depth=2"]),
    ("plain", ["params.lr=[1"]),                       # MLP110: does not parse
    ("plain", ["hydra.run.dir=x"]),                    # MLP110: Hydra's own settings
    ("plain", ["=1"]),
    ("defaults", ["params.alpha=2"]),                  # a defaults list: config groups
    ("group-dir", ["params.lr=0.2"]),                  # a directory named like the key: could be a group
    ("resolver", ["params.alpha=2"]),                  # `${oc.env:…}`: some resolvers come with Hydra
    ("missing", ["params.alpha=2"]),                   # `???` goes through OmegaConf
    ("odd-key", ["params.alpha=2"]),                   # a key OmegaConf may not give back as it is
    ("int-key", ["params.alpha=2"]),
])
def test_everything_else_is_composed_by_hydra(case: str, overrides: list[str], tmp_path: Path,
                                              hydra_calls: list[Any]) -> None:
    spec, files = SPEC, {}
    if case == "defaults":
        spec = SPEC.replace("params:\n", "defaults: [_self_]\nparams:\n", 1)
    elif case == "group-dir":
        files = {"conf/params.lr/fast.yaml": "x: 1\n"}
    elif case == "resolver":
        spec = SPEC.replace("cat ${params.name}.txt", "cat ${params.name}.txt ${oc.env:MLPRISM_NOPE,x}")
    elif case == "missing":
        spec = SPEC.replace("  name: out\n", "  name: out\n  later: ???\n")
    elif case == "odd-key":
        spec = SPEC.replace("  name: out\n", "  name: out\n  my.key: 1\n")
    elif case == "int-key":
        spec = SPEC.replace("  name: out\n", "  name: out\n  1: one\n")
    path = _project(tmp_path, spec, files)
    used_hydra = _same_as_hydra(path, overrides, hydra_calls)
    parses = all(simple_override(o) is not None for o in overrides)
    assert used_hydra or not parses


def _ir(spec: Path, overrides: list[str]) -> Any:
    try:
        p = load_pipeline(spec, overrides, check_inputs=False).pipeline
    except DiagnosticError as exc:
        return exc.diagnostics
    return p, p.to_json(), list(p.locations.items()), json.dumps(p.params)


@pytest.mark.parametrize("overrides", [
    ["params.alpha=3"], ["params.lr=0.5", "params.name=x"], ["params.alias=0.2"],
    ["steps.a.resources.cpu=-1"],                     # invalid: the same diagnostic, located at the override
    ["steps.a.retries=many"], ["params.name=../up"],
])
def test_the_same_pipeline_and_diagnostics_as_through_hydra(overrides: list[str], tmp_path: Path,
                                                            hydra_calls: list[Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _project(tmp_path)
    got = _ir(spec, overrides)
    assert not hydra_calls
    monkeypatch.setattr(compose_mod, "simple_overrides", lambda overrides: None)     # as before: all through Hydra
    expected = _ir(spec, overrides)
    assert hydra_calls
    assert got == expected


def test_a_sweep_compiles_without_importing_hydra(tmp_path: Path) -> None:
    mix = _mix(tmp_path, 30)
    code = textwrap.dedent(f"""
        import sys
        from mlprism.runtime.ircache import load_pipeline_cached, load_pipelines_cached
        base, _ = load_pipeline_cached({str(mix)!r})
        got = load_pipelines_cached({str(mix)!r}, [["params.alpha=1"], ["params.alpha=2"], ["params.alpha=3"]])
        assert [p.params["alpha"] for p, _ in got] == [1, 2, 3], got
        assert not [m for m in sys.modules if m.split(".")[0] in ("hydra", "omegaconf", "antlr4")]
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"MLPRISM_NO_IR_CACHE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.stdout.strip() == "ok", proc.stderr


SHARED_LISTS = [[], ["params.alpha=2"], ["params.alpha=3", "params.lr=0.5"], ["params.model.deep.a.b=5"],
                ["params.lr=0.5", "params.alpha=3"], ["steps.a.resources.cpu=2", "steps.a.retries=4"], ["name=x"],
                ["+params.new=1"], ["params.alpha=4"], []]


def _plain(result: Any) -> Any:
    p = result.pipeline
    return p, p.to_json(), list(p.locations.items()), result.warnings


def test_compiling_with_a_shared_object_gives_what_compiling_alone_gives(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared (a sweep's combinations): the keys' locations are collected once, each override's set over them."""
    from mlprism._internal import compiler as compiler_mod
    from mlprism._internal.compiler import Shared

    spec = _project(tmp_path)
    alone = [_plain(load_pipeline(spec, o, check_inputs=False)) for o in SHARED_LISTS]
    collected: list[Any] = []
    real = compiler_mod.collect_locations
    monkeypatch.setattr(compiler_mod, "collect_locations", lambda *a, **k: collected.append(a) or real(*a, **k))
    shared = Shared()
    together = [_plain(load_pipeline(spec, o, check_inputs=False, shared=shared)) for o in SHARED_LISTS]
    assert together == alone
    assert len(collected) == 2          # the spec's keys, and once more for the one composed by Hydra (+params.new)
    monkeypatch.undo()
    # what a sweep does: `mlprism run` compiles the spec, then the sweep its combinations (the keys are kept)
    from mlprism.runtime.ircache import load_pipeline_cached, load_pipelines_cached

    monkeypatch.setenv("MLPRISM_NO_IR_CACHE", "1")
    base, _ = load_pipeline_cached(spec, [])
    got = load_pipelines_cached(spec, SHARED_LISTS[1:5])
    assert [(p, list(p.locations.items())) for p, _ in got] == [(a[0], a[2]) for a in alone[1:5]]
    assert base == alone[0][0]


_PLAIN_SCALARS = st.one_of(st.integers(-3, 3), st.floats(allow_nan=False, width=32), st.booleans(),
                           st.sampled_from(["x", "", "1", "true", "a b", "${params.k0}", "${name}", "a\\b"]))
_OTHER_SCALARS = st.sampled_from([None, "???", "${params.k9}", "${oc.env:HOME}"])     # through Hydra
_SCALARS = st.one_of(_PLAIN_SCALARS, _PLAIN_SCALARS, _PLAIN_SCALARS, _PLAIN_SCALARS, _OTHER_SCALARS)
_OVERRIDE_VALUES = st.sampled_from(["1", "-2", "0.5", "1.0e-05", "inf", "true", "False", "abc", "data/x.csv",
                                    "'0.3'", "''", "a:b", "null", "[1]", "a b", "${params.k0}"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["k0", "k1", "k2", "k-3", "_k4"]), _SCALARS, min_size=1, max_size=4),
       odd=st.sampled_from([None, None, None, None, None, "my.key", "5", "sub"]), nested=st.booleans(),
       overrides=st.lists(st.tuples(st.sampled_from(["params.k0", "params.k1", "params.k2", "params.k-3", "params.k0",
                                                     "params.k1", "params.nope", "params.sub.v", "params", "name"]),
                                    _OVERRIDE_VALUES), min_size=1, max_size=3))
def test_any_params_and_overrides_compose_as_through_hydra(tmp_path_factory: pytest.TempPathFactory,
                                                           params: dict[str, Any], odd: str | None, nested: bool,
                                                           overrides: list[tuple[str, str]]) -> None:
    import yaml

    doc: dict[str, Any] = {"apiVersion": "mlprism/v1", "name": "h", "params": dict(params)}
    if odd:
        doc["params"][int(odd) if odd.isdigit() else odd] = 1 if odd != "sub" else {}
    if nested:
        doc["params"]["sub"] = {"v": 1, "w": "${params.sub.v}"}
    doc["steps"] = {"a": {"run": "echo ${params.k0}" + (" ${params.sub.v}" if nested else "")}}
    project = tmp_path_factory.mktemp("h")
    spec = project / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    ovs = [f"{k}={v}" for k, v in overrides]
    assert _outcome(spec, ovs) == _outcome(spec, ovs, force_hydra=True)


def test_a_batch_entry_shares_what_the_combinations_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ircache._shared_parts: equal pipelines, whose equal parts are the first one's objects (written once)."""
    import dataclasses

    from mlprism.runtime import ircache

    monkeypatch.setenv("MLPRISM_NO_IR_CACHE", "1")
    spec = _project(tmp_path)
    lists = [["params.alpha=3"], ["params.alpha=2"], ["params.lr=0.5", "name=y"]]
    compiled = [p for p, _ in ircache.load_pipelines_cached(spec, lists, check_inputs=False)]
    alone = load_pipeline(spec, ["params.alpha=3"], check_inputs=False).pipeline      # nothing shared with the others
    reordered = dataclasses.replace(alone, steps=alone.steps[::-1],
                                    locations=dict(reversed(list(alone.locations.items()))))
    pipelines = [compiled[0], compiled[1], compiled[2], alone, reordered]
    shared = ircache._shared_parts(pipelines)
    assert shared == pipelines
    assert [list(p.locations.items()) for p in shared] == [list(p.locations.items()) for p in pipelines]
    first = shared[0]
    for p in shared[1:]:
        by_name = {s.name: s for s in first.steps}
        assert all(s is by_name[s.name] for s in p.steps if s == by_name[s.name])
        assert all(loc is first.locations[k] for k, loc in p.locations.items()
                   if k in first.locations and loc == first.locations[k])
    assert shared[3].steps[0] is first.steps[0] and shared[3].steps != compiled[1].steps
    assert shared[4].steps[0] is first.steps[-1]           # found by name when the order differs
