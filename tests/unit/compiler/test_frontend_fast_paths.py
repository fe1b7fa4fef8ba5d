"""The front end's fast paths give the answers of the plain code they stand in for."""

from __future__ import annotations

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
