"""Stage 3 — validate: JSON Schema (Draft 2020-12) plus semantic checks.

The schema is the single source of truth for the spec's shape: the core schema
in ``schemas/pipeline.v1.json`` plus each installed target's ``targets.<name>``
section. Errors are mapped back to ``file:line:col`` with a hint.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from mlprism.diagnostics import Diagnostic, Location, Severity, did_you_mean

Locate = Callable[[str], Location | None]

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,48}[a-z0-9])?$")
DURATION_RE = re.compile(r"^(?=[0-9])(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")
MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
CPU_RE = re.compile(r"^([0-9]+(?:\.[0-9]{1,3})?|[0-9]+m)$")


@functools.cache
def core_schema() -> dict[str, Any]:
    text = resources.files("mlprism_schemas").joinpath("pipeline.v1.json").read_text(encoding="utf-8")
    return json.loads(text)


def full_schema(sections: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The core schema with every target's section schema plugged into `targets`."""
    schema = copy.deepcopy(core_schema())
    props = schema["properties"]["targets"].setdefault("properties", {})
    for name in sorted(sections):
        props[name] = sections[name]
    return schema


@functools.lru_cache(maxsize=8)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


def _display(path: Any) -> str:
    return _dotted(path) or "<spec root>"


def schema_errors(config: Mapping[str, Any], schema: dict[str, Any], locate: Locate) -> list[Diagnostic]:
    from jsonschema.exceptions import best_match, relevance

    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = list(validator.iter_errors(config))
    if not errors:
        return []
    best = best_match(errors)
    ordered = [best] + sorted((e for e in errors if e is not best), key=relevance)
    diags: list[Diagnostic] = []
    seen: set[tuple[str, str]] = set()
    for err in ordered:
        for diag in _convert(err, locate):
            key = (diag.code, str(diag.location) + diag.message)
            if key not in seen:
                seen.add(key)
                diags.append(diag)
    return diags[:50]


def _convert(err: Any, locate: Locate) -> list[Diagnostic]:
    path = list(err.absolute_path)
    where = _display(path)
    validator = err.validator
    if validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extras = [k for k in (err.instance or {}) if k not in allowed] if isinstance(err.instance, dict) else []
        out = []
        for extra in extras:
            child = _dotted([*path, extra])
            hint = did_you_mean(extra, allowed) or (f"allowed keys: {', '.join(allowed)}" if allowed else None)
            out.append(Diagnostic("MLP200", f"unknown key `{extra}` in `{where}`", locate(child), hint))
        return out
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        key = missing[0] if missing else "?"
        return [Diagnostic("MLP202", f"`{where}` is missing the required key `{key}`", locate(_dotted(path)),
                           _REQUIRED_HINTS.get(key))]
    if validator == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        got = _json_type(err.instance)
        return [Diagnostic("MLP201", f"`{where}` should be {_article(expected)}, not {_article(got)}",
                           locate(_dotted(path)), _type_hint(path, err.instance))]
    if validator == "propertyNames":
        return [Diagnostic("MLP210", f"`{where}` has an invalid key name `{err.instance}`",
                           locate(_dotted([*path, err.instance])) or locate(_dotted(path)),
                           "names are letters, digits and underscores, starting with a letter")]
    if validator == "pattern" and path in (["name"], ["registry", "name"]):
        return [_name_diag(str(err.instance), where, locate(_dotted(path)))]
    if validator == "const" and path == ["apiVersion"]:
        return [Diagnostic("MLP214", f"unsupported apiVersion `{err.instance}`", locate("apiVersion"),
                           "use `apiVersion: mlprism/v1`")]
    if validator == "oneOf" and path and path[-1] == "timeout":
        return [_duration_diag(err.instance, where, locate(_dotted(path)))]
    if validator == "enum":
        options = [str(v) for v in err.validator_value]
        hint = did_you_mean(str(err.instance), options) or f"one of: {', '.join(options)}"
        return [Diagnostic("MLP203", f"`{where}`: `{err.instance}` is not allowed", locate(_dotted(path)), hint)]
    message = err.message
    if len(message) > 200:
        message = message[:199] + "…"
    return [Diagnostic("MLP203", f"`{where}`: {message}", locate(_dotted(path)),
                       (err.schema.get("description") if isinstance(err.schema, dict) else None))]


_REQUIRED_HINTS = {
    "apiVersion": "add `apiVersion: mlprism/v1` at the top of the spec",
    "name": "add `name: my-pipeline` (lower-case letters, digits, hyphens)",
    "steps": "add `steps:` with at least one step, e.g. `train: {run: python train.py}`",
    "run": "every step needs a `run:` command",
    "path": "data entries need a `path:`",
    "metric": "a gate condition names a `metric:` of the step's metrics file",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "null"


def _article(word: str) -> str:
    word = {"object": "mapping", "array": "list"}.get(word, word)
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _type_hint(path: list[Any], value: Any) -> str | None:
    if path and path[-1] in ("inputs", "outputs", "needs") and isinstance(value, str):
        return f"write a list: `[{value}]`"
    if path and path[-1] == "gate" and isinstance(value, dict):
        return "a gate is a list of conditions: `- {metric: accuracy, min: 0.9}`"
    return None


def _name_diag(value: str, where: str, loc: Location | None) -> Diagnostic:
    suggestion = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if suggestion and not suggestion[0].isalpha():
        suggestion = "x-" + suggestion
    suggestion = suggestion[:50].rstrip("-")
    hint = f"lower-case letters, digits and hyphens, starting with a letter, at most 50 characters — e.g. `{suggestion}`"
    return Diagnostic("MLP210", f"`{where}`: `{value}` is not a safe name", loc, hint)


def _duration_diag(value: Any, where: str, loc: Location | None) -> Diagnostic:
    return Diagnostic("MLP213", f"`{where}`: `{value}` is not a duration", loc,
                      "write a number of seconds or `90s`, `30m`, `2h`, `1h30m`")


def parse_duration(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    m = DURATION_RE.match(str(value))
    if not m:
        return None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    total = h * 3600 + mi * 60 + s
    return total or None


def normalize_cpu(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value <= 0:
            return None
        return str(int(value)) if float(value).is_integer() else f"{int(round(value * 1000))}m"
    text = str(value)
    if not CPU_RE.match(text) or text in ("0", "0m"):
        return None
    if "." in text:
        return f"{int(round(float(text) * 1000))}m"
    return text


def check_memory(value: Any) -> bool:
    return isinstance(value, str) and bool(MEMORY_RE.match(value)) and float(MEMORY_RE.match(value).group(1)) > 0


# -- cron ----------------------------------------------------------------------
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    3: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}


def cron_problem(expr: Any) -> str | None:
    """None if `expr` is a valid five-field cron expression, else what is wrong."""
    if not isinstance(expr, str):
        return "a cron expression is a string"
    fields = expr.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
    for i, (text, (label, lo, hi)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for part in text.split(","):
            rng, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"bad step `/{step}` in the {label} field"
            if rng == "*":
                continue
            bounds = rng.split("-")
            if len(bounds) > 2 or not all(bounds):
                return f"bad range `{rng}` in the {label} field"
            values = []
            for b in bounds:
                v = _NAMES.get(i, {}).get(b.lower()) if not b.isdigit() else int(b)
                if v is None:
                    return f"`{b}` is not a valid {label}"
                if not lo <= v <= hi:
                    return f"{label} `{b}` is out of range {lo}-{hi}"
                values.append(v)
            if len(values) == 2 and values[0] > values[1]:
                return f"range `{rng}` in the {label} field runs backwards"
    return None


def semantic_errors(config: Mapping[str, Any], locate: Locate) -> list[Diagnostic]:
    """Checks the schema cannot express. Runs only on a schema-valid config."""
    diags: list[Diagnostic] = []
    steps: dict[str, Any] = config.get("steps") or {}
    for name, step in steps.items():
        if not NAME_RE.match(name):
            diags.append(_name_diag(name, f"steps.{name}", locate(f"steps.{name}")))
        if "timeout" in step and parse_duration(step["timeout"]) is None:
            diags.append(_duration_diag(step["timeout"], f"steps.{name}.timeout", locate(f"steps.{name}.timeout")))
        res = step.get("resources") or {}
        diags.extend(_resource_errors(res, f"steps.{name}.resources", locate))
        for i, dep in enumerate(step.get("needs") or []):
            if dep not in steps:
                hint = did_you_mean(dep, steps) or f"steps are: {', '.join(steps)}"
                diags.append(Diagnostic("MLP220", f"step `{name}` needs `{dep}`, which is not a step",
                                        locate(f"steps.{name}.needs.{i}"), hint))
            elif dep == name:
                diags.append(Diagnostic("MLP231", f"step `{name}` needs itself", locate(f"steps.{name}.needs.{i}"),
                                        "remove it from `needs`"))
        for i, cond in enumerate(step.get("gate") or []):
            if not step.get("metrics"):
                diags.append(Diagnostic("MLP222", f"step `{name}` gates on `{cond['metric']}` but declares no `metrics` file",
                                        locate(f"steps.{name}.gate.{i}.metric"),
                                        f"add `metrics: metrics/{name}.json` to the step and write the metric there"))
            if "min" in cond and "max" in cond and cond["min"] > cond["max"]:
                diags.append(Diagnostic("MLP203", f"gate on `{cond['metric']}`: min {cond['min']} is above max {cond['max']}",
                                        locate(f"steps.{name}.gate.{i}"), "swap the bounds"))
        for kind in ("inputs", "outputs"):
            for i, p in enumerate(step.get(kind) or []):
                problem = path_problem(p)
                if problem:
                    diags.append(Diagnostic("MLP230", f"step `{name}` {kind[:-1]} `{p}` {problem}",
                                            locate(f"steps.{name}.{kind}.{i}"),
                                            "paths are relative to the spec's directory and stay inside it"))
        if step.get("metrics") and path_problem(step["metrics"]):
            diags.append(Diagnostic("MLP230", f"step `{name}` metrics `{step['metrics']}` {path_problem(step['metrics'])}",
                                    locate(f"steps.{name}.metrics"), "paths are relative to the spec's directory"))
    for dname, entry in (config.get("data") or {}).items():
        problem = path_problem(entry["path"])
        if problem:
            diags.append(Diagnostic("MLP230", f"data `{dname}` path `{entry['path']}` {problem}",
                                    locate(f"data.{dname}.path"), "paths are relative to the spec's directory"))
    for key in ("triggers.schedule", "monitor.schedule"):
        section, _, leaf = key.partition(".")
        value = (config.get(section) or {}).get(leaf)
        if value is not None:
            problem = cron_problem(value)
            if problem:
                diags.append(Diagnostic("MLP211", f"`{key}`: `{value}` is not a valid cron expression: {problem}",
                                        locate(key), "five fields, e.g. `0 3 * * 1` (03:00 every Monday, UTC)"))
    serve = (config.get("deploy") or {}).get("serve") or {}
    diags.extend(_resource_errors(serve.get("resources") or {}, "deploy.serve.resources", locate))
    auto = serve.get("autoscale")
    if auto and auto["min"] > auto["max"]:
        diags.append(Diagnostic("MLP203", f"`deploy.serve.autoscale`: min {auto['min']} is above max {auto['max']}",
                                locate("deploy.serve.autoscale"), "swap them"))
    registry = config.get("registry")
    if registry:
        after = registry.get("register_after")
        if after is not None and after not in steps:
            diags.append(Diagnostic("MLP225", f"`registry.register_after` names `{after}`, which is not a step",
                                    locate("registry.register_after"), did_you_mean(after, steps)))
        producers = [n for n, s in steps.items() if registry["artifact"] in (s.get("outputs") or [])]
        if not producers:
            diags.append(Diagnostic("MLP225", f"`registry.artifact` `{registry['artifact']}` is not an output of any step",
                                    locate("registry.artifact"), "name a path listed in some step's `outputs`"))
        if serve and serve.get("model", "").split("@")[0] != registry["name"]:
            diags.append(Diagnostic("MLP227", f"`deploy.serve.model` `{serve['model']}` is not the registry's model `{registry['name']}`",
                                    locate("deploy.serve.model"), f"use `{registry['name']}@production`"))
    elif serve:
        diags.append(Diagnostic("MLP227", "`deploy.serve` needs a `registry` to load the model from",
                                locate("deploy.serve"), "add `registry: {name: ..., artifact: ...}`"))
    if any(c.get("not_worse_than") for s in steps.values() for c in (s.get("gate") or [])) and not registry:
        diags.append(Diagnostic("MLP225", "a gate compares with the registry (`not_worse_than`) but the spec has no `registry`",
                                locate("steps"), "add `registry: {name: ..., artifact: ...}`"))
    sweep = config.get("sweep")
    if sweep:
        params = config.get("params") or {}
        for pname in sweep["params"]:
            if _select(params, pname) is _MISSING:
                diags.append(Diagnostic("MLP226", f"`sweep.params.{pname}` is not a param", locate(f"sweep.params.{pname}"),
                                        did_you_mean(pname, params) or "declare it under `params:` first"))
        select = sweep.get("select")
        if select and not any(s.get("metrics") for s in steps.values()):
            diags.append(Diagnostic("MLP226", f"`sweep.select` ranks runs by `{select['metric']}` but no step reports metrics",
                                    locate("sweep.select.metric"), "declare a `metrics:` file on the step that computes it"))
    for name in (config.get("environment") or {}).get("variables") or {}:
        if name in ((config.get("environment") or {}).get("secrets") or []):
            diags.append(Diagnostic("MLP203", f"`{name}` is both a variable and a secret",
                                    locate(f"environment.variables.{name}"), "keep it only under `secrets`"))
    return diags


_MISSING = object()


def _select(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _resource_errors(res: Mapping[str, Any], where: str, locate: Locate) -> list[Diagnostic]:
    diags = []
    if "cpu" in res and normalize_cpu(res["cpu"]) is None:
        diags.append(Diagnostic("MLP212", f"`{where}.cpu`: `{res['cpu']}` is not a CPU quantity", locate(f"{where}.cpu"),
                                "write cores as `2`, `0.5` or millicores as `500m`"))
    if "memory" in res and not check_memory(res["memory"]):
        value = str(res["memory"])
        m = re.match(r"^([0-9.]+)\s*([KMGTPE])i?B$", value, re.I)
        hint = (f"write `{m.group(1)}{m.group(2).upper()}i` (binary) or `{m.group(1)}{m.group(2).upper()}` (decimal)"
                if m else "write a Kubernetes quantity such as `512Mi` or `4Gi`")
        diags.append(Diagnostic("MLP212", f"`{where}.memory`: `{value}` is not a Kubernetes quantity",
                                locate(f"{where}.memory"), hint))
    return diags


def path_problem(path: str) -> str | None:
    """None if `path` stays inside the project, else what is wrong with it."""
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return "is absolute"
    if "\\" in path:
        return "uses backslashes (write `/`)"
    parts = path.split("/")
    if ".." in parts:
        return "leaves the project (`..`)"
    if "\x00" in path or any(ord(c) < 32 for c in path):
        return "contains control characters"
    if path.startswith("~"):
        return "starts with `~`"
    return None


def warning(code: str, message: str, loc: Location | None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, loc, hint, Severity.WARNING)
