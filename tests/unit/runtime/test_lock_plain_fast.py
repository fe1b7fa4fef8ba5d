"""The lock writer's shortcut for digests and paths says "plain" only where the YAML resolver does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlprism import dump_yaml
from mlprism.runtime.lockfile import HEADER, _plain_by_resolver, _render_fast, _surely_plain

EDGES = ["0b1", "0b10", "1e5", "12e34", "1e", "e1", "0" * 64, "e" * 64, "ab", "a1b", "0x1f", "1ab", "ab" * 60,
         "ab" * 59, "./x", "../x", "..../x", ".../x", "a/b", "/", "//", "-/x", "x/-", "1/2", "2020/01/01", "0/0",
         "a:b/c", "a b/c", "~/x", "out/s1.txt", ".hidden/a.txt", "1.0/x", "x/" + "y" * 117, "x/" + "y" * 118]

hexes = st.from_regex(r"[0-9a-f]{1,130}", fullmatch=True)
paths = st.from_regex(r"[A-Za-z0-9_./-]{0,8}/[A-Za-z0-9_./:~ -]{0,12}", fullmatch=True)


@pytest.mark.parametrize("text", EDGES)
def test_the_shortcut_agrees_with_the_resolver_on_edges(text: str) -> None:
    if _surely_plain(text):
        assert _plain_by_resolver(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(hexes, paths, st.sampled_from(EDGES)))
def test_the_shortcut_agrees_with_the_resolver(text: str) -> None:
    if _surely_plain(text):
        assert _plain_by_resolver(text)
        doc = {"steps": {"s": {text: {"hash": text, "size": 1}}}}
        assert _render_fast(doc) == dump_yaml(doc, header=HEADER)


def test_digests_and_paths_take_the_shortcut() -> None:
    assert _surely_plain("ab" * 32) and _surely_plain("out/s1.txt") and _surely_plain("data/raw.csv")
    assert not _surely_plain("1e5") and not _surely_plain("0b1") and not _surely_plain("..../x")
