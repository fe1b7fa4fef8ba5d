#!/usr/bin/env python3
"""Generate the reference docs from the code: spec, CLI, error codes, hooks, capabilities.

    python docs/generate.py           rewrite docs/reference/*.md
    python docs/generate.py --check   exit 1 (listing the files) when a committed page is stale

Every page is a pure function of the installed code: the JSON Schema (core plus
every installed target's section), the argparse parser, the diagnostics
registry, the hookspecs' docstrings and the targets' declared capabilities.
Run it in the project's virtualenv (`.venv/bin/python docs/generate.py`) so
that the same plugins are installed as in the tests.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
REFERENCE = DOCS / "reference"
REGENERATE = "python docs/generate.py"


def _banner(source: str) -> str:
    return (f"<!-- Generated from {source} by docs/generate.py; do not edit. "
            f"Regenerate with `{REGENERATE}`. -->\n\n")


def _cell(text: Any) -> str:
    """Text for one Markdown table cell."""
    out = " ".join(str(text).split())
    return out.replace("|", "\\|") if out else ""


def _code(text: Any) -> str:
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- plugins ----------------------------------------------------------------------------------


def _plugins() -> Any:
    from mlprism._internal.compiler import get_plugins

    plugins = get_plugins()
    if plugins.problems:
        problems = "\n".join(d.render() for d in plugins.problems)
        raise SystemExit(f"plugins failed to load; the docs would be incomplete:\n{problems}")
    return plugins


def _distribution_of(plugins: Any, target_name: str) -> str:
    plugin = plugins.targets.info(target_name).plugin
    info = next((p for p in plugins.infos if p.name == plugin), None)
    return info.distribution if info else plugin


# -- spec.md ------------------------------------------------------------------------------------


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Follow a local `$ref`; the referring node's own keys (description, default) win."""
    ref_name = None
    node = dict(node)
    while "$ref" in node:
        ref = node.pop("$ref")
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref}")
        ref_name = ref_name or ref.rsplit("/", 1)[1]
        target = dict(root["$defs"][ref.rsplit("/", 1)[1]])
        target.update(node)
        node = target
    return node, ref_name


def _type_of(node: Mapping[str, Any], ref_name: str | None, root: Mapping[str, Any]) -> str:
    if "const" in node:
        return _code(json.dumps(node["const"]))
    if "enum" in node:
        return " \\| ".join(_code(json.dumps(v) if not isinstance(v, str) else v) for v in node["enum"])
    if ref_name in ("duration", "cron", "path", "name"):
        return ref_name
    for key in ("oneOf", "anyOf"):
        if key in node:
            alts = []
            for alt in node[key]:
                resolved, name = _resolve(alt, root)
                alts.append(_type_of(resolved, name, root))
            return " or ".join(dict.fromkeys(alts))
    tp = node.get("type")
    if isinstance(tp, list):
        return " or ".join(tp)
    if tp == "array":
        items, name = _resolve(node.get("items") or {}, root)
        inner = _type_of(items, name, root) if items else "any"
        return f"list of {inner}"
    if tp == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        values, name = _resolve(node["additionalProperties"], root)
        return f"mapping of {_type_of(values, name, root)}" if values.get("type") != "object" or name is None \
            else f"mapping of {name}"
    return str(tp or "any")


def _constraints(node: Mapping[str, Any]) -> list[str]:
    out = []
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"), ("minLength", "length ≥"),
                      ("maxLength", "length ≤"), ("minItems", "items ≥"), ("minProperties", "keys ≥")):
        if key in node:
            out.append(f"{word} {node[key]}")
    if "pattern" in node:
        out.append(f"matches {_code(node['pattern'])}")
    # the form of a list's items, a mapping's values, and each alternative of a oneOf/anyOf
    parts = [("items", node.get("items")), ("values", node.get("additionalProperties"))]
    parts += [("", alt) for key in ("oneOf", "anyOf") for alt in node.get(key) or ()]
    for what, sub in parts:
        if isinstance(sub, Mapping):
            for inner in (sub, sub.get("items")):
                if isinstance(inner, Mapping) and "pattern" in inner and inner is not node:
                    label = what or ("items" if inner is not sub else "text")
                    text = f"{label} {'matches' if label == 'text' else 'match'} {_code(inner['pattern'])}"
                    if text not in out:
                        out.append(text)
    if node.get("uniqueItems"):
        out.append("unique items")
    return out


def _fields(node: Mapping[str, Any], path: str, root: Mapping[str, Any],
            required: bool = False, depth: int = 0) -> Iterator[list[str]]:
    node, ref_name = _resolve(node, root)
    if path:
        description = node.get("description", "")
        extra = _constraints(node)
        if required:
            extra.insert(0, "**required**")
        text = _cell(description) + (" (" + "; ".join(extra) + ")" if extra else "")
        default = _code(json.dumps(node["default"])) if "default" in node else ""
        yield [_code(path), _type_of(node, ref_name, root), default, text.strip()]
    if depth > 8:
        return
    req = set(node.get("required") or ())
    for key, child in (node.get("properties") or {}).items():
        yield from _fields(child, f"{path}.{key}" if path else key, root, key in req, depth + 1)
    extra_props = node.get("additionalProperties")
    if isinstance(extra_props, dict) and extra_props:
        resolved, _ = _resolve(extra_props, root)
        if resolved.get("properties") or isinstance(resolved.get("additionalProperties"), dict):
            yield from _fields(extra_props, f"{path}.<name>", root, False, depth + 1)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        resolved, _ = _resolve(node["items"], root)
        if resolved.get("properties"):
            for row in _fields(node["items"], f"{path}[]", root, False, depth + 1):
                if row[0] != _code(f"{path}[]"):
                    yield row


def spec_md(plugins: Any) -> str:
    from mlprism._internal.plugins import schema_sections
    from mlprism._internal.validate import core_schema, full_schema

    sections = schema_sections(plugins)
    schema = full_schema(sections)
    parts = [_banner("the JSON Schema (`mlprism schema`)"), "# Spec reference\n\n",
             f"{schema.get('description', '')}\n\n",
             "Every field of `pipeline.yaml`, generated from the JSON Schema (Draft 2020-12) that "
             "validates it: the core schema `schemas/pipeline.v1.json` plus the section each installed "
             "target contributes under `targets:`. `mlprism schema` prints the same schema for editors "
             "(`# yaml-language-server: $schema=...`). `<name>` stands for a key you choose, `[]` for "
             "each item of a list.\n\n"]
    core = core_schema()
    required = set(core.get("required") or ())
    for key, child in core["properties"].items():
        if key == "targets":
            continue
        rows = list(_fields(child, key, core, key in required))
        parts.append(f"## `{key}`\n\n")
        parts.append(_table(["field", "type", "default", "description"], rows) + "\n")
    parts.append("## `targets`\n\n")
    parts.append(_cell(core["properties"]["targets"].get("description", "")) + "\n\n")
    for name in sorted(sections):
        origin = (f" (plugin `{_distribution_of(plugins, name)}`)" if name in plugins.targets else "")
        parts.append(f"### `targets.{name}`{origin}\n\n")
        rows = list(_fields(sections[name], f"targets.{name}", schema))
        parts.append(_table(["field", "type", "default", "description"], rows) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


# -- cli.md ------------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:          # aliases
                    continue
                seen.add(id(sub))
                out.append((name, sub, helps.get(name, "")))
    return out


def _argument_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                mv = action.metavar or action.dest.upper()
                metavar = " " + (mv if isinstance(mv, str) else " ".join(mv))
            name = ", ".join(_code(s + metavar) for s in action.option_strings)
        else:
            metavar = action.metavar or action.dest
            name = _code(metavar if isinstance(metavar, str) else " ".join(metavar))
            if action.nargs in ("*", "+"):
                name += " …"
        details = []
        if action.choices is not None:
            details.append("one of " + ", ".join(_code(c) for c in action.choices))
        if action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
            details.append(f"default {_code(action.default)}")
        if isinstance(action, argparse._AppendAction) and "repeatable" not in (action.help or ""):
            details.append("repeatable")
        if action.required and action.option_strings:
            details.append("required")
        help_text = _cell(action.help or "")
        if isinstance(action, argparse._VersionAction):
            help_text = "print the version and exit"
        rows.append([name, help_text + (f" ({'; '.join(details)})" if details else "")])
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    text = parser.format_usage().strip()
    text = re.sub(r"^usage: ", "", text)
    return " ".join(text.split())


def _command_sections(parser: argparse.ArgumentParser, prefix: str, level: int) -> Iterator[str]:
    for name, sub, help_text in _subparsers(parser):
        full = f"{prefix} {name}"
        yield f"{'#' * level} `{full}`\n\n"
        description = sub.description or help_text
        if description:
            yield _cell(description) + "\n\n"
        yield f"```\n{_usage(sub)}\n```\n\n"
        rows = _argument_rows(sub)
        if rows:
            yield _table(["argument", "meaning"], rows) + "\n"
        yield from _command_sections(sub, full, min(level + 1, 4))


def cli_md() -> str:
    from mlprism._internal.cli import build_parser

    os.environ["COLUMNS"] = "100"        # argparse wraps usage lines to the terminal: make it fixed
    parser = build_parser()
    parser.prog = "mlprism"
    doc = (sys.modules["mlprism._internal.cli"].__doc__ or "").strip()
    parts = [_banner("the argparse parser (`mlprism._internal.cli.build_parser`)"), "# CLI reference\n\n",
             " ".join(doc.split()) + "\n\n",
             f"```\n{_usage(parser)}\n```\n\n",
             _table(["global option", "meaning"], _argument_rows(parser)) + "\n",
             "## Commands\n\n",
             _table(["command", "what it does"],
                    [[f"[`{n}`](#mlprism-{n})", _cell(h)] for n, _, h in _subparsers(parser)]) + "\n"]
    parts += list(_command_sections(parser, "mlprism", 2))
    return "".join(parts).rstrip("\n") + "\n"


# -- error-codes.md -------------------------------------------------------------------------------


_GROUPS = {
    "0": "The tool itself", "1": "Loading and composing the spec", "2": "Validation",
    "3": "Plugins and targets", "4": "Running",
}


def error_codes_md(plugins: Any) -> str:
    from mlprism._internal.cli import build_parser
    from mlprism.diagnostics import CODES

    build_parser()      # command modules register their codes on import
    parts = [_banner("`mlprism.diagnostics.CODES`"), "# Error codes\n\n",
             "Every mistake mlprism reports is a diagnostic with a code, a location (`file:line:col`, or the "
             "command-line override that caused it) and usually a hint. `--json` on `validate`, `graph` and "
             "`plugins` prints diagnostics as JSON. Exit codes: 0 ok, 1 a pipeline or check failed, 2 a user "
             "error (spec or command line), 3 an internal error.\n\n"
             "Plugins register their own codes with `mlprism.register_code` under a prefix of their own; the "
             "codes of the plugins installed when this page was generated are listed at the end.\n\n"]
    core = {c: s for c, s in CODES.items() if c.startswith("MLP")}
    by_group: dict[str, list[list[str]]] = {}
    for code in sorted(core):
        by_group.setdefault(code[3], []).append([f"<a id=\"{code.lower()}\"></a>`{code}`", _cell(core[code])])
    for digit in sorted(by_group):
        title = _GROUPS.get(digit, f"{digit}xx")
        parts.append(f"## {digit}xx — {title}\n\n")
        parts.append(_table(["code", "meaning"], by_group[digit]) + "\n")
    others = sorted(c for c in CODES if not c.startswith("MLP"))
    if others:
        parts.append("## Codes of installed plugins\n\n")
        parts.append(_table(["code", "meaning"],
                            [[f"<a id=\"{c.lower()}\"></a>`{c}`", _cell(CODES[c])] for c in others]) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


# -- hooks.md ----------------------------------------------------------------------------------------


def hooks_md() -> str:
    from mlprism import hookspecs

    source, _ = inspect.getsourcelines(hookspecs)
    section_of: dict[str, str] = {}
    section = "Hooks"
    for line in source:
        m = re.match(r"#\s*--\s*(.+?)\s*-{3,}", line)
        if m:
            section = m.group(1)
        m = re.match(r"def (mlprism_\w+)\(", line)
        if m:
            section_of[m.group(1)] = section
    hooks = [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("mlprism_") and hasattr(fn, "mlprism_spec")]
    hooks.sort(key=lambda item: inspect.getsourcelines(item[1])[1])
    parts = [_banner("the docstrings in `compiler/mlprism/hookspecs.py`"), "# Hook reference\n\n",
             _rst_to_md(inspect.cleandoc(hookspecs.__doc__ or "")) + "\n\n",
             "See [the plugin guide](../plugins.md) for a walk-through.\n\n"]
    parts.append(_table(["hook", "section", "summary"],
                        [[f"[`{n}`](#{n})", section_of.get(n, ""), _cell(_inline(inspect.getdoc(f) or "").split("\n\n")[0])]
                         for n, f in hooks]) + "\n")
    current = None
    for name, fn in hooks:
        if section_of.get(name) != current:
            current = section_of.get(name)
            parts.append(f"## {current}\n\n")
        signature = str(inspect.signature(fn)).replace("'", "")
        opts = {k: v for k, v in (fn.mlprism_spec or {}).items() if v and k != "warn_on_impl"}
        parts.append(f"### `{name}`\n\n```python\ndef {name}{signature}\n```\n\n")
        if opts:
            parts.append("pluggy options: " + ", ".join(f"`{k}`" for k in sorted(opts)) + "\n\n")
        parts.append(_rst_to_md(inspect.getdoc(fn) or "") + "\n\n")
    return "".join(parts).rstrip("\n") + "\n"


def _rst_to_md(text: str) -> str:
    """The little reStructuredText hook docstrings use: ``code``, :func:`x`, `::` blocks."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(_inline(head) + ":")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            indent = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
            lang = "toml" if any("entry-points" in b for b in block) else "python"
            out += ["", f"```{lang}", *[b[indent:] for b in block], "```", ""]
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out).strip()


def _inline(text: str) -> str:
    text = re.sub(r":(?:func|class|meth|data|mod|attr):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


# -- capabilities.md ---------------------------------------------------------------------------------


def capabilities_md(plugins: Any) -> str:
    from mlprism import FEATURES

    targets = list(plugins.targets)
    names = [t.name for t in targets]
    parts = [_banner("each installed target's `capabilities`"), "# Capability matrix\n\n",
             "Which spec features each installed target can express, from what the targets declare "
             "(`Target.capabilities`). Compiling a spec that uses a feature its target cannot express "
             "fails with [`MLP302`](error-codes.md#mlp302) at the line that uses it, with the "
             "command-line override that removes it — a feature never silently disappears. The "
             "conformance suite (`mlprism.testing.TargetConformance`) checks every declared feature "
             "against what the target actually generates.\n\n"]
    header = ["feature", *[f"`{n}`" for n in names]]
    rows = []
    for feature in FEATURES:
        rows.append([f"[`{feature}`](#{feature})",
                     *["✓" if feature in t.capabilities else "MLP302" for t in targets]])
    parts.append("✓: the target expresses the feature (how: below). MLP302: the target cannot; a spec using "
                 "it is refused when compiled for that target.\n\n")
    parts.append(_table(header, rows) + "\n")
    parts.append(_table(["target", "what it generates", "distribution"],
                        [[f"`{t.name}`", _cell(t.description), f"`{_distribution_of(plugins, t.name)}`"]
                         for t in targets]) + "\n")
    parts.append("## How each target expresses each feature\n\n")
    for feature, meaning in FEATURES.items():
        parts.append(f"### `{feature}`\n\n{meaning}\n\n")
        parts.append(_table(["target", "how"],
                            [[f"`{t.name}`", _cell(t.capabilities[feature]) if feature in t.capabilities
                              else "not supported: `MLP302`"] for t in targets]) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


# -- main ------------------------------------------------------------------------------------------------


def pages() -> dict[str, Callable[[], str]]:
    plugins = _plugins()
    return {
        "spec.md": lambda: spec_md(plugins),
        "cli.md": cli_md,
        "error-codes.md": lambda: error_codes_md(plugins),
        "hooks.md": hooks_md,
        "capabilities.md": lambda: capabilities_md(plugins),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    parser.add_argument("--out", type=Path, default=REFERENCE, help="output directory (default docs/reference)")
    args = parser.parse_args(argv)
    stale = []
    for name, make in pages().items():
        text = make()
        dest = args.out / name
        current = dest.read_text(encoding="utf-8") if dest.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
            diff = difflib.unified_diff((current or "").splitlines(), text.splitlines(),
                                        f"committed/{name}", f"generated/{name}", lineterm="", n=1)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {dest}")
    if stale:
        print(f"stale: {', '.join(stale)} — run `{REGENERATE}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
