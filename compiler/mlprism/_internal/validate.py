"""Stage 3 — validate: JSON Schema (Draft 2020-12) plus semantic checks.

The schema is the single source of truth for the spec's shape: the core schema
in ``schemas/pipeline.v1.json`` plus each installed target's ``targets.<name>``
section. Errors are mapped back to ``file:line:col`` with a hint.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import numbers
import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from mlprism._internal.load import without_gc
from mlprism.diagnostics import Diagnostic, Location, Severity, did_you_mean
from mlprism.runtime.redact import MIN_SECRET_LENGTH, secret_needles
from mlprism.runtime.redact import label as label_secrets

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
    """The core schema with every target's section schema plugged into `targets`.

    Cached: the same sections give the same (shared) object, so do not modify it.
    """
    return _full_schema(json.dumps(sections, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _full_schema(sections_json: str) -> dict[str, Any]:
    sections = json.loads(sections_json)
    schema = copy.deepcopy(core_schema())
    props = schema["properties"]["targets"].setdefault("properties", {})
    for name in sorted(sections):
        props[name] = sections[name]
    return schema


_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "markdownDescription"})


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its local, non-recursive ``#/$defs/...`` references inlined.

    Same meaning, about twice as fast to validate with: jsonschema resolves a
    ``$ref`` through its registry on every visit. A ``$ref`` with validation
    keywords beside it becomes ``allOf``; annotations beside it just override.
    """
    defs = schema.get("$defs") or {}

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and "/" not in ref[8:]:
                name = ref[8:]
                if name in defs and name not in stack:
                    target = walk(defs[name], (*stack, name))
                    rest = {k: walk(v, stack) for k, v in node.items() if k != "$ref"}
                    if set(rest) <= _ANNOTATIONS and isinstance(target, dict):
                        return {**target, **rest}
                    return {**rest, "allOf": [target]}
            return {k: (v if k == "$defs" else walk(v, stack)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, stack) for v in node]
        return node

    return walk(schema, ())


@functools.lru_cache(maxsize=8)
def _validator(schema_json: str) -> Any:
    """A validator for the schema (no meta-schema check here: tests check the core schema, and a
    broken plugin section is found when validation fails — see :func:`schema_errors`)."""
    from jsonschema import Draft202012Validator, validators

    finite = Draft202012Validator.TYPE_CHECKER.redefine("number", lambda _checker, x: _is_number(x))
    validator = validators.extend(Draft202012Validator, type_checker=finite)
    return validator(inline_refs(json.loads(schema_json)))


_BY_ID: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator_for(schema: dict[str, Any]) -> Any:
    hit = _BY_ID.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_ID) > 16:
        _BY_ID.clear()
    _BY_ID[id(schema)] = (schema, validator)
    return validator


def broken_sections(schema: dict[str, Any]) -> list[str]:
    """Names of `targets.<name>` sections that are not valid JSON Schemas."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    bad = []
    for name, section in ((schema.get("properties") or {}).get("targets", {}).get("properties") or {}).items():
        try:
            Draft202012Validator.check_schema(section)
        except SchemaError:
            bad.append(name)
    return bad


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


def _display(path: Any) -> str:
    return _dotted(path) or "the spec"


def at(locate: Locate, dotted: str, prefer: str) -> Location | None:
    """``locate(dotted)`` preferring the key's or the value's position, when the locator can tell."""
    try:
        return locate(dotted, prefer=prefer)  # type: ignore[call-arg]
    except TypeError:
        return locate(dotted)


# -- a fast validity check: when it says "valid", iter_errors would yield nothing ----------------
#
# jsonschema visits every keyword through several generator layers: ~0.1 ms per step, most of a
# 10,000-step validate. Most specs are valid, and for a valid spec the answer is just "no errors".
# So the schema is compiled once into plain closures answering only "valid or not", with the
# semantics of jsonschema's Draft 2020-12 keywords (its type checker's rules, its JSON equality
# for enum/const, `re.search` for patterns; uniqueItems for lists of strings only). Only keywords
# whose values are well formed are compiled; a schema object using anything else (`$ref`,
# `format`, unknown keywords...) is checked by jsonschema itself, so nothing is approximated.
# When the check says "invalid" (or cannot tell, or fails in any way), the full jsonschema run
# produces the diagnostics as before: the errors, their order and their locations cannot change.
# A valid spec no longer imports jsonschema at all (~0.2 s of every command's start-up).
# tests/unit/compiler/test_validate_fast.py compares the two answers on fuzzed specs.

Check = Callable[[Any], bool]
_IGNORED = frozenset({"description", "title", "default", "examples", "$comment", "markdownDescription",
                      "deprecated", "readOnly", "writeOnly", "$defs", "$schema"})
_SIMPLE = frozenset({"type", "properties", "additionalProperties", "required", "enum", "const", "items",
                     "minLength", "maxLength", "minProperties", "maxProperties", "minItems", "maxItems",
                     "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "propertyNames",
                     "uniqueItems", "oneOf", "anyOf", "allOf", "not"})


def _is_number(x: Any) -> bool:
    """A JSON number: not a bool, and finite (JSON has no NaN or infinity; YAML's `.nan`, `.inf` and
    `1e999` are refused wherever the schema asks for a number, in both checks)."""
    return not isinstance(x, bool) and isinstance(x, numbers.Number) and (type(x) is int or math.isfinite(x))


def _is_integer(x: Any) -> bool:
    return not isinstance(x, bool) and (isinstance(x, int) or (isinstance(x, float) and x.is_integer()))


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def _sub(v: Any) -> bool:
    return type(v) in (dict, bool)


def _subs(v: Any) -> bool:
    return type(v) is list and bool(v) and all(type(x) in (dict, bool) for x in v)


def _type_names(v: Any) -> bool:
    names = v if type(v) is list else [v]
    return bool(names) and all(type(n) is str and n in _TYPES for n in names) and len(set(names)) == len(names)


_WELL_FORMED: dict[str, Check] = {
    "type": _type_names,
    "properties": lambda v: type(v) is dict and all(type(k) is str and _sub(x) for k, x in v.items()),
    "additionalProperties": _sub, "items": _sub, "propertyNames": _sub, "not": _sub,
    "required": lambda v: type(v) is list and all(type(x) is str for x in v),
    "enum": lambda v: type(v) is list, "const": lambda v: True,
    "minLength": _count, "maxLength": _count, "minProperties": _count, "maxProperties": _count,
    "minItems": _count, "maxItems": _count,
    "minimum": _num, "maximum": _num, "exclusiveMinimum": _num, "exclusiveMaximum": _num,
    "pattern": lambda v: type(v) is str, "uniqueItems": lambda v: type(v) is bool,
    "oneOf": _subs, "anyOf": _subs, "allOf": _subs,
}


class _CannotCompile(Exception):
    """The schema holds something the fast check does not take over from jsonschema."""


class _Unsure(Exception):
    """Raised by a check that cannot tell cheaply: jsonschema decides."""


def _unbool(x: Any) -> Any:
    return _TRUE if x is True else _FALSE if x is False else x


_TRUE, _FALSE = object(), object()


def _equal(one: Any, two: Any) -> bool:
    """JSON equality as jsonschema has it: `True` is not `1`, in containers too."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(k in two and _equal(v, two[k]) for k, v in one.items())
    return bool(_unbool(one) == _unbool(two))


def _unique(items: list[Any]) -> bool:
    """uniqueItems for a list of strings (the only kind a spec has); anything else: _Unsure."""
    for x in items:
        if type(x) is not str:
            raise _Unsure
    return len(set(items)) == len(items)


def _compile(schema: Any, validator: Callable[[], Any], root: bool = False) -> Check:
    """A function answering whether an instance is valid against `schema` (jsonschema's answer).

    `validator` gives the jsonschema validator of the whole schema, built only if some part is
    delegated to it and that part is reached (importing jsonschema costs a spec's validation).
    """
    if schema is True:
        return lambda x: True
    if schema is False:
        return lambda x: False
    if not isinstance(schema, dict):
        raise _CannotCompile
    if "$id" in schema and not root:
        raise _CannotCompile                   # a new base URI: leave the whole schema to jsonschema
    keys = set(schema) - _IGNORED - ({"$id"} if root else set())
    if not keys <= _SIMPLE:                    # $ref, format, if/then, unknown keywords: ask jsonschema
        cell: list[Any] = []

        def delegated(x: Any, cell: list[Any] = cell, schema: Any = schema) -> bool:
            if not cell:
                cell.append(validator().evolve(schema=schema))
            return bool(cell[0].is_valid(x))
        return delegated
    for key in keys:                           # only well-formed keywords (as the meta-schema has them)
        if not _WELL_FORMED[key](schema[key]):
            raise _CannotCompile
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        preds = [_TYPES[n] for n in names]     # KeyError on an unknown type: no fast check
        checks.append(preds[0] if len(preds) == 1 else (lambda x, ps=tuple(preds): any(p(x) for p in ps)))
    props = {k: _compile(v, validator) for k, v in (schema.get("properties") or {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True else _compile(extra, validator)
    required = list(schema.get("required") or ())
    names = _compile(schema["propertyNames"], validator) if "propertyNames" in schema else None
    min_p, max_p = schema.get("minProperties"), schema.get("maxProperties")
    if props or extra_check or required or names or min_p is not None or max_p is not None:
        def check_object(x: Any, props: dict[str, Check] = props, extra_check: Check | None = extra_check,
                         required: list[str] = required, names: Check | None = names,
                         min_p: Any = min_p, max_p: Any = max_p) -> bool:
            if not isinstance(x, dict):
                return True
            if (min_p is not None and len(x) < min_p) or (max_p is not None and len(x) > max_p):
                return False
            for key in required:
                if key not in x:
                    return False
            for key, value in x.items():
                check = props.get(key)
                if check is not None:
                    if not check(value):
                        return False
                elif extra_check is not None and not extra_check(value):
                    return False
                if names is not None and not names(key):
                    return False
            return True
        checks.append(check_object)
    items = _compile(schema["items"], validator) if "items" in schema else None
    min_i, max_i, unique = schema.get("minItems"), schema.get("maxItems"), schema.get("uniqueItems")
    if items is not None or min_i is not None or max_i is not None or unique:
        def check_array(x: Any, items: Check | None = items, min_i: Any = min_i, max_i: Any = max_i,
                        unique: Any = unique) -> bool:
            if not isinstance(x, list):
                return True
            if (min_i is not None and len(x) < min_i) or (max_i is not None and len(x) > max_i):
                return False
            if items is not None and not all(map(items, x)):
                return False
            return not unique or _unique(x)
        checks.append(check_array)
    min_l, max_l = schema.get("minLength"), schema.get("maxLength")
    regex = re.compile(schema["pattern"]) if "pattern" in schema else None
    if min_l is not None or max_l is not None or regex is not None:
        def check_string(x: Any, min_l: Any = min_l, max_l: Any = max_l, regex: Any = regex) -> bool:
            if not isinstance(x, str):
                return True
            if (min_l is not None and len(x) < min_l) or (max_l is not None and len(x) > max_l):
                return False
            return regex is None or regex.search(x) is not None
        checks.append(check_string)
    bounds = [(k, schema[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in schema]
    if bounds:
        def check_number(x: Any, bounds: list[tuple[str, Any]] = bounds) -> bool:
            if not _is_number(x):
                return True
            for kind, bound in bounds:
                if ((kind == "minimum" and x < bound) or (kind == "maximum" and x > bound)
                        or (kind == "exclusiveMinimum" and x <= bound) or (kind == "exclusiveMaximum" and x >= bound)):
                    return False
            return True
        checks.append(check_number)
    if "enum" in schema:
        options = list(schema["enum"])
        checks.append(lambda x, options=options: any(_equal(o, x) for o in options))
    if "const" in schema:
        checks.append(lambda x, c=schema["const"]: _equal(x, c))
    for word, combine in (("allOf", all), ("anyOf", any)):
        if word in schema:
            subs = [_compile(sub, validator) for sub in schema[word]]
            checks.append(lambda x, subs=subs, combine=combine: combine(c(x) for c in subs))
    if "oneOf" in schema:
        subs = [_compile(sub, validator) for sub in schema["oneOf"]]
        checks.append(lambda x, subs=subs: sum(1 for c in subs if c(x)) == 1)
    if "not" in schema:
        negated = _compile(schema["not"], validator)
        checks.append(lambda x, sub=negated: not sub(x))
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:                       # the usual: a type and one keyword group
        first, second = checks
        return lambda x: first(x) and second(x)
    return lambda x, checks=tuple(checks): all(c(x) for c in checks)


@functools.lru_cache(maxsize=8)
def _fast_check(schema_json: str) -> Check | None:
    """The fast validity check of a schema, or None when it holds anything doubtful (see above)."""
    try:
        return _compile(inline_refs(json.loads(schema_json)), lambda: _validator(schema_json), root=True)
    except Exception:       # _CannotCompile, a bad regex, a schema jsonschema refuses: no fast check
        return None


def is_valid_fast(config: Any, schema: dict[str, Any]) -> bool:
    """True only when `config` is valid against `schema` (False: unknown, run jsonschema)."""
    entry = _FAST_BY_ID.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_FAST_BY_ID) > 16:
            _FAST_BY_ID.clear()
        entry = _FAST_BY_ID[id(schema)] = (schema, _fast_check(json.dumps(schema, sort_keys=True)))
    check = entry[1]
    if check is None:
        return False
    try:
        return bool(check(config))
    except Exception:       # _Unsure, anything unexpected (comparing odd values...): let jsonschema decide
        return False


_FAST_BY_ID: dict[int, tuple[dict[str, Any], Check | None]] = {}


@without_gc
def schema_errors(config: Mapping[str, Any], schema: dict[str, Any], locate: Locate) -> list[Diagnostic]:
    """Schema violations as diagnostics, the most useful first (jsonschema's ``best_match``)."""
    if is_valid_fast(config, schema):
        return []
    from jsonschema.exceptions import best_match, relevance

    try:
        validator = _validator_for(schema)
        errors = list(validator.iter_errors(config))
    except Exception as exc:  # a plugin contributed a schema jsonschema cannot use
        bad = broken_sections(schema) or ["?"]
        return [Diagnostic("MLP301", f"the schema of `targets.{bad[0]}` (from a plugin) is not a valid JSON Schema: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None,
                           "fix the plugin, or skip it with `-p no:PLUGIN`")]
    if not errors:
        return []
    best = best_match(errors)
    ordered = [best, *sorted((e for e in errors if e is not best), key=_order_key(relevance))]
    diags: list[Diagnostic] = []
    seen: set[tuple[str, str]] = set()
    for err in ordered:
        for diag in _convert(err, locate):
            if not diag.hint:                # every user error has a hint: the schema's words, or where to read
                diag = dataclasses.replace(diag, hint=_schema_hint(err))
            key = (diag.code, str(diag.location) + diag.message)
            if key not in seen:
                seen.add(key)
                diags.append(diag)
    return diags[:50]


def _order_key(relevance: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """After the best match: by position in the spec, then jsonschema's relevance (deterministic)."""
    def key(err: Any) -> Any:
        return (tuple(str(p) for p in err.absolute_path), relevance(err))
    return key


def _deepest(err: Any) -> Any:
    """For oneOf/anyOf, the sub-error that explains most (e.g. the bad key inside one branch)."""
    from jsonschema.exceptions import best_match

    if err.validator in ("oneOf", "anyOf") and err.context:
        # a branch for another type of value explains nothing (`runs_on: [a, "$(id)"]` is a list: its
        # bad item, not "should be a string"), unless every branch failed on the type
        fitting = [e for e in err.context if not (e.validator == "type" and not e.relative_path)]
        return best_match(fitting or err.context)
    return err


def _with_pattern(description: str | None, pattern: str) -> str:
    """A pattern error's hint: what the field is (its description, if any) and the form it must have."""
    form = f"it must match `{pattern}`"
    return f"{description.rstrip('.')}; {form}" if description else form


def _convert(err: Any, locate: Locate) -> list[Diagnostic]:
    path = list(err.absolute_path)
    where = _display(path)
    dotted = _dotted(path)
    validator = err.validator
    schema_path = list(err.schema_path)
    if "propertyNames" in schema_path:
        name = str(err.instance)
        child = _dotted([*path, name])
        what = {"params": "param", "data": "data entry", "variables": "environment variable",
                "env": "environment variable"}.get(str(path[-1]) if path else "", "key")
        rule = ("letters, digits and underscores, not starting with a digit" if what != "data entry"
                else "letters, digits, `_` and `-`, not starting with a digit")
        suggestion = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "x"
        if suggestion[0].isdigit():
            suggestion = "_" + suggestion
        return [Diagnostic("MLP210", f"`{where}`: `{name}` is not a valid {what} name", at(locate, child, "key")
                           or at(locate, dotted, "key"), f"{rule} — e.g. `{suggestion}`")]
    if validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extras = [k for k in (err.instance or {}) if k not in allowed] if isinstance(err.instance, dict) else []
        out = []
        for extra in extras:
            child = _dotted([*path, extra])
            hint = did_you_mean(extra, allowed) or (f"allowed keys here: {', '.join(allowed)}" if allowed else None)
            what = f"unknown key `{extra}` in `{where}`" if path else f"unknown top-level key `{extra}`"
            out.append(Diagnostic("MLP200", what, at(locate, child, "key"), hint))
        return out
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        key = missing[0] if missing else "?"
        whose = f"`{where}` is" if path else "the spec is"
        return [Diagnostic("MLP202", f"{whose} missing the required key `{key}`", at(locate, dotted, "key"),
                           _REQUIRED_HINTS.get(key))]
    if validator == "type" and _non_finite(err.instance):
        return [Diagnostic("MLP203", f"`{where}`: `{_yaml_float(err.instance)}` is not a finite number",
                           at(locate, dotted, "value"),
                           "JSON has no NaN or infinity: write a finite number (leave out a bound you do not need)"
                           "; to pass the text, quote it: `'inf'`")]
    if validator == "type":
        expected = err.validator_value
        expected = " or ".join(_noun(e) for e in expected) if isinstance(expected, list) else _noun(expected)
        got = "empty" if err.instance is None else f"not {_article(_json_type(err.instance))}"
        return [Diagnostic("MLP201", f"`{where}` should be {_article(expected)}, but it is {got}"
                           if err.instance is None else f"`{where}` should be {_article(expected)}, {got}",
                           at(locate, dotted, "value"), _type_hint(path, err.instance, err.validator_value))]
    if validator == "pattern" and path in (["name"], ["registry", "name"]):
        return [_name_diag(str(err.instance), where, at(locate, dotted, "value"))]
    if validator == "const" and path == ["apiVersion"]:
        return [Diagnostic("MLP214", f"unsupported apiVersion `{err.instance}`", at(locate, "apiVersion", "value"),
                           f"this mlprism reads `apiVersion: {err.validator_value}`")]
    if path and path[-1] == "timeout" and validator in ("oneOf", "minimum", "pattern", "type"):
        return [_duration_diag(err.instance, where, at(locate, dotted, "value"))]
    if validator in ("oneOf", "anyOf") and err.context:
        return _convert(_deepest(err), locate)
    if validator == "enum":
        options = [str(v) for v in err.validator_value]
        hint = did_you_mean(str(err.instance), options) or f"one of: {', '.join(options)}"
        return [Diagnostic("MLP203", f"`{where}`: `{err.instance}` is not allowed", at(locate, dotted, "value"), hint)]
    if validator == "minProperties" and isinstance(err.instance, dict):
        have = list(err.instance)
        allowed = [k for k in (err.schema.get("properties") or {}) if k not in have]
        if len(path) >= 2 and path[-2] == "gate":        # (goal and tolerance qualify a bound)
            allowed = [k for k in ("min", "max", "not_worse_than") if k not in have]
        return [Diagnostic("MLP203", f"`{where}` has {_listing(have) or 'no keys'}; it needs at least "
                           f"{err.validator_value} keys", at(locate, dotted, "value"),
                           f"add {'one of ' if len(allowed) > 1 else ''}{_listing(allowed, 12)}" if allowed else None)]
    if validator in ("minProperties", "minItems") and not err.instance:
        return [Diagnostic("MLP203", f"`{where}` is empty", at(locate, dotted, "value"),
                           _EMPTY_HINTS.get(str(path[-1]) if path else "", err.schema.get("description")))]
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                 "exclusiveMaximum": "less than"}[validator]
        return [Diagnostic("MLP203", f"`{where}`: {err.instance} is out of range; it must be {bound} "
                           f"{err.validator_value}", at(locate, dotted, "value"), err.schema.get("description"))]
    if validator == "pattern":
        return [Diagnostic("MLP203", f"`{where}`: `{_clip(str(err.instance))}` is not in the expected form",
                           at(locate, dotted, "value"),
                           _with_pattern(err.schema.get("description"), err.validator_value))]
    if validator == "uniqueItems":
        return [Diagnostic("MLP203", f"`{where}` lists the same item twice", at(locate, dotted, "value"),
                           "remove the duplicate")]
    message = err.message
    if len(message) > 200:
        message = message[:199] + "…"
    return [Diagnostic("MLP203", f"`{where}`: {message}", at(locate, dotted, "value"),
                       (err.schema.get("description") if isinstance(err.schema, dict) else None))]


def _non_finite(value: Any) -> bool:
    return type(value) is float and not math.isfinite(value)


def _yaml_float(value: float) -> str:
    return ".nan" if value != value else (".inf" if value > 0 else "-.inf")


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _noun(json_type: str) -> str:
    return {"object": "mapping", "array": "list"}.get(json_type, json_type)


_EMPTY_HINTS = {
    "steps": "add at least one step, e.g. `train: {run: python train.py}`",
    "params": "give the sweep at least one param with a list of values",
}


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
    word = _noun(word)
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _schema_hint(err: Any) -> str:
    """A hint from the schema for an error that has none: its description, else where the key is documented."""
    schema = err.schema if isinstance(err.schema, dict) else {}
    text = schema.get("description")
    if not isinstance(text, str) or not text:
        path = [str(p) for p in err.absolute_path]
        if len(path) >= 2 and path[0] == "targets":
            text = f"see the options of `targets.{path[1]}` in docs/targets/{path[1]}.md"
        elif path:
            text = f"see `{path[0]}` in docs/reference/spec.md#{path[0].lower()}"
        else:
            text = "see docs/reference/spec.md"
    return text


def _type_hint(path: list[Any], value: Any, expected: Any = None) -> str | None:
    hint = _specific_type_hint(path, value)
    if hint:
        return hint
    wanted = set(expected if isinstance(expected, list) else [expected])
    if "string" in wanted and isinstance(value, bool | int | float):
        text = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value
        return f"quote it: `\"{text}\"`" + (" (unquoted, a number loses its trailing zeros: 3.10 is 3.1)"
                                             if isinstance(value, float) else "")
    if wanted == {"boolean"}:
        return "write `true` or `false`, without quotes"
    if wanted <= {"number", "integer"} and isinstance(value, str):
        return "write a number without quotes"
    if wanted == {"integer"} and isinstance(value, float):
        return f"a whole number, e.g. `{max(int(value), 1)}`"
    if wanted == {"object"} and isinstance(value, list):
        return "a mapping of `key: value` entries (`{key: value}` on one line), not a `- ` list"
    if wanted == {"array"} and not isinstance(value, dict):
        return f"write a list: `[{value}]`"
    return None


def _specific_type_hint(path: list[Any], value: Any) -> str | None:
    last = str(path[-1]) if path else ""
    if last in ("inputs", "outputs", "needs", "secrets", "branches", "paths", "columns") and isinstance(value, str):
        return f"write a list: `[{value}]`"
    if last == "gate" and isinstance(value, dict):
        return "a gate is a list of conditions: `- {metric: accuracy, min: 0.9}`"
    if last == "steps" and isinstance(value, list):
        return "steps is a mapping of names to steps: `train: {run: python train.py}`"
    if len(path) == 2 and path[0] == "steps" and value is None:
        return "give the step a `run:` command, e.g. `{run: python train.py}`"
    if last == "run" and not isinstance(value, str):
        return f"quote the command: `run: \"{value}\"`"
    if isinstance(value, str) and last in ("retries", "port", "replicas", "gpu"):
        return "write a number without quotes"
    return None


def _name_diag(value: str, where: str, loc: Location | None, what: str = "name") -> Diagnostic:
    suggestion = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if not suggestion or not suggestion[0].isalpha():
        suggestion = "x-" + suggestion
    suggestion = suggestion[:50].rstrip("-")
    why = []
    if value != value.lower():
        why.append("upper-case letters")
    if "_" in value:
        why.append("`_`")
    if value[:1].isdigit():
        why.append("a leading digit")
    if len(value) > 50:
        why.append(f"{len(value)} characters, at most 50")
    if value.endswith("-"):
        why.append("a trailing `-`")
    reason = f" ({', '.join(why)})" if why else ""
    hint = (f"Kubernetes and GitHub Actions need lower-case letters, digits and hyphens, starting with a letter, "
            f"at most 50 characters — e.g. `{suggestion}`")
    return Diagnostic("MLP210", f"`{where}`: `{_clip(value)}` is not a safe {what}{reason}", loc, hint)


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
        return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"
    text = str(value)
    if not CPU_RE.match(text) or text in ("0", "0m"):
        return None
    if "." in text:
        return f"{round(float(text) * 1000)}m"
    return text


def check_memory(value: Any) -> bool:
    return isinstance(value, str) and bool(MEMORY_RE.match(value)) and float(MEMORY_RE.match(value).group(1)) > 0


# -- cron ----------------------------------------------------------------------
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    3: {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])},
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
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


class Protected:
    """The paths of a project no step may write (MLP232): the project directory itself, mlprism's state
    (`.mlprism/`, the lock file), `.git/`, the spec and the config files it is composed from."""

    def __init__(self, spec_name: str = "pipeline.yaml", composed_from: Sequence[str] = ()) -> None:
        from mlprism.runtime.lockfile import lock_name

        lock = lock_name(posixpath.splitext(spec_name)[0])
        self.dirs = {".mlprism": "mlprism's state (runs, cache, ledger, registry)", ".git": "git's repository"}
        self.files = {lock: "the lock file", spec_name: "the spec"}
        for f in composed_from:
            f = posixpath.normpath(f)
            if f != "." and not path_problem(f):
                self.files.setdefault(f, "a config file the spec is composed from")
        #: first parts of the paths that may be taken (the rest cannot be: checked only for these)
        self.firsts = {".", "..", "", *(p.split("/", 1)[0] for p in (*self.dirs, *self.files))}

    def taken(self, path: str) -> str | None:
        """What `path` (an output) would overwrite, or None."""
        key = posixpath.normpath(path)
        if key == ".":
            return "is the project directory itself"
        if key == ".." or key.startswith(("../", "/")):
            return None                     # leaves the project: MLP230
        for d, what in self.dirs.items():
            if key == d or key.startswith(d + "/"):
                return f"is {'' if key == d else 'inside '}`{d}/`, {what}"
        if key in self.files:
            return f"is {self.files[key]}"
        for f, what in self.files.items():
            if f.startswith(key + "/"):
                return f"holds `{f}`, {what}"
        return None


_TAKEN_HINT = ("a step writes its own files: name an output below a directory of its own, e.g. `out/model.pkl` "
               "(mlprism's state, the lock file, the spec, its config files and `.git/` are not a step's to replace)")


@without_gc
def semantic_errors(config: Mapping[str, Any], locate: Locate, protect: Protected | None = None) -> list[Diagnostic]:
    """Checks the schema cannot express. Runs only on a schema-valid config.

    `protect`: the paths no output may take (default: those of a spec named `pipeline.yaml`).
    """
    diags: list[Diagnostic] = []
    protect = protect or Protected()
    steps: dict[str, Any] = config.get("steps") or {}
    registry = config.get("registry")
    serve = (config.get("deploy") or {}).get("serve") or {}
    external = external_data_paths(config)
    for name, step in steps.items():
        where = f"steps.{name}"
        if not NAME_RE.match(name):
            diags.append(_name_diag(name, where, at(locate, where, "key"), "step name"))
        if "timeout" in step and parse_duration(step["timeout"]) is None:
            diags.append(_duration_diag(step["timeout"], f"{where}.timeout", at(locate, f"{where}.timeout", "value")))
        if step.get("resources"):
            diags.extend(_resource_errors(step["resources"], f"{where}.resources", locate))
        for i, dep in enumerate(step.get("needs") or []):
            if dep == name:
                diags.append(Diagnostic("MLP231", f"step `{name}` needs itself",
                                        at(locate, f"{where}.needs.{i}", "value"), "remove it from `needs`"))
            elif dep not in steps:
                hint = did_you_mean(dep, steps) or f"the steps are: {_listing(steps)}"
                diags.append(Diagnostic("MLP220", f"step `{name}` needs `{dep}`, which is not a step",
                                        at(locate, f"{where}.needs.{i}", "value"), hint))
        for i, cond in enumerate(step.get("gate") or []):
            if not step.get("metrics"):
                diags.append(Diagnostic(
                    "MLP222", f"step `{name}` gates on `{cond['metric']}` but declares no `metrics` file",
                    at(locate, f"{where}.gate.{i}.metric", "value"),
                    f"add `metrics: metrics/{name}.json` to the step and write `{cond['metric']}` there"))
            if "min" in cond and "max" in cond and cond["min"] > cond["max"]:
                diags.append(Diagnostic("MLP203", f"gate on `{cond['metric']}`: min {cond['min']} is above "
                                        f"max {cond['max']}; nothing can pass", at(locate, f"{where}.gate.{i}", "value"),
                                        "swap the bounds"))
            if cond.get("not_worse_than") and not registry:
                diags.append(Diagnostic(
                    "MLP225", f"step `{name}` compares `{cond['metric']}` with the registry's "
                    f"`{cond['not_worse_than']}` model, but the spec has no `registry`",
                    at(locate, f"{where}.gate.{i}.not_worse_than", "key"),
                    "add `registry: {name: ..., artifact: ...}`, or use `min:`/`max:` bounds"))
        for i, p in enumerate(step.get("inputs") or []):
            if path_problem(p):              # (the message is built only for a path with a problem)
                diags.extend(_path_diag(p, f"step `{name}` input", f"{where}.inputs.{i}", locate, external))
        outputs = step.get("outputs") or []
        metrics = step.get("metrics")
        for i, p in enumerate([*outputs, metrics] if metrics else outputs):
            problem = path_problem(p)
            if not problem and p.split("/", 1)[0] not in protect.firsts:
                continue                     # most outputs: nothing to say (messages are built only below)
            dotted, what = ((f"{where}.outputs.{i}", f"step `{name}` output") if i < len(outputs)
                            else (f"{where}.metrics", f"step `{name}` metrics file"))
            taken = protect.taken(p)
            if taken:
                diags.append(Diagnostic("MLP232", f"{what} `{p}` {taken}", at(locate, dotted, "value"), _TAKEN_HINT))
            elif problem:
                diags.extend(_path_diag(p, what, dotted, locate))
    for dname, entry in (config.get("data") or {}).items():
        diags.extend(_path_diag(entry["path"], f"data `{dname}`", f"data.{dname}.path", locate,
                                external if entry.get("external") else None))
    env = config.get("environment") or {}
    if env.get("requirements"):
        diags.extend(_path_diag(env["requirements"], "the requirements file", "environment.requirements", locate))
    for key in ("triggers.schedule", "monitor.schedule"):
        section, _, leaf = key.partition(".")
        value = (config.get(section) or {}).get(leaf)
        if value is not None:
            problem = cron_problem(value)
            if problem:
                diags.append(Diagnostic("MLP211", f"`{key}`: `{value}` is not a valid cron expression: {problem}",
                                        at(locate, key, "value"),
                                        "five fields: minute hour day-of-month month day-of-week, e.g. `0 3 * * 1` "
                                        "(03:00 every Monday, UTC)"))
    monitor = config.get("monitor") or {}
    for leaf in ("reference", "current"):
        value = (monitor.get("drift") or {}).get(leaf)
        if value:
            diags.extend(_path_diag(value, f"the drift {leaf} data", f"monitor.drift.{leaf}", locate, external))
    diags.extend(_resource_errors(serve.get("resources") or {}, "deploy.serve.resources", locate))
    auto = serve.get("autoscale")
    if auto and auto["min"] > auto["max"]:
        diags.append(Diagnostic("MLP203", f"`deploy.serve.autoscale`: min {auto['min']} is above max {auto['max']}",
                                at(locate, "deploy.serve.autoscale", "value"), "swap them"))
    if registry:
        after = registry.get("register_after")
        if after is not None and after not in steps:
            diags.append(Diagnostic("MLP225", f"`registry.register_after` names `{after}`, which is not a step",
                                    at(locate, "registry.register_after", "value"),
                                    did_you_mean(after, steps) or f"the steps are: {_listing(steps)}"))
        problem = path_problem(registry["artifact"])
        if problem:
            diags.extend(_path_diag(registry["artifact"], "the registry artifact", "registry.artifact", locate))
        else:
            outputs = {posixpath.normpath(o) for s in steps.values() for o in s.get("outputs") or []}
            artifact = posixpath.normpath(registry["artifact"])
            if artifact not in outputs and not any(artifact.startswith(o + "/") for o in outputs):
                diags.append(Diagnostic(
                    "MLP225", f"`registry.artifact` `{registry['artifact']}` is not an output of any step",
                    at(locate, "registry.artifact", "value"),
                    did_you_mean(registry["artifact"], sorted(outputs)) or "name a path listed in some step's `outputs`"))
        if serve and serve.get("model", "").split("@")[0] != registry["name"]:
            diags.append(Diagnostic(
                "MLP227", f"`deploy.serve.model` `{serve['model']}` is not the registry's model `{registry['name']}`",
                at(locate, "deploy.serve.model", "value"),
                f"use `{registry['name']}@production` (or @staging, or @VERSION)"))
    elif serve:
        diags.append(Diagnostic("MLP227", "`deploy.serve` needs a `registry` to load the model from",
                                at(locate, "deploy.serve", "key"), "add `registry: {name: ..., artifact: ...}`"))
    sweep = config.get("sweep")
    if sweep:
        params = config.get("params") or {}
        flat = sorted(_flatten(params))
        for pname in sweep["params"]:
            if _select(params, pname) is _MISSING:
                diags.append(Diagnostic("MLP226", f"`sweep.params.{pname}` is not a param",
                                        at(locate, f"sweep.params.{pname}", "key"),
                                        did_you_mean(pname, flat) or (f"the params are: {_listing(flat)}" if flat else
                                                                      "declare it under `params:` first")))
        select = sweep.get("select")
        if select and not any(s.get("metrics") for s in steps.values()):
            diags.append(Diagnostic(
                "MLP226", f"`sweep.select` ranks runs by `{select['metric']}` but no step reports metrics",
                at(locate, "sweep.select.metric", "value"), "declare a `metrics:` file on the step that computes it"))
    for name in env.get("variables") or {}:
        if name in (env.get("secrets") or []):
            diags.append(Diagnostic("MLP203", f"`{name}` is both a variable and a secret",
                                    at(locate, f"environment.variables.{name}", "key"),
                                    "keep it only under `secrets`; a variable's value is written into generated files"))
    return diags


_PARAM_USE = re.compile(r"\bparams(?:\.([A-Za-z0-9_.]+))?")
_RELATIVE_USE = re.compile(r"\$\{\.+([A-Za-z0-9_.]+)")


def unused_sweep_errors(raw: Mapping[str, Any], locate: Locate) -> list[Diagnostic]:
    """MLP228 for each swept param that nothing uses: no `${params.…}` outside `sweep` names it, its
    parent or a key below it (nor `${params}`), so every combination would run the same pipeline.

    `raw`: the composed spec with its interpolations kept. A use anywhere counts (a step's `run` or
    `env`, another param, a data path): only a param nothing mentions is refused.
    """
    sweep = raw.get("sweep")
    swept = list((sweep.get("params") or {}) if isinstance(sweep, Mapping) else ())
    if not swept:
        return []
    used: set[str] = set()
    leaves: set[str] = set()              # relative interpolations inside `params` (`${.lr}`)
    everything = False

    def walk(node: Any, in_params: bool) -> None:
        nonlocal everything
        if isinstance(node, Mapping):
            for v in node.values():
                walk(v, in_params)
        elif isinstance(node, list):
            for v in node:
                walk(v, in_params)
        elif isinstance(node, str) and "${" in node:
            for m in _PARAM_USE.finditer(node):
                if m.group(1) is None:
                    everything = True
                else:
                    used.add(m.group(1).rstrip("."))
            if in_params:
                leaves.update(m.group(1).rstrip(".") for m in _RELATIVE_USE.finditer(node))

    for key, value in raw.items():
        if key != "sweep":
            walk(value, key == "params")
    if everything:
        return []
    diags = []
    for name in swept:
        last = name.rsplit(".", 1)[-1]
        if any(u == name or u.startswith(name + ".") or name.startswith(u + ".") for u in used) or \
                any(leaf.split(".")[0] == last or leaf == last for leaf in leaves):
            continue
        diags.append(Diagnostic(
            "MLP228", f"`sweep.params.{name}`: no step uses the param `{name}`, so every combination would run "
                      "the same pipeline",
            at(locate, f"sweep.params.{name}", "key"),
            f"use it in a step's `run` (`${{params.{name}}}`), or remove it from the sweep"))
    return diags


def _listing(names: Any, n: int = 8) -> str:
    names = list(names)
    shown = ", ".join(f"`{x}`" for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _flatten(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in params.items():
        key = f"{prefix}{k}"
        out.append(key)
        if isinstance(v, Mapping):
            out.extend(_flatten(v, key + "."))
    return out


def external_data_paths(config: Mapping[str, Any]) -> set[str]:
    """Normalised paths of the `data` entries marked `external: true` (they may live outside the project)."""
    data = config.get("data")
    if not isinstance(data, Mapping):
        return set()
    return {posixpath.normpath(e["path"]) for e in data.values()
            if isinstance(e, Mapping) and e.get("external") is True and isinstance(e.get("path"), str)}


def under_external(path: str, external: set[str] | frozenset[str]) -> bool:
    """Whether `path` is an external data path or lies below one."""
    if not external:
        return False
    key = posixpath.normpath(path)
    return key in external or any(key.startswith(e.rstrip("/") + "/") for e in external)


def _path_diag(path: str, what: str, dotted: str, locate: Locate,
               external: set[str] | None = None) -> list[Diagnostic]:
    problem = path_problem(path)
    if not problem:
        return []
    if external and under_external(path, external) and problem in _EXTERNAL_OK:
        return []                        # declared `external: true` data: outside the project on purpose
    hint = "paths are relative to the spec's directory and stay inside the project"
    if problem in _EXTERNAL_OK:
        hint += "; data kept elsewhere on purpose: declare it under `data:` with `external: true` and read it from there"
    return [Diagnostic("MLP230", f"{what} `{path}` {problem}", at(locate, dotted, "value"), hint)]


_EXTERNAL_OK = frozenset({"is absolute", "leaves the project (`..`)"})


def resolved_outside(root: str, rel: str, dir_cache: dict[str, Any], follow_leaf: bool = True) -> str | None:
    """Where `root/rel` really is when a symlink takes it outside `root` (a resolved directory), else None.

    The parent directories are resolved (memoised in `dir_cache`); the last part only when
    `follow_leaf` (an output that is itself a symlink is replaced, not written through).
    Parts that do not exist yet are taken as written.
    """
    if os.sep == "/" and root and not rel.startswith("/"):     # posixpath.join and .split, inlined
        full = os.path.normpath((root if root.endswith("/") else root + "/") + rel)
        cut = full.rfind("/")
        parent, leaf = (full[:cut], full[cut + 1:]) if cut > 0 and full[cut - 1] != "/" else os.path.split(full)
    else:
        parent, leaf = os.path.split(os.path.normpath(os.path.join(root, rel)))
    real_parent = dir_cache.get(parent)
    if real_parent is None:
        real_parent = dir_cache[parent] = os.path.realpath(parent)
        # a "\0" key (never a path) holds what is known of the links in the directory (see _is_link)
        dir_cache[parent + "\0"] = 0 if os.path.isdir(real_parent) else _NO_LINKS
    real = real_parent + leaf if real_parent.endswith("/") else real_parent + "/" + leaf
    if follow_leaf and _is_link(real, real_parent, parent + "\0", dir_cache):
        real = os.path.realpath(real)
    if real == root or real.startswith(root.rstrip("/") + "/"):
        return None
    return real


_NO_LINKS, _LINKS = "no links", "links"
#: Leaves of one directory looked at one by one (an lstat each) before the directory is listed once.
_LIST_AFTER = 8


def _is_link(real: str, real_parent: str, key: str, dir_cache: dict[str, Any]) -> bool:
    """``os.path.islink(real)`` for `real`, an entry of the directory `real_parent`.

    ``dir_cache[key]`` is what is known of the directory: no such directory, or no symlink in it
    (`_NO_LINKS`: then nothing in it is a link), some symlinks (`_LINKS`: ask each entry), or how
    many of its entries were asked so far. After `_LIST_AFTER` of them the directory is listed once
    (a step's outputs and inputs mostly share a few directories: 10,000 lstats cost ~80 ms here).
    """
    state = dir_cache[key]
    if state == _NO_LINKS:
        return False
    if state != _LINKS:
        if state < _LIST_AFTER:
            dir_cache[key] = state + 1
        else:
            try:
                with os.scandir(real_parent) as entries:
                    state = _LINKS if any(entry.is_symlink() for entry in entries) else _NO_LINKS
            except OSError:
                state = _LINKS
            dir_cache[key] = state
            if state == _NO_LINKS:
                return False
    return os.path.islink(real)


def escaping_paths(pipeline: Any, project_dir: Any, steps: Any = None) -> list[Diagnostic]:
    """MLP230 for each path of `pipeline` (an IR Pipeline) that leads out of `project_dir` through a symlink.

    Data marked `external: true`, and inputs under such data, may; paths that are already
    refused as written (absolute, `..`) are not looked at again. `steps`: names to check (default all).
    """
    root = os.path.realpath(str(project_dir))
    cache: dict[str, Any] = {}
    external = {posixpath.normpath(d.path) for d in pipeline.data if d.external}
    diags: list[Diagnostic] = []
    # the answer per path, followed to its last part (inputs, data) or not (outputs, metrics): a path
    # is often an output and several inputs
    followed: dict[str, str | None] = {}
    written: dict[str, str | None] = {}

    def outside(path: str, follow_leaf: bool) -> str | None:
        seen = followed if follow_leaf else written
        if path in seen:
            return seen[path]
        if path_problem(path) or (external and under_external(path, external)):
            real = seen[path] = None
        else:
            real = seen[path] = resolved_outside(root, path, cache, follow_leaf)
        return real

    def report(description: str, path: str, real: str, dotted: str) -> None:
        diags.append(Diagnostic(
            "MLP230", f"{description} `{path}` leads outside the project through a symlink (to `{real}`)",
            pipeline.location(dotted),
            "keep it inside the project (copy it in, or replace the symlink); data kept elsewhere on purpose: "
            "declare it under `data:` with `external: true`"))

    def check(path: str | None, description: str, dotted: str, follow_leaf: bool = True) -> None:
        if path:
            real = outside(path, follow_leaf)
            if real is not None:
                report(description, path, real, dotted)

    for d in pipeline.data:
        check(d.path, f"data `{d.name}`", f"data.{d.name}.path")
    wanted = None if steps is None else set(steps)
    for step in pipeline.steps:
        name = step.name
        if wanted is not None and name not in wanted:
            continue
        for i, p in enumerate(step.inputs):       # (descriptions are made only for a path that leads out)
            real = outside(p, True) if p else None
            if real is not None:
                report(f"step `{name}` input", p, real, f"steps.{name}.inputs.{i}")
        for i, p in enumerate(step.outputs):
            real = outside(p, False) if p else None
            if real is not None:
                report(f"step `{name}` output", p, real, f"steps.{name}.outputs.{i}")
        metrics = step.metrics
        if metrics:
            real = outside(metrics, False)
            if real is not None:
                report(f"step `{name}` metrics file", metrics, real, f"steps.{name}.metrics")
    if pipeline.registry is not None:
        check(pipeline.registry.artifact, "the registry artifact", "registry.artifact")
    check(pipeline.environment.requirements, "the requirements file", "environment.requirements")
    monitor = getattr(pipeline, "monitor", None)
    if monitor is not None and steps is None:
        check(monitor.drift.reference, "the drift reference data", "monitor.drift.reference")
        check(monitor.drift.current, "the drift current data", "monitor.drift.current")
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
        diags.append(Diagnostic("MLP212", f"`{where}.cpu`: `{res['cpu']}` is not a CPU quantity",
                                at(locate, f"{where}.cpu", "value"),
                                "a positive number of cores: `2`, `0.5`, or millicores: `500m`"))
    if "memory" in res and not check_memory(res["memory"]):
        value = str(res["memory"])
        m = re.match(r"^([0-9.]+)\s*([KMGTPE])i?B$", value, re.I)
        if m:
            hint = (f"Kubernetes writes bytes without `B`: `{m.group(1)}{m.group(2).upper()}i` (binary, "
                    f"{m.group(2).upper()}iB) or `{m.group(1)}{m.group(2).upper()}` (decimal)")
        else:
            hint = "a positive Kubernetes quantity such as `512Mi` or `4Gi`"
        diags.append(Diagnostic("MLP212", f"`{where}.memory`: `{value}` is not a Kubernetes quantity",
                                at(locate, f"{where}.memory", "value"), hint))
    return diags


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_CONTROL = re.compile(r"[\x00-\x1f]")


#: A path that path_problem() passes: it starts with a letter, digit or `_` (not `/`, `\\`, `~`, a drive)
#: and holds only those, `.`, `-` and `/` (no backslash, control character or `:`); with no `..` in it.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*").fullmatch


def path_problem(path: str) -> str | None:
    """None if `path` stays inside the project, else what is wrong with it."""
    if _PLAIN_PATH(path) and ".." not in path:      # most paths: none of the rules below can apply
        return None
    return _path_problem_by_rules(path)


def _path_problem_by_rules(path: str) -> str | None:
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        return "is absolute"
    if "\\" in path:
        return "uses backslashes (write `/`)"
    if ".." in path and ".." in path.split("/"):
        normal = posixpath.normpath(path)
        if normal == ".." or normal.startswith("../"):
            return "leaves the project (`..`)"
        return f"contains `..` (write `{normal}`)"
    if _CONTROL.search(path):
        return "contains control characters"
    if path.startswith("~"):
        return "starts with `~`"
    return None


def warning(code: str, message: str, loc: Location | None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, loc, hint, Severity.WARNING)


# -- secrets: a declared secret's value never enters the compiled pipeline -----------------------


def secret_values_in(config: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """The declared secrets (``environment.secrets`` of `config`) set in `environ`: name -> value."""
    env = config.get("environment") if isinstance(config, Mapping) else None
    names = env.get("secrets") if isinstance(env, Mapping) else None
    return declared_secret_values(names, environ) if isinstance(names, list) else {}


def declared_secret_values(names: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Secret names (a spec's list, a compiled pipeline's tuple) set in `environ` to a value worth looking for."""
    return {n: environ[n] for n in names
            if isinstance(n, str) and len(environ.get(n) or "") >= MIN_SECRET_LENGTH}


_SECRET_HINT = ("a secret reaches the steps only through the environment: write `${name}` in `run` (the shell "
                "expands it when the step runs); an override, `${{oc.env:{name}}}` or the value itself would be "
                "written into generated files, the lock file and the run ledger")


def secret_override_errors(overrides: Any, secrets: Mapping[str, str]) -> list[Diagnostic]:
    """MLP204 for each command-line override that holds a declared secret's value (shown redacted)."""
    diags = []
    needles = secret_needles(secrets)
    for ov in overrides:
        for value, name in needles:
            if value in ov:
                diags.append(Diagnostic(
                    "MLP204", f"the override holds the value of the declared secret `{name}`",
                    Location(override=label_secrets(ov, secrets)), _SECRET_HINT.format(name=name)))
                break
    return diags


def secret_value_errors(config: Any, secrets: Mapping[str, str], locate: Locate) -> list[Diagnostic]:
    """MLP204 where the composed spec holds a declared secret's value (from `${oc.env:…}`, a literal, a file)."""
    if not secrets:
        return []
    diags: list[Diagnostic] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        elif isinstance(node, str):
            found(node, path)

    needles = secret_needles(secrets)

    def found(text: str, path: tuple[Any, ...]) -> None:
        for value, name in needles:
            if value in text:
                dotted = label_secrets(".".join(str(p) for p in path), secrets)
                loc = locate(dotted)
                if loc is not None and loc.override is not None:
                    loc = Location(override=label_secrets(loc.override, secrets))
                diags.append(Diagnostic("MLP204", f"`{dotted}` holds the value of the declared secret `{name}`",
                                        loc, _SECRET_HINT.format(name=name)))
                return

    walk(config, ())
    return diags
