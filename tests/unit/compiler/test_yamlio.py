"""The fast YAML paths (libyaml, direct writer) write exactly what PyYAML's pure-Python dumper writes.

`dump_yaml` picks the fastest path that is known to agree with the pure-Python reference
(`_Dumper`); these tests hold the paths equal on generated data full of the cases where
libyaml and the Python emitter are known to differ (non-BMP characters, other line breaks,
byte-order marks, long or empty keys, long strings, `|` literals, trailing spaces), and check
that the fast paths are really taken on ordinary data (so the equality is not vacuous).
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlprism._internal.yamlio import (
    _KW,
    _comment_by_scan,
    _dump_c,
    _dump_direct,
    _Dumper,
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
