"""The front end's fast paths give the answers of the plain code they stand in for."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
from mlprism._internal.compose import (
    _new_location,
    _strings_with_interp,
    _strings_with_interp_deep,
    compose,
    locate,
)
from mlprism._internal.load import load_file, load_text
from mlprism._internal.lower import collect_locations
from mlprism._internal.validate import resolved_outside
from mlprism.diagnostics import Location

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def _all_dotted(value: Any, prefix: str = "") -> list[str]:
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        dotted = f"{prefix}.{k}" if prefix else str(k)
        out.append(dotted)
        out.extend(_all_dotted(v, dotted))
    return out


@pytest.mark.parametrize(("case", "overrides"), [
    ("full", []), ("full", ["name=other", "+extra.key=1"]), ("full", ["env=prod"]),      # conf/env/prod.yaml
    ("minimal", []), ("minimal", ["name=other", "+extra.key=1"]),
])
def test_locate_many_answers_as_locate(case: str, overrides: list[str]) -> None:
    spec = GOLDEN / case / "pipeline.yaml"
    composed = compose(spec, overrides, [], display="pipeline.yaml", loaded=load_file(spec, "pipeline.yaml"))
    dotteds = [*_all_dotted(composed.raw), "nope", "steps.nope.run", "", "steps"]
    expected = {d: loc for d in dotteds if (loc := locate(d, composed.overrides, composed.maps)) is not None}
    got = composed.locate_many(dotteds)
    assert list(got.items()) == list(expected.items())
    # collect_locations: the bulk path and the one-by-one path agree
    bulk = collect_locations(composed.raw, composed.locate, locate_many=composed.locate_many)
    one_by_one = collect_locations(composed.raw, lambda d: composed.locate(d))
    assert list(bulk.items()) == list(one_by_one.items()) and bulk


def test_collect_locations_with_odd_keys() -> None:
    loaded = load_text('"": {a: 1}\nb: [x, {c: [1, 2]}]\n"d.e": {f: 2}\n', "p.yaml")
    asked: list[str] = []

    def where(dotted: str) -> Location | None:
        asked.append(dotted)
        return loaded.source_map.lookup(dotted)

    out = collect_locations(loaded.data, where)
    assert asked == ["", "a", "b", "b.0", "b.1", "b.1.c", "b.1.c.0", "b.1.c.1", "d.e", "d.e.f"]
    assert out["b.1.c"] == Location("p.yaml", 2, 12)   # the flow list, on the key's line


def test_fast_location_is_a_location() -> None:
    made, plain = _new_location("p.yaml", 3, 4), Location("p.yaml", 3, 4)
    assert type(made) is Location and made == plain and hash(made) == hash(plain) and str(made) == str(plain)
    assert dataclasses.astuple(made) == ("p.yaml", 3, 4, None)


def test_strings_with_interp_recursive_and_deep_agree() -> None:
    data: dict[str, Any] = {"a": "${x}", "b": [1, "${y}", {"c": "no", "d": "${z}"}], "e": {"": "${w}"}}
    node = data
    for _ in range(2500):                      # deeper than the interpreter's recursion limit
        node["n"] = {"s": "${q}", "l": ["${r}", 2]}
        node = node["n"]
    got = _strings_with_interp(data)
    assert got == _strings_with_interp_deep(data, ())
    assert got[:4] == [(("a",), "${x}"), (("b", 1), "${y}"), (("b", 2, "d"), "${z}"), (("e", ""), "${w}")]
    assert _strings_with_interp("${a}") == [((), "${a}")] and _strings_with_interp(3) == []


def _slow_resolved_outside(root: str, rel: str, follow_leaf: bool) -> str | None:
    parent, leaf = os.path.split(os.path.normpath(os.path.join(root, rel)))
    real = os.path.join(os.path.realpath(parent), leaf)
    if follow_leaf and os.path.islink(real):
        real = os.path.realpath(real)
    return None if real == root or real.startswith(root.rstrip("/") + "/") else real


def test_resolved_outside_matches_the_plain_computation(tmp_path: Path) -> None:
    root, outside = tmp_path / "proj", tmp_path / "elsewhere"
    (root / "d" / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "f").write_text("x")
    (root / "d" / "link").symlink_to(outside / "f")
    (root / "out").symlink_to(outside)
    (root / "d" / "in").symlink_to("sub")
    real_root = os.path.realpath(root)
    rels = ["d/link", "d/sub/x", "out/x", "out", "d/in/x", "d/in", "missing/x", "missing", ".", "d/./sub/../link",
            "d//link", "x", "d/sub/", "out/new/deeper"]
    cache: dict[str, str] = {}
    for rel in rels * 2:                         # twice: the memoised answers too
        for follow in (True, False):
            assert resolved_outside(real_root, rel, cache, follow) == _slow_resolved_outside(real_root, rel, follow), rel


def test_source_map_paths_below_an_empty_key_and_merges() -> None:
    loaded = load_text('base: &b {x: 1}\n"": {a: 1, l: [p, {c: 2}]}\nm: {<<: *b, y: 2}\n', "p.yaml")
    keys, values = loaded.source_map.keys, loaded.source_map.values
    assert {".a", ".l", "m.y", "base.x"} <= set(keys) and "a" not in keys
    assert {".l.0", ".l.1", ".l.1.c", "m.x"} <= set(values)
    assert loaded.data == {"base": {"x": 1}, "": {"a": 1, "l": ["p", {"c": 2}]}, "m": {"y": 2, "x": 1}}


def test_resolved_outside_lists_a_directory_read_often(tmp_path: Path) -> None:
    """After a few entries of one directory, the directory is listed once: the answers stay the plain ones,
    with and without a symlink in it (and with one that appears after it was listed)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for d in (root / "plain", root / "links", outside):
        d.mkdir(parents=True)
    (outside / "f").write_text("")
    for i in range(30):
        (root / "plain" / f"f{i}").write_text("")
        (root / "links" / f"f{i}").write_text("")
    (root / "links" / "f20").unlink()
    (root / "links" / "f20").symlink_to(outside / "f")
    real_root = os.path.realpath(root)
    cache: dict[str, Any] = {}
    rels = [f"{d}/f{i}" for i in range(40) for d in ("plain", "links")]
    for rel in rels:
        for follow in (True, False):
            assert resolved_outside(real_root, rel, cache, follow) == _slow_resolved_outside(real_root, rel, follow), rel
    assert resolved_outside(real_root, "links/f20", cache) == os.path.realpath(outside / "f")
    (root / "plain" / "late").symlink_to(outside / "f")      # a new look (a new cache) sees a symlink made since
    assert resolved_outside(real_root, "plain/late", {}) == os.path.realpath(outside / "f")


def test_resolve_copies_only_what_it_changes_under_steps() -> None:
    from mlprism._internal.compose import resolve

    raw = {"params": {"lr": 0.1, "tags": ["a"]},
           "steps": {"a": {"run": "train ${params.lr}", "inputs": ["x"], "env": {"LR": "${params.lr}"}},
                     "b": {"run": "echo", "inputs": ["y"]}},
           "name": "${params.tags}"}
    before = copy.deepcopy(raw)
    config = resolve(raw, lambda dotted: None)
    assert raw == before                                          # raw is left as it was
    assert config["steps"]["a"] == {"run": "train 0.1", "inputs": ["x"], "env": {"LR": 0.1}}
    assert config["name"] == ["a"] and config["name"] is not raw["params"]["tags"]
    assert config["params"] == raw["params"] and config["params"] is not raw["params"]   # copied: it reaches the IR
    assert config["steps"]["a"] is not raw["steps"]["a"] and config["steps"]["b"] is raw["steps"]["b"]


@pytest.mark.parametrize(("text", "found"), [
    ('a: 1\nb: "${a}"\n', [(("b",), "${a}")]),
    ('a: 1\nb: "\\x24{a}"\n', [(("b",), "${a}")]),               # `${` made by an escape
    ("a: 1\nb: $\n  {a}\n", []),                                   # a line break is folded to a space
    ("a: 1\nb: '$ {a}'\n", []),
])
def test_strings_with_interp_of_a_loaded_spec(text: str, found: list[Any]) -> None:
    from mlprism._internal.compose import _loaded_strings_with_interp

    loaded = load_text(text, "p.yaml")
    assert _loaded_strings_with_interp(loaded) == found == _strings_with_interp(loaded.data)


def test_the_front_end_leaves_what_it_built_in_the_oldest_generation() -> None:
    """The objects a front end makes outlive it: a young collection would walk them all for nothing."""
    import gc

    from mlprism._internal.compiler import load_pipeline

    if not gc.isenabled() or gc.get_freeze_count():
        pytest.skip("the collector is off or frozen here")
    gc.collect()
    compiled = load_pipeline(GOLDEN / "full" / "pipeline.yaml")
    assert gc.isenabled()
    young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
    assert young < 1_000, young          # (a collection after the pause would have moved ~40,000 into generation 1)
    assert compiled.pipeline.steps


def test_a_front_end_during_a_run_does_not_count_the_frozen_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """gc.get_freeze_count() walks every frozen object: while a run holds its heap frozen, the front end
    (once per sweep combination) must not ask it, nor unfreeze what the run froze."""
    import gc

    from mlprism._internal import load
    from mlprism._internal.compiler import load_pipeline
    from mlprism.runtime.executor import _gc_paused_for_old_objects

    if not gc.isenabled() or gc.get_freeze_count():
        pytest.skip("the collector is off or frozen here")
    asked: list[int] = []
    real = gc.get_freeze_count

    class Gc:
        def __getattr__(self, name: str) -> Any:
            return getattr(gc, name)

        @staticmethod
        def get_freeze_count() -> int:
            asked.append(1)
            return real()

    with _gc_paused_for_old_objects():
        frozen = real()
        monkeypatch.setattr(load, "gc", Gc())
        for _ in range(3):
            assert load_pipeline(GOLDEN / "full" / "pipeline.yaml").pipeline.steps
        monkeypatch.undo()
        assert frozen > 0 and real() > 0     # the run's objects are still frozen
    assert not asked, f"get_freeze_count asked {len(asked)} times during a run"
    assert real() == 0
    assert load_pipeline(GOLDEN / "full" / "pipeline.yaml").pipeline.steps   # and works after it


def test_a_plain_path_has_no_path_problem() -> None:
    """path_problem() answers a path of plain characters without `..` without its rules: they find nothing."""
    import random

    from mlprism._internal.validate import _PLAIN_PATH, _path_problem_by_rules, path_problem

    rng = random.Random(7)
    alphabet = "ab_09.-/~\\:\x00\t C"
    plain = 0
    for _ in range(20_000):
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        if _PLAIN_PATH(path) and ".." not in path:
            plain += 1
            assert _path_problem_by_rules(path) is None and path_problem(path) is None, path
    assert plain > 500
