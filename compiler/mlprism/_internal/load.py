"""Stage 1 — load: YAML into plain Python with a source map.

Every key and value knows its ``file:line:col``. Duplicate keys, unknown tags,
alias bombs, oversized files and pathological nesting become diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlprism.diagnostics import Diagnostic, DiagnosticError, Location

try:  # the C parser is several times faster; fall back to pure Python
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_BYTES = 8 * 1024 * 1024        # a spec is configuration, not data
MAX_DEPTH = 64
MAX_NODES = 200_000                # node visits, aliases expanded: defeats "billion laughs"

Path_ = tuple[str, ...]


@dataclass
class SourceMap:
    """Dotted key path -> Location of the key (for mappings) or the value."""

    file: str
    keys: dict[str, Location] = field(default_factory=dict)
    values: dict[str, Location] = field(default_factory=dict)

    def lookup(self, dotted: str) -> Location | None:
        return self.keys.get(dotted) or self.values.get(dotted)


@dataclass
class Loaded:
    data: Any
    source_map: SourceMap
    text: str


_constructor = yaml.constructor.SafeConstructor()


def _loc(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def load_text(text: str, file: str) -> Loaded:
    """Parse YAML text. Raises DiagnosticError on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise DiagnosticError([Diagnostic("MLP103", f"spec is larger than {MAX_BYTES // (1024 * 1024)} MiB",
                                          Location(file), "split data out of the spec; it holds configuration only")])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _loc(file, mark) if mark else Location(file)
        problem = exc.problem or exc.context or "invalid YAML"
        raise DiagnosticError([Diagnostic("MLP100", f"YAML syntax error: {problem}", loc,
                                          "check indentation and quoting; strings with `: ` or `#` need quotes")])
    except yaml.YAMLError as exc:
        raise DiagnosticError([Diagnostic("MLP100", f"YAML syntax error: {exc}", Location(file))])
    smap = SourceMap(file)
    if root is None:
        return Loaded({}, smap, text)
    builder = _Builder(file, smap)
    data = builder.build(root, (), 0)
    if builder.diags:
        raise DiagnosticError(builder.diags)
    return Loaded(data, smap, text)


def load_file(path: Path, display: str | None = None) -> Loaded:
    display = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DiagnosticError([Diagnostic("MLP103", f"spec is larger than {MAX_BYTES // (1024 * 1024)} MiB ({size} bytes)",
                                              Location(display), "a spec holds configuration only; keep data in files it names")])
        text = path.read_text(encoding="utf-8")
    except DiagnosticError:
        raise
    except FileNotFoundError:
        raise DiagnosticError([Diagnostic("MLP102", f"no such file: {display}", None,
                                          "give the path of a pipeline spec, e.g. `pipeline.yaml`")])
    except IsADirectoryError:
        raise DiagnosticError([Diagnostic("MLP102", f"{display} is a directory, not a spec file", None,
                                          f"did you mean `{display.rstrip('/')}/pipeline.yaml`?")])
    except UnicodeDecodeError as exc:
        raise DiagnosticError([Diagnostic("MLP102", f"{display} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                          Location(display), "save the spec as UTF-8")])
    except OSError as exc:
        raise DiagnosticError([Diagnostic("MLP102", f"cannot read {display}: {exc.strerror}", Location(display))])
    return load_text(text, display)


class _Builder:
    def __init__(self, file: str, smap: SourceMap) -> None:
        self.file = file
        self.smap = smap
        self.diags: list[Diagnostic] = []
        self.visits = 0
        self.recording = True

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.visits += 1
        if self.visits > MAX_NODES:
            raise DiagnosticError([Diagnostic("MLP103", "the YAML expands to too many nodes (alias bomb?)",
                                              _loc(self.file, node.start_mark),
                                              "do not nest aliases (`*ref`) that expand exponentially")])
        if depth > MAX_DEPTH:
            raise DiagnosticError([Diagnostic("MLP103", f"the YAML is nested deeper than {MAX_DEPTH} levels",
                                              _loc(self.file, node.start_mark), "flatten the structure")])
        dotted = ".".join(path)
        if self.recording and dotted not in self.smap.values:
            self.smap.values[dotted] = _loc(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, str(i)), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if not tag.startswith("tag:yaml.org,2002:") or tag.endswith((":binary", ":omap", ":pairs", ":set")):
            self.diags.append(Diagnostic("MLP104", f"unsupported YAML tag `{tag}`", _loc(self.file, node.start_mark),
                                         "remove the tag; a spec holds plain strings, numbers, booleans, lists and mappings"))
            return None
        try:
            value = _constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.diags.append(Diagnostic("MLP100", f"bad scalar: {exc}", _loc(self.file, node.start_mark)))
            return None
        if tag.endswith((":timestamp",)):
            return node.value          # keep dates as text, as written
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, yaml.Mark] = {}
        if node.tag not in ("tag:yaml.org,2002:map",):
            self.diags.append(Diagnostic("MLP104", f"unsupported YAML tag `{node.tag}`", _loc(self.file, node.start_mark)))
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = self.build(value_node, path, depth + 1)
                for item in merged if isinstance(merged, list) else [merged]:
                    if isinstance(item, dict):
                        for k, v in item.items():
                            out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.diags.append(Diagnostic("MLP104", "mapping keys must be plain strings", _loc(self.file, key_node.start_mark)))
                continue
            key = self._scalar(key_node)
            if isinstance(key, bool):  # YAML 1.1 reads `on:`/`yes:` as booleans: keep the text
                key = key_node.value
            if key is None:
                key = key_node.value if key_node.value not in ("", "~", "null") else "null"
            key = str(key)
            if key in seen:
                first = seen[key]
                self.diags.append(Diagnostic(
                    "MLP101", f"duplicate key `{key}` (first defined at line {first.line + 1})",
                    _loc(self.file, key_node.start_mark), "remove one of them; YAML would silently keep the last"))
                continue
            seen[key] = key_node.start_mark
            child = (*path, key)
            if self.recording:
                self.smap.keys.setdefault(".".join(child), _loc(self.file, key_node.start_mark))
            out[key] = self.build(value_node, child, depth + 1)
        return out
