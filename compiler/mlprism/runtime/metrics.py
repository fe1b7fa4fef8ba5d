"""Read a step's metrics file: a JSON object whose numbers are tracked per run.

Nested objects are flattened with dots (``{"val": {"f1": 0.8}}`` -> ``val.f1``);
booleans become 1.0/0.0; strings, lists and nulls are not metrics and are left
out. A missing file, bad JSON or a top level that is not an object is MLP406.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError

__all__ = ["flatten_metrics", "read_metrics"]


def flatten_metrics(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, name + "."))
        elif isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
        elif isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
            out[name] = float(value)
    return dict(sorted(out.items()))


def _lookup(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key in a metrics object (``val.f1``: ``{"val": {"f1": …}}``, or a key
    with a dot in it)."""
    if dotted in data:
        return True, data[dotted]
    head, dot, rest = dotted.partition(".")
    while dot:
        node = data.get(head)
        if isinstance(node, dict):
            found, value = _lookup(node, rest)
            if found:
                return found, value
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return False, None


def read_metrics(path: str | os.PathLike[str], numbers: tuple[str, ...] | list[str] = ()) -> dict[str, float]:
    """The numbers in a metrics JSON file, flattened to dotted keys (MLP406 when unusable).

    ``numbers``: metrics that must be numbers when the file has them (a gate's): a string, a list or a
    null there is MLP406 naming it, not a metric quietly left out (the gate would say "not reported").
    """
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        raise DiagnosticError([Diagnostic("MLP406", f"metrics file `{shown}` was not written", None,
                                          "the step must write its declared `metrics` file (a JSON object)")])
    except OSError as exc:
        raise DiagnosticError([Diagnostic("MLP406", f"cannot read metrics file `{shown}`: {exc.strerror}")])
    except ValueError as exc:
        raise DiagnosticError([Diagnostic("MLP406", f"metrics file `{shown}` is not valid JSON: {exc}", None,
                                          'write a JSON object, e.g. {"accuracy": 0.93}')])
    if not isinstance(data, dict):
        raise DiagnosticError([Diagnostic("MLP406", f"metrics file `{shown}` holds a {type(data).__name__}, "
                                          "not a JSON object", None, 'write a JSON object, e.g. {"accuracy": 0.93}')])
    for name in numbers:
        found, value = _lookup(data, name)
        if found and (isinstance(value, str | list | dict) or value is None
                      or (isinstance(value, float) and math.isnan(value))):
            raise DiagnosticError([Diagnostic(
                "MLP406", f"metric `{name}` in `{shown}` is {json.dumps(value)[:80]}, not a number", None,
                f'a gate compares `{name}` with a number: write it as one, e.g. {{"{name}": 0.93}}')])
    return flatten_metrics(data)
