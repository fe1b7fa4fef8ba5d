"""Stage 2 — compose: Hydra config groups and overrides, OmegaConf interpolation, no leaking state."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlprism._internal import compose as compose_mod
from mlprism._internal.compose import compose, resolve
from mlprism.diagnostics import DiagnosticError

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"


def write(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    return base / "pipeline.yaml"


PROJECT = {
    "pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        defaults:
          - _self_
          - env: dev
        params:
          lr: 0.1
          rows: 10
          model: {depth: 3}
        steps:
          a:
            run: python a.py --lr ${params.lr} --rows ${params.rows}
            outputs: [a.txt]
          b:
            run: python b.py ${steps.a.outputs.0}
            inputs: [a.txt]
        triggers: {manual: true}
    """,
    "conf/env/dev.yaml": """
        # @package _global_
        params:
          rows: 100
    """,
    "conf/env/prod.yaml": """
        # @package _global_
        params:
          rows: 5000
          model: {depth: 9}
        steps:
          a:
            retries: 2
    """,
}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write(tmp_path / "proj", PROJECT)


def test_group_default_and_self_first(spec: Path) -> None:
    c = compose(spec)
    assert c.config["params"] == {"lr": 0.1, "rows": 100, "model": {"depth": 3}}
    assert c.choices == {"env": "dev"}
    assert c.config["steps"]["a"]["run"] == "python a.py --lr 0.1 --rows 100"
    assert c.config["steps"]["b"]["run"] == "python b.py a.txt"
    assert "defaults" not in c.config


def test_group_override_and_key_overrides(spec: Path) -> None:
    c = compose(spec, ["env=prod", "params.lr=0.5", "+steps.b.retries=3", "~triggers"])
    assert c.config["params"] == {"lr": 0.5, "rows": 5000, "model": {"depth": 9}}
    assert c.config["steps"]["a"]["retries"] == 2
    assert c.config["steps"]["b"]["retries"] == 3
    assert "triggers" not in c.config
    assert c.choices == {"env": "prod"}
    # locations: an override, a group file, the spec
    assert c.locate("params.lr").override == "params.lr=0.5"
    loc = c.locate("params.rows")
    assert (loc.file, loc.line) == ("conf/env/prod.yaml", 3)
    assert c.locate("steps.b.inputs.0").file.endswith("pipeline.yaml")


def test_self_last_means_the_spec_wins(tmp_path: Path) -> None:
    files = dict(PROJECT)
    files["pipeline.yaml"] = files["pipeline.yaml"].replace("- _self_\n          - env: dev",
                                                            "- env: dev\n          - _self_")
    c = compose(write(tmp_path / "p", files))
    assert c.config["params"]["rows"] == 10


def test_locations_in_a_group_placed_with_a_package(tmp_path: Path) -> None:
    """`model@params.model: rf` (and the groups nested in it, `model/optimizer@params.model.optimizer`):
    a key of the option's file is located in that file, not at the nearest ancestor some other file has."""
    spec = write(tmp_path / "p", {
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: demo
            defaults:
              - _self_
              - env: dev
              - model@params.model: rf
            params: {lr: 0.1}
            steps: {a: {run: "echo ${params.model.depth} ${params.model.optimizer.lr}"}}
        """,
        "conf/env/dev.yaml": "# @package _global_\nparams:\n  rows: 1\n",
        "conf/model/rf.yaml": "defaults:\n  - optimizer: sgd\ndepth: 5\n",
        "conf/model/optimizer/sgd.yaml": "name: sgd\nlr: ${params.lr}\n",
    })
    c = compose(spec)
    assert c.config["steps"]["a"]["run"] == "echo 5 0.1"
    loc = c.locate("params.model.depth")
    assert (loc.file, loc.line, loc.col) == ("conf/model/rf.yaml", 3, 8)
    loc = c.locate("params.model.optimizer.lr")
    assert (loc.file, loc.line, loc.col) == ("conf/model/optimizer/sgd.yaml", 2, 5)


def test_hydra_state_does_not_leak_between_compiles(tmp_path: Path) -> None:
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    a = write(tmp_path / "a", PROJECT)
    b = write(tmp_path / "b", {
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: other
            defaults: [_self_, {cluster: big}]
            steps: {x: {run: echo x}}
        """,
        "conf/cluster/big.yaml": "# @package _global_\nparams: {nodes: 8}\n",
    })
    first = compose(a, ["env=prod"]).config
    other = compose(b).config
    again = compose(a, ["env=prod"]).config
    plain = compose(a).config
    assert first == again
    assert other["params"] == {"nodes": 8} and "env" not in json.dumps(other)
    assert plain["params"]["rows"] == 100          # the earlier env=prod did not stick
    assert not GlobalHydra.instance().is_initialized()
    assert not any("mlprism" in k for k in ConfigStore.instance().repo)
    with pytest.raises(DiagnosticError):           # a's group is not visible from b
        compose(b, ["env=prod"])


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compiler_bench", ROOT / "benchmarks" / "compiler_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["minimal", "chain", "mix"])
def test_without_groups_or_overrides_hydra_is_skipped_and_nothing_changes(case: str, tmp_path: Path) -> None:
    if case == "minimal":
        spec = GOLDEN / "minimal" / "pipeline.yaml"
    else:
        spec = _bench().write_spec(tmp_path, case, 40)
        text = spec.read_text().replace("steps:\n", "defaults: [_self_]\nsteps:\n", 1)   # `_self_` alone: identity
        spec.write_text(text)
    fast = compose(spec)
    full = compose(spec, force_hydra=True)
    assert compose_mod.nothing_to_compose(compose_mod.load_file(spec).data, [])
    assert json.dumps(fast.raw) == json.dumps(full.raw)               # same values, same key order
    assert json.dumps(fast.config) == json.dumps(full.config)
    assert (fast.choices, full.choices) == ({}, {})


def _no_collapse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_mod, "_collapse", lambda data, touched, exact: (data, {}))


@pytest.mark.parametrize("overrides", [[], ["env=prod"], ["params.n_estimators=7", "~monitor"],
                                       ["+steps.train.env.X=1", "steps.evaluate.gate.0.min=0.5"]])
def test_collapsing_untouched_subtrees_changes_nothing(overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = GOLDEN / "full" / "pipeline.yaml"
    fast = compose(spec, overrides)
    assert fast.collapsed > 0
    _no_collapse(monkeypatch)
    slow = compose(spec, overrides)
    assert slow.collapsed == 0
    assert json.dumps(fast.raw) == json.dumps(slow.raw)
    assert json.dumps(fast.config) == json.dumps(slow.config)
    assert fast.choices == slow.choices


def test_nothing_collapses_when_touched_keys_are_unknown(tmp_path: Path) -> None:
    files = dict(PROJECT)
    files["conf/env/dev.yaml"] = "# @package _global_\ndefaults: [{/extra: one}]\nparams: {rows: 1}\n"
    files["conf/extra/one.yaml"] = "# @package _global_\nsteps: {a: {retries: 4}}\n"
    c = compose(write(tmp_path / "p", files))
    assert c.collapsed == 0
    assert c.config["steps"]["a"]["retries"] == 4


# -- interpolation ----------------------------------------------------------------------------------

def _omegaconf(raw: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)


SPECIALS = ["$HOME", "{print $1}", "a}b", "50%", "x:y", "$", "${params.i}${params.s}", "$${params.i}", "[${params.f}]",
            "${params.b}", "${params.nested.k}", "${params.list.1}", "${params.list}", "pre ${params.nested} post",
            "\\${params.i}", "${oc.env:MLPRISM_TEST_VAR,fallback}", "${.i}", "${params.alias}", "${ params.i }",
            "${params.none}", "x ${params.none}", "${params.list.0} and ${params.s}"]


@pytest.mark.parametrize("text", SPECIALS)
def test_resolution_matches_omegaconf(text: str) -> None:
    raw = {"params": {"i": 3, "f": 0.1, "b": True, "s": "str", "nested": {"k": 1e-05}, "list": [1, "two"],
                      "alias": "${params.s}", "none": None}, "v": {"i": 9, "t": text}}
    assert resolve(raw, lambda d: None) == _omegaconf(raw)


VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32), st.booleans(),
                   st.text(st.characters(blacklist_characters="${}\\", blacklist_categories=("Cs",)), max_size=8))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), VALUES, min_size=1, max_size=5),
       pieces=st.lists(st.one_of(st.just("REF"), st.text(st.characters(blacklist_characters="${}\\",
                                                                          blacklist_categories=("Cs",)), max_size=6)),
                       min_size=1, max_size=5),
       data=st.data())
def test_resolution_matches_omegaconf_generated(params: dict[str, Any], pieces: list[str], data: Any) -> None:
    names = sorted(params)
    text = "".join("${params." + data.draw(st.sampled_from(names)) + "}" if p == "REF" else p for p in pieces)
    raw = {"params": params, "steps": {"a": {"run": text, "env": {"X": "${params." + names[0] + "}"}}}}
    assert resolve(raw, lambda d: None) == _omegaconf(raw)


def test_unresolvable_interpolation_points_at_its_line_with_a_hint(tmp_path: Path) -> None:
    spec = write(tmp_path / "p", {"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        params: {learning_rate: 0.1}
        steps:
          a:
            run: python a.py ${params.learning_rat}
    """})
    with pytest.raises(DiagnosticError) as exc:
        compose(spec)
    (d,) = exc.value.diagnostics
    assert d.code == "MLP120" and (d.location.line, d.location.col) == (6, 10)
    assert d.hint == "did you mean `${params.learning_rate}`?"


def test_github_expression_is_refused_with_an_escape_hint(tmp_path: Path) -> None:
    spec = write(tmp_path / "p", {"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        steps:
          a: {run: "echo ${{ github.sha }}"}
          b: {run: "echo \\\\${{ github.sha }}"}
    """})
    with pytest.raises(DiagnosticError) as exc:
        compose(spec)
    (d,) = exc.value.diagnostics
    assert d.code == "MLP121" and d.location.line == 4
    assert "\\${" in d.hint


def test_escaped_text_is_kept_literally(tmp_path: Path) -> None:
    spec = write(tmp_path / "p", {"pipeline.yaml": """
        apiVersion: mlprism/v1
        name: demo
        steps:
          b: {run: "echo \\\\${{ github.sha }} \\\\${HOME}"}
    """})
    assert compose(spec).config["steps"]["b"]["run"] == "echo ${{ github.sha }} ${HOME}"


@pytest.mark.parametrize(("overrides", "code", "hint"), [
    (["params.lr=[1,"], "MLP110", None),
    (["params.lrr=1"], "MLP111", "did you mean `params.lr`?"),
    (["env=staging"], "MLP112", "available options for `env`: dev, prod"),
    (["env=prd"], "MLP112", "did you mean `prod`?"),
    (["hydra.job.chdir=true"], "MLP110", None),
    (["~nothing"], "MLP111", None),
    (["~params.lrr"], "MLP111", "did you mean `params.lr`?"),
])
def test_bad_overrides_point_at_the_override(spec: Path, overrides: list[str], code: str, hint: str | None) -> None:
    with pytest.raises(DiagnosticError) as exc:
        compose(spec, overrides)
    d = exc.value.diagnostics[0]
    assert d.code == code
    assert d.location is not None and d.location.override == overrides[0]
    if hint:
        assert d.hint is not None and d.hint.startswith(hint)
    if overrides[0].startswith("~"):
        assert "+" not in (d.hint or ""), d.hint          # adding a key is no answer to deleting one


ONE_PARAM = """
    apiVersion: mlprism/v1
    name: demo
    params: {lr: 0.1}
    steps:
      a: {run: 'echo ${params.lr}'}
"""


@pytest.mark.parametrize("override", ["params.lr=1,2", "params.lr=range(1,3)", "+params.new=a,b"])
def test_a_sweep_without_m_is_the_same_mlp110_for_every_command(override: str, cli, project) -> None:
    root = project({"pipeline.yaml": ONE_PARAM})
    seen = set()
    for command in (["validate"], ["graph"], ["compile", "-t", "local"], ["run"], ["status"]):
        res = cli(*command, "pipeline.yaml", override, cwd=root)
        assert res.code == 2, (command, res.out, res.err)
        seen.add(res.err)
    [err] = seen
    assert err.startswith(f"override `{override}`: error[MLP110]: several values for one key make a sweep\n"), err
    assert f"hint: add -m to run every value (`mlprism run -m {shlex.quote(override)}`)" in err   # (pasteable)


def test_escaped_brackets_are_text_not_nesting(cli, project) -> None:
    # `\(` is Hydra's escape for a literal `(`: 70 of them are one flat string, not 70 levels
    root = project({"pipeline.yaml": ONE_PARAM})
    res = cli("validate", "pipeline.yaml", "+params.x=" + "\\(" * 70, cwd=root)
    assert res.code == 0, res.err


@pytest.mark.parametrize("value", ["[" * 3000 + "]" * 3000, "{a:" * 3000 + "1" + "}" * 3000, "[" * 65 + "]" * 65])
@pytest.mark.parametrize("command", [["validate"], ["graph"], ["compile", "-t", "local"], ["run"], ["run", "-m"]])
def test_an_override_nested_too_deeply_is_mlp103_at_the_override(value: str, command: list[str], cli,
                                                                 project) -> None:
    root = project({"pipeline.yaml": ONE_PARAM})
    override = f"+params.x={value}" + (",1" if "-m" in command else "")      # (-m: a sweep of two values)
    res = cli(*command, "pipeline.yaml", override, cwd=root)
    assert res.code == 2 and "Traceback" not in res.out + res.err and "RecursionError" not in res.err
    assert res.err.startswith(f"override `{override}`: error[MLP103]: the override's value is nested too deeply"), \
        res.err[-300:]
    assert "hint: a value needs a few levels; 64 is the limit" in res.err


@pytest.mark.parametrize("dirname", ["it's a dir", "back\\slash", "dollar${x}", "end\\", "mix\\'${y}"])
def test_config_groups_are_found_whatever_the_directory_is_called(dirname: str, tmp_path: Path) -> None:
    """The conf/ directory reaches Hydra's search path quoted: quotes, backslashes and `${` stay as they are."""
    import shutil

    project = tmp_path / dirname
    shutil.copytree(GOLDEN / "full", project)
    composed = compose(project / "pipeline.yaml", ["env=prod"])
    assert composed.choices == {"env": "prod"}


# -- keys named like a directory beside the spec ---------------------------------------------------
#
# Hydra reads an override whose key names a directory of a search path (the spec's own directory is one)
# as a config-group override: `~data` with a `data/` directory beside the spec was "No match in the
# defaults list". Such a directory is a config group only when used as one.

BESIDE = {
    "pipeline.yaml": """
        apiVersion: mlprism/v1
        name: beside
        params: {lr: 0.1}
        data:
          raw: {path: data/raw.csv}
        steps:
          a: {run: echo a}
    """,
    "data/raw.csv": "x\n",
    "data/schema.yaml": "raw: 1\n",          # a YAML file in data/ does not make it a config group
    "src/train.py": "\n",
    "deploy/base/kustomization.yaml": "resources: []\n",
}


@pytest.mark.parametrize(("overrides", "expected"), [
    (["~data"], {"data": None}),
    (["~data.raw"], {"data": {}}),
    (["~deploy"], {"deploy": None}),                          # (nothing to delete: see the errors below)
    (["data.raw.path=x.csv"], {"data": {"raw": {"path": "x.csv"}}}),
    (["+data.live.path=y.csv"], {"data": {"raw": {"path": "data/raw.csv"}, "live": {"path": "y.csv"}}}),
    (["data={raw: {path: z.csv}}"], {"data": {"raw": {"path": "z.csv"}}}),
    (["+src=1"], {"src": 1}),
    (["++src=two"], {"src": "two"}),
    (["data.raw.path=x.csv", "~data"], {"data": None}),       # in the order written
    (["~data", "+data.raw.path=y.csv"], {"data": {"raw": {"path": "y.csv"}}}),
    (["~data", "params.lr=0.5"], {"data": None, "params": {"lr": 0.5}}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_key_named_like_a_directory_is_a_key(overrides: list[str], expected: dict[str, Any],
                                               tmp_path: Path) -> None:
    spec = write(tmp_path / "p", BESIDE)
    if overrides == ["~deploy"]:
        spec.write_text(spec.read_text() + "deploy: {serve: {port: 8080}}\n")
    c = compose(spec, overrides)
    for key, value in expected.items():
        if value is None:
            assert key not in c.config, c.config
        else:
            assert c.config[key] == value
    assert c.choices == {}
    assert c.locate(overrides[-1].lstrip("+~").split("=")[0]).override == overrides[-1]


@pytest.mark.parametrize(("overrides", "code", "hint"), [
    (["~src"], "MLP111", "`~KEY` deletes a key that exists"),
    (["src=x"], "MLP111", "the spec has no top-level key `src`"),
    (["~data.nope"], "MLP111", "`~KEY` deletes a key that exists"),
    (["+data=x"], "MLP111", "`data` exists already: set it with `data=x`, or add or set it with `++data=x`"),
])
def test_a_key_named_like_a_directory_errors_at_the_override(overrides: list[str], code: str, hint: str | None,
                                                             tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as exc:
        compose(write(tmp_path / "p", BESIDE), overrides)
    d = exc.value.diagnostics[0]
    assert (d.code, d.location.override if d.location else None) == (code, overrides[0]), d.render()
    if hint:
        assert d.hint is not None and d.hint.startswith(hint), d.hint


def test_a_group_placed_with_a_package_is_overridden_by_its_key(tmp_path: Path) -> None:
    """`model=xgb` for `model@params.model: rf`: Hydra's answer (`model@params.model=xgb`) is the hint, not
    `+model=...` (which would add a second, top-level model)."""
    spec = write(tmp_path / "p", {
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: demo
            defaults: [_self_, {model@params.model: rf}]
            steps: {a: {run: "echo ${params.model.depth}"}}
        """,
        "conf/model/rf.yaml": "depth: 5\n",
        "conf/model/xgb.yaml": "depth: 8\n",
    })
    assert compose(spec, ["model@params.model=xgb"]).config["params"]["model"] == {"depth": 8}
    with pytest.raises(DiagnosticError) as exc:
        compose(spec, ["model=xgb"])
    d = exc.value.diagnostics[0]
    assert (d.code, d.location.override) == ("MLP111", "model=xgb")
    assert "`model@params.model=xgb`" in d.hint and "+model" not in d.hint, d.hint


GROUPS_NAMED_LIKE_KEYS = {
    **BESIDE,
    "pipeline.yaml": BESIDE["pipeline.yaml"].replace("name: beside", "name: beside\n        defaults: [_self_, {data: small}]"),
    "conf/data/small.yaml": "# @package _global_\ndata:\n  raw: {path: small.csv}\n",
    "conf/data/big.yaml": "# @package _global_\ndata:\n  raw: {path: big.csv}\n",
    "conf/extra/one.yaml": "# @package _global_\nparams: {lr: 0.9}\n",
}


@pytest.mark.parametrize(("overrides", "choices", "path", "lr"), [
    ([], {"data": "small"}, "small.csv", 0.1),
    (["data=big"], {"data": "big"}, "big.csv", 0.1),
    (["~data"], {}, "data/raw.csv", 0.1),                          # the group leaves the defaults list
    (["data.raw.path=x.csv"], {"data": "small"}, "x.csv", 0.1),
    (["+extra=one"], {"data": "small", "extra": "one"}, "small.csv", 0.9),   # an option file: a group
])
def test_a_config_group_used_as_one_stays_a_config_group(overrides: list[str], choices: dict[str, str], path: str,
                                                         lr: float, tmp_path: Path) -> None:
    c = compose(write(tmp_path / "p", GROUPS_NAMED_LIKE_KEYS), overrides)
    assert c.choices == choices
    assert (c.config["data"]["raw"]["path"], c.config["params"]["lr"]) == (path, lr)


def test_a_group_beside_the_spec_used_by_the_defaults_list_stays_a_group(tmp_path: Path) -> None:
    files = {**BESIDE, "pipeline.yaml": GROUPS_NAMED_LIKE_KEYS["pipeline.yaml"],
             "data/small.yaml": "# @package _global_\ndata:\n  raw: {path: small.csv}\n"}
    spec = write(tmp_path / "p", files)
    assert compose(spec).config["data"]["raw"]["path"] == "small.csv"
    c = compose(spec, ["~data"])
    assert (c.choices, c.config["data"]["raw"]["path"]) == ({}, "data/raw.csv")


def test_a_misspelled_group_in_a_group_files_defaults_is_located_there_with_the_group_beside_it(cli, project) -> None:
    root = project({
        "pipeline.yaml": """
            apiVersion: mlprism/v1
            name: demo
            defaults:
              - _self_
              - model@params.model: rf
            steps:
              a: {run: 'echo ${params.model.depth}'}
        """,
        "conf/model/rf.yaml": "defaults:\n  - optimzer: adam\ndepth: 3\n",
        "conf/model/optimizer/adam.yaml": "lr: 0.1\n",
    })
    res = cli("validate", "pipeline.yaml", cwd=root)
    assert res.code == 2 and res.err.startswith("conf/model/rf.yaml:2:5: error[MLP112]: "), res.err
    assert "hint: did you mean `optimizer` (a config group in `conf/model/`)?" in res.err
