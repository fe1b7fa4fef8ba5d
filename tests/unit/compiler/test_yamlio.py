"""The fast YAML paths (libyaml, direct writer) write exactly what PyYAML's pure-Python dumper writes.

`dump_yaml` picks the fastest path that is known to agree with the pure-Python reference
(`_Dumper`); these tests hold the paths equal on generated data full of the cases where
libyaml and the Python emitter are known to differ (non-BMP characters, other line breaks,
byte-order marks, long or empty keys, long strings, `|` literals, trailing spaces), and check
that the fast paths are really taken on ordinary data (so the equality is not vacuous).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlprism._internal import yamlio
from mlprism._internal.yamlio import (
    _FAST_PLAIN,
    _KW,
    _YAML12_NON_STRING,
    _comment_by_scan,
    _dump_c,
    _dump_direct,
    _Dumper,
    _literal_parts,
    _plain_text,
    dump_yaml,
)

PINS = {"actions/checkout@0123456789abcdef0123456789abcdef01234567": "v4.2.2", "o/r/sub@1234": "v2"}

_TRICKY = ["", " ", "\n", "\r", "\r\n", "\t", "\x85", "\u2028", "\u2029", "\ufeff", "\U0001f600", "#", ": ",
           "- ", "'", '"', "\\", "${{ x }}", "${a.b}", "~", "null", "true", "no", "0x1f", "1e3", ".inf", "-",
           "? ", "|", ">", "&a", "*a", "!tag", "%", "@", "`", "é", "中", "uses", "a" * 130]
_pieces = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12),
                    st.text(alphabet="ab \n", min_size=1, max_size=40))
strings = st.lists(_pieces, max_size=6).map("".join) | st.sampled_from(list(PINS))
long_strings = st.integers(min_value=2000, max_value=2600).flatmap(
    lambda n: st.sampled_from(["x" * n, ("word " * n)[:n], ("a\n" * n)[:n]]))
scalars = st.one_of(strings, long_strings, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
keys = st.one_of(strings, st.sampled_from(["name", "uses", "run", "with", "a" * 200]))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


def reference(value: Any, comments: dict[str, str] | None) -> str:
    text = yaml.dump(value, Dumper=_Dumper, **_KW)
    return _comment_by_scan(text, comments) if comments else text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=data, with_comments=st.booleans())
def test_every_path_writes_the_reference_bytes(value: Any, with_comments: bool) -> None:
    comments = PINS if with_comments else None
    assert dump_yaml(value, comments=comments) == reference(value, comments)


@settings(max_examples=200, deadline=None)
@given(value=st.dictionaries(keys, data, max_size=5))
def test_the_fast_paths_alone_agree_when_they_answer(value: dict[str, Any]) -> None:
    for path in (_dump_direct, _dump_c):
        out = path(value, PINS)
        if out is not None:
            assert out == reference(value, PINS), path.__name__


def test_ordinary_workflow_data_takes_the_fast_path() -> None:
    workflow = {"name": "train", "on": {"push": {"branches": ["main"]}},
                "jobs": {"train": {"runs-on": "ubuntu-24.04", "timeout-minutes": 30,
                                   "steps": [{"uses": next(iter(PINS))},
                                             {"run": "mlprism run pipeline.yaml --only train\necho done\n"}]}}}
    assert _dump_direct(workflow, PINS) is not None
    text = dump_yaml(workflow, comments=PINS)
    assert text == reference(workflow, PINS)
    assert f"uses: {next(iter(PINS))} # v4.2.2\n" in text


def test_data_the_c_emitter_writes_differently_goes_to_the_python_dumper() -> None:
    for value in ({"k": "smile \U0001f600"}, {"k": "a\u2028b"}, {"": 1}, {"k": "\ufeffx"}):
        assert _dump_direct(value, None) is None and _dump_c(value, None) is None, value
        assert dump_yaml(value) == reference(value, None)


# --- the direct writer's own scalar texts (no libyaml): plain words and `|` literals -------------

_WORD_CHARS = "aZ_$/09.-{}()@+=*~"
_NEAR_MISS = ":#,[]'\"\\!&|>%`?<\t\xa0é"
candidates = st.one_of(
    st.from_regex(r"[A-Za-z_$/][A-Za-z0-9_./${}()@+=*~-]*(?: [A-Za-z0-9_./${}()@+=*~-]+)*", fullmatch=True),
    st.text(alphabet=_WORD_CHARS + _NEAR_MISS + " yesnoNOtruenull", min_size=1, max_size=14),
    st.sampled_from(["y", "Y", "n", "N", "yes", "No", "ON", "off", "Off", "true", "False", "null", "NULL", "~",
                     "_", "$", "/", "a-", "a -b", "a - b", "${{ x }}", "${{ !x }}", "a=b", "a{", "a}"]),
)


@settings(max_examples=300, deadline=None)
@given(value=candidates)
def test_a_string_the_writer_calls_plain_is_written_as_itself_by_the_python_dumper(value: str) -> None:
    if _plain_text(value):
        assert yaml.dump([value], Dumper=_Dumper, **_KW) == f"- {value}\n"
        if len(value) < 120:      # a longer key is not a simple key: never written by the direct writer
            assert yaml.dump({value: value}, Dumper=_Dumper, **_KW) == f"{value}: {value}\n"
    for doc in ({value: [value, {value: value}]}, [{"k": value}, value]):
        assert dump_yaml(doc, comments=PINS) == reference(doc, PINS)


_line = st.text(alphabet="ab #:'\"-\t\xa0é中\u3000", max_size=8)
multiline = st.lists(_line, min_size=2, max_size=6).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(value=multiline, depth=st.integers(min_value=0, max_value=3))
def test_a_literal_the_writer_builds_is_the_python_dumpers(value: str, depth: int) -> None:
    doc: Any = {"run": value, "steps": [value, {"x": value}]}
    for _ in range(depth):
        doc = {"k": [doc]}
    assert dump_yaml(doc) == reference(doc, None)
    parts = _literal_parts(value)
    if parts is not None:
        assert _dump_direct([value], None) == reference([value], None)


def test_the_plain_fast_path_cannot_start_where_a_resolver_other_than_bool_or_null_does() -> None:
    # PyYAML picks implicit resolvers by the first character; the words those may read as
    # non-strings are exactly a list of words, all quoted by _YAML12_NON_STRING (which
    # _plain_text excludes). A PyYAML that changed this table fails here, not in a workflow.
    table = _Dumper.yaml_implicit_resolvers
    assert None not in table
    for first, resolvers in table.items():
        if not _FAST_PLAIN.match(first):
            continue
        for tag, regexp in resolvers:
            assert tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"), (first, tag)
            pattern = re.sub(r"\s", "", regexp.pattern)
            assert re.fullmatch(r"\^\(\?:[A-Za-z~|]*\)\$", pattern), pattern
            for word in pattern[4:-2].split("|"):
                assert word == "" or _YAML12_NON_STRING.match(word), word


def test_plain_words_and_literals_need_no_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    def unused(values: list[str]) -> None:
        raise AssertionError(f"libyaml asked for {values!r}")

    monkeypatch.setattr(yamlio, "_render", unused)
    doc = {"jobs": {f"s{i}": {"name": f"Run s{i}", "needs": [f"s{i - 1}"], "timeout-minutes": 30,
                              "if": "${{ always() }}", "run": f"tar -xf s{i}.tar\nmlprism run --only s{i}\n",
                              "with": {"path": f"out/s{i}.txt", "flag": True, "ratio": 0.5, "none": None}}
                     for i in range(3)}}
    assert _dump_direct(doc, PINS) == reference(doc, PINS)


# --- long scalars: folded at the width by neither emitter, or left to the Python dumper ----------

def _long(kind: str, n: int) -> str:
    return {"plain": "x" * n, "spaced": ("word " * n)[:n].strip(), "single": "'" + "x" * n,
            "single-spaced": ("'a b: " * n)[:n], "double": "x" * n + "\t" + "y" * 8,
            "double-spaced": ("a\tb " * n)[:n], "json": '{"a": "' + "b" * n + '"}'}[kind]


@settings(max_examples=120, deadline=None)
@given(kind=st.sampled_from(["plain", "spaced", "single", "single-spaced", "double", "double-spaced", "json"]),
       n=st.integers(min_value=2000, max_value=4300), depth=st.integers(min_value=0, max_value=150),
       in_sequence=st.booleans())
def test_long_scalars_at_any_column_give_the_reference_bytes(kind: str, n: int, depth: int,
                                                             in_sequence: bool) -> None:
    value = _long(kind, n)
    doc: Any = [value] if in_sequence else {"key": value}
    for _ in range(depth):
        doc = {"k": doc}
    expected = reference(doc, None)
    assert dump_yaml(doc) == expected
    out = _dump_direct(doc, None)
    assert out is None or out == expected


def test_a_long_json_select_stays_on_the_direct_path() -> None:
    # the sweep's select spec in a Kubernetes workflow: once a 2,460-character string sent the
    # whole document to the pure-Python dumper
    select = json.dumps({"metric": "accuracy", "goal": "max", "metrics": [f"metrics/s{i}.json" for i in range(120)]})
    assert len(select) > 2048
    doc = {"spec": {"templates": [{"name": "select", "inputs": {"parameters": [{"name": "select", "value": select}]}}]}}
    out = _dump_direct(doc, None)
    assert out is not None and out == reference(doc, None)
    spaced = {"k": "word " * 600}         # 3,000 characters at column 3: nothing to fold
    assert _dump_direct(spaced, None) == reference(spaced, None)


def test_a_pin_after_a_quoted_line_break_character_is_commented_on_its_own_line() -> None:
    # the scanner counts NEL/LS/PS in a quoted scalar as line breaks: its line numbers are not
    # the text's lines (this once raised IndexError or commented the wrong line)
    pin = next(iter(PINS))
    for odd in ("\x85", "\u2028", "\u2029", "a\x85b"):
        text = dump_yaml([odd, [odd, pin], {"uses": pin}], comments=PINS)
        assert text.endswith(f"  - {pin} # v4.2.2\n- uses: {pin} # v4.2.2\n"), text
        assert text.count("# v4.2.2") == 2


# --- a collection the data holds more than once: written again from its first text -------------

_small = st.recursive(st.one_of(strings, st.integers(), st.booleans(), st.none()),
                      lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
                      max_leaves=8)
containers = st.one_of(st.lists(_small, min_size=1, max_size=3), st.dictionaries(keys, _small, min_size=1, max_size=3))


def _reusing(sub: Any) -> list[Any]:
    """Documents holding `sub` (one object) at several places: the same column and place, others, nested."""
    return [
        {"a": sub, "b": sub, "c": {"d": sub, "e": sub}},             # mapping values, two columns
        [sub, sub, [sub, sub], {"k": sub}],                          # sequence items, nested sequence
        {"steps": [sub, {"x": 1}, sub], "jobs": {"j": {"steps": [sub, sub]}}, "last": sub},
        [{"k": sub, "l": [sub]}, {"k": sub, "l": [sub]}],
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sub=containers, with_comments=st.booleans())
def test_a_collection_met_again_is_written_as_the_reference_writes_it(sub: Any, with_comments: bool) -> None:
    # the reference count only says where to look a collection up; the bytes must not depend on it
    comments = PINS if with_comments else None
    docs = _reusing(sub)
    expected = [reference(doc, comments) for doc in docs]
    real = yamlio._refs
    try:
        for refs in (real, lambda obj: 0, lambda obj: 1 << 30):    # as counted, never shared, always
            yamlio._refs = refs
            for doc, text in zip(docs, expected, strict=True):
                assert dump_yaml(doc, comments=comments) == text
                out = _dump_direct(doc, comments)
                assert out is None or out == text
    finally:
        yamlio._refs = real


def test_shared_steps_take_the_reuse_path_and_keep_their_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = {"name": "Check out", "uses": next(iter(PINS)), "with": {"persist-credentials": False}}
    script = {"name": "Run", "run": "echo one\necho two\n", "env": {"A": "${{ secrets.A }}"}}  # a slot: libyaml
    doc = {"jobs": {f"j{i}": {"steps": [checkout, script, {"name": f"own {i}"}]} for i in range(3)},
           "other": {"deeper": {"steps": [checkout, script]}}, "flat": checkout, "seq": [[checkout]]}
    calls: list[int] = []
    real = yamlio._refs

    def counting(obj: Any) -> int:
        calls.append(id(obj))
        return int(real(obj))

    monkeypatch.setattr(yamlio, "_refs", counting)
    out = _dump_direct(doc, PINS)
    assert out == reference(doc, PINS)
    assert id(checkout) in calls           # the writer asked, and the shared step was looked up
    assert out.count("uses: " + next(iter(PINS)) + " # v4.2.2\n") == 6


def test_a_collection_holding_itself_still_fails_as_the_reference_does() -> None:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    assert _dump_direct({"x": loop, "y": loop}, None) is None


def test_the_writer_leaves_nothing_for_the_cyclic_collector_but_its_own_few_functions() -> None:
    """Its nested writers refer to one another; what they held (one entry per collection met, per slot)
    is cleared when the text is made, so a big workflow does not leave ~100,000 objects for the next pass
    of the collector to walk (docs/performance.md, sixth round)."""
    import gc

    shared = {"name": "Check out", "uses": next(iter(PINS)), "with": {"persist-credentials": False}}
    doc = {"jobs": {f"j{i}": {"needs": [f"j{i - 1}"], "steps": [shared, {"run": f"echo {i}\nmore\n"},
                                                               {"env": {"A": "${{ secrets.A }}"}}]}
                    for i in range(2000)}}
    gc.collect()
    gc.disable()
    try:
        out = _dump_direct(doc, PINS)
        left = gc.collect()
    finally:
        gc.enable()
    assert out == reference(doc, PINS)
    assert left < 200, left


@pytest.mark.parametrize("brk", ["\x85", "\u2028", "\u2029"])
def test_a_multi_line_string_with_a_unicode_line_break_reads_back_the_same_in_yaml_1_1_and_1_2(brk: str) -> None:
    """NEL, LS and PS are line breaks to YAML 1.1 (PyYAML) and not to YAML 1.2 (GitHub, kubectl, ruamel):
    a `|` literal holding one is read back differently (or not at all) by a 1.2 reader, so it is quoted."""
    from ruamel.yaml import YAML

    value = f"tar -cf x.tar -- 'models/c{brk}d'\necho done\n"
    text = dump_yaml({"jobs": {"a": {"steps": [{"run": value}]}}})
    assert yaml.safe_load(text)["jobs"]["a"]["steps"][0]["run"] == value
    assert YAML(typ="safe", pure=True).load(text)["jobs"]["a"]["steps"][0]["run"] == value
