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


def read_metrics(path: str | os.PathLike[str]) -> dict[str, float]:
    """The numbers in a metrics JSON file, flattened to dotted keys (MLP406 when unusable)."""
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
    return flatten_metrics(data)
