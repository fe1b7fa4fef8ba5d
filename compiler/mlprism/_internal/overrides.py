"""Values written in Hydra's override grammar: ``KEY=<hydra_value(v)>`` sets exactly ``v`` again.

One definition for everything that writes an override: the runtime's sweep legs, and the
targets that pass params on a command line (GitHub Actions inputs, Argo parameters).
``tests/unit/compiler/test_overrides.py`` parses the text back with Hydra's own parser and
resolves it with OmegaConf.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["hydra_key", "hydra_quote", "hydra_value"]

# Written without quotes: words, paths, `a b` (inner spaces), nothing Hydra would read as
# another type or as grammar (quotes, brackets, braces, commas, `=`, `$`, `~`, `\`).
_PLAIN = re.compile(r"[A-Za-z0-9_./:+@-](?:[A-Za-z0-9_./:+@ -]*[A-Za-z0-9_./:+@-])?\Z")
_RESERVED = frozenset({"null", "true", "false", "nan", "inf", "+inf", "-inf"})
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def hydra_value(value: Any) -> str:
    """`value` (None, bool, int, float, str, list, dict) as Hydra's override grammar writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        # `1e-05` is a float to Hydra and to YAML 1.2 but a string to YAML 1.1 readers of the
        # file it may land in; `1.0e-05` is a float to all of them.
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{hydra_key(k)}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not _looks_numeric(text):
        return text
    return hydra_quote(text)


def hydra_key(key: Any) -> str:
    """A key inside a Hydra dict value; the grammar has no quoting for keys (ValueError otherwise)."""
    text = str(key)
    if not _KEY.match(text):
        raise ValueError(f"a dict key Hydra's override grammar cannot write: {text!r}")
    return text


def hydra_quote(text: str, *, resolved: bool = True) -> str:
    """`text` single-quoted for Hydra: quotes escaped, backslashes doubled only before a quote, the
    end or `${` (elsewhere Hydra keeps them as they are), and `${` escaped (no interpolation).

    `resolved=False` is for a value OmegaConf never resolves (``hydra.searchpath``): its `${` is
    already literal, and escaping it would leave the backslash in.
    """
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            j = i
            while j < len(text) and text[j] == "\\":
                j += 1
            run = text[i:j]
            nxt = text[j] if j < len(text) else ""
            out.append(run * 2 if nxt in ("'", "") or (resolved and text.startswith("${", j)) else run)
            i = j
            continue
        if ch == "'":
            out.append("\\'")
        elif resolved and text.startswith("${", i):
            out.append("\\$")
        else:
            out.append(ch)
        i += 1
    return "'" + "".join(out) + "'"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
