"""User text into workflows: shell words (run by real bash) and Hydra override values (parsed by Hydra)."""

from __future__ import annotations

import subprocess

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st
from mlprism import hydra_value
from mlprism_github.text import plain, sh_word
from omegaconf import OmegaConf

TRICKY = ["", "plain", "it's", 'a "b"', "${{ github.token }}", "$${{x}}", "${{${{", "}}${{", "$(id)", "`id`",
          "a;b|c&d>e<f", "line\nbreak", "tab\tx", "\\", "\\'", "'", "ünï — ✓ 日本", "\u2028", "-n", "*", "~", "!x"]
_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


def _bash_words(words: list[str]) -> list[str]:
    script = "printf '%s\\0' " + " ".join(sh_word(w) for w in words) + "\n"
    assert "${{" not in script
    out = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                         capture_output=True, timeout=30, check=True).stdout
    return out.decode("utf-8", "surrogateescape").split("\0")[:-1]


def test_tricky_words_survive_bash() -> None:
    assert _bash_words(TRICKY) == TRICKY


@settings(max_examples=40, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=8))
def test_any_words_survive_bash(words: list[str]) -> None:
    assert _bash_words(words) == words


def test_nul_is_a_diagnostic() -> None:
    import mlprism

    with pytest.raises(mlprism.DiagnosticError):
        sh_word("a\x00b")


def _through_hydra(value: object) -> object:
    override = OverridesParser.create().parse_overrides([f"params.x={hydra_value(value)}"])[0]
    return OmegaConf.to_container(OmegaConf.create({"x": override.value()}), resolve=True)["x"]


@pytest.mark.parametrize("value", [*TRICKY, "${x}", "a\\${x}", "null", "true", "12", "1e3", " lead", "x,y", "[1]",
                                   1, -2, 1.5, 1e-7, True, False, None, [1, "a b", [True]], {"k": "v", "n": [1]}])
def test_hydra_values_round_trip(value: object) -> None:
    assert _through_hydra(value) == value


@settings(max_examples=60, deadline=None)
@given(st.one_of(_TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_any_value_round_trips_through_hydra(value: object) -> None:
    assert _through_hydra(value) == value


def test_plain_is_one_inert_line() -> None:
    assert plain("a\n b ${{ x }}\u2028c") == "a b $ {{ x }} c"
