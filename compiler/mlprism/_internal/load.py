"""Stage 1 — load: YAML into plain Python with a source map.

Every key and value knows its ``file:line:col``. Duplicate keys, unknown tags,
alias bombs, oversized files, tabs, non-UTF-8 bytes and pathological nesting
become diagnostics, never exceptions.

Scalars follow YAML 1.1 (PyYAML's safe loader) with two changes that make the
values the same as Hydra/OmegaConf would read them: ``1e-3`` is a float (YAML
1.1 wants ``1.0e-3``), and dates stay text.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mlprism.diagnostics import Diagnostic, DiagnosticError, Location

try:  # the C parser is several times faster; fall back to pure Python
    from yaml import CSafeLoader as _Base
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Base  # type: ignore[assignment]

F = TypeVar("F", bound=Callable[..., Any])
MAX_BYTES = 4 * 1024 * 1024        # a spec is configuration, not data
MAX_DEPTH = 64
MAX_NODES = 200_000                # node visits, aliases expanded: defeats "billion laughs"

Path_ = tuple[str, ...]
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader with OmegaConf's float syntax and without timestamps."""


# OmegaConf's float resolver (so `1e-3` is a float, as Hydra reads it); no timestamps.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in _Base.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:
     [-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)
_RESOLVERS = _Loader.yaml_implicit_resolvers
_ScalarNode, _MappingNode = yaml.ScalarNode, yaml.MappingNode


def _fast_resolve(self: Any, kind: Any, value: Any, implicit: Any) -> str:
    """Resolver.resolve without its per-call overhead (same table, same order)."""
    if kind is yaml.ScalarNode:
        if implicit[0]:
            for tag, regexp in _RESOLVERS.get(value[:1], ()) if value else _RESOLVERS.get("", ()):
                if regexp.match(value):
                    return tag
        return _STR
    return _SEQ if kind is yaml.SequenceNode else _MAP


_Loader.resolve = _fast_resolve
if not _Loader.yaml_path_resolvers:
    # Without path resolvers these two do nothing, but the C composer calls them for every node:
    # C-level callables (which do not bind `self`) that accept the same arguments and do nothing
    # spare two Python calls per node. `descend_resolver(parent, index)` / `ascend_resolver()`.
    _Loader.descend_resolver = slice
    _Loader.ascend_resolver = tuple


@dataclass
class SourceMap:
    """Dotted key path -> position of the key (for mapping entries) and of the value.

    Positions are stored as the YAML parser's marks (``line`` and ``column``, 0-based: the
    parser made them anyway) and turned into :class:`Location` objects on lookup. :meth:`lookup` points at what a
    diagnostic is most likely about: the value when it is a scalar or a flow
    collection (``{...}``, ``[...]``) on the key's line, else the key.
    """

    file: str
    keys: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    block: set[str] = field(default_factory=set)      # paths whose value is a block mapping or list

    def _at(self, pos: Any) -> Location:
        return pos if isinstance(pos, Location) else _loc(self.file, pos)

    def position(self, dotted: str, prefer: str = "auto") -> Any:
        """Where `dotted` is, as stored (a mark or a Location), or None: `prefer` is "auto" (see
        above), "key" or "value"."""
        kpos = self.keys.get(dotted)
        vpos = self.values.get(dotted)
        if kpos is not None and (prefer == "key" or vpos is None or (prefer == "auto" and dotted in self.block)):
            return kpos
        return vpos

    def lookup(self, dotted: str, prefer: str = "auto") -> Location | None:
        """The position of `dotted` as a Location (see :meth:`position`)."""
        pos = self.position(dotted, prefer)
        return None if pos is None else self._at(pos)

    def value_location(self, dotted: str) -> Location | None:
        pos = self.values.get(dotted)
        return None if pos is None else self._at(pos)

@dataclass
class Loaded:
    data: Any
    source_map: SourceMap
    text: str


_constructor = yaml.constructor.SafeConstructor()
_CONSTRUCT = {
    "tag:yaml.org,2002:int": _constructor.construct_yaml_int,
    "tag:yaml.org,2002:float": _constructor.construct_yaml_float,
    "tag:yaml.org,2002:bool": _constructor.construct_yaml_bool,
    "tag:yaml.org,2002:null": _constructor.construct_yaml_null,
}


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def _too_big(file: str, size: int) -> DiagnosticError:
    return DiagnosticError([Diagnostic(
        "MLP103", f"the spec is {size} bytes, more than the limit of {MAX_BYTES // (1024 * 1024)} MiB",
        Location(file, 1, 1), "a spec holds configuration only; keep data in the files it names")])


def load_text(text: str, file: str) -> Loaded:
    """Parse YAML text. Raises DiagnosticError on any problem."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise _too_big(file, size)
    try:
        with paused_gc():
            root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise DiagnosticError([_syntax_diag(exc, file, text)])
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise DiagnosticError([Diagnostic(
            "MLP100", f"the spec contains the control character {ord(char):#06x}, which YAML does not allow",
            Location(file, line, col), "a spec is text: remove the character (or save the file as UTF-8 text)")])
    except yaml.YAMLError as exc:
        raise DiagnosticError([Diagnostic("MLP100", f"YAML syntax error: {exc}", Location(file, 1, 1))])
    except RecursionError:  # pragma: no cover - only the pure-Python parser recurses
        raise DiagnosticError([Diagnostic("MLP103", f"the YAML is nested deeper than {MAX_DEPTH} levels",
                                          Location(file, 1, 1), "flatten the structure")])
    smap = SourceMap(file)
    if root is None:
        return Loaded(None, smap, text)
    if _may_alias(text):          # without an anchor and an alias, nothing can expand
        _check_expansion(root, file)
    builder = _Builder(file, smap)
    with paused_gc():
        data = builder.build(root, "", 0, "")
    if builder.diags:
        raise DiagnosticError(builder.diags)
    return Loaded(data, smap, text)


# An anchor (`&name`) or alias (`*name`) token: after a separator or a flow indicator; the name is
# what PyYAML and libyaml accept (letters, digits, `-`, `_`; they refuse anything else).
_ANCHOR = re.compile(r"(?:^|[\s\[{,:?-])&([0-9A-Za-z_-]+)")
_ALIAS = re.compile(r"(?:^|[\s\[{,:?-])\*([0-9A-Za-z_-]+)")


def _may_alias(text: str) -> bool:
    """Whether the text may hold an alias to an anchor it defines (a cheap over-approximation).

    `&`/`*` are common in commands (`a && b`, `rm *.tmp`); only a name that looks like both an
    anchor and an alias needs the expansion check (an alias with no anchor fails to compose).
    """
    if "&" not in text or "*" not in text:
        return False
    anchors = set(_ANCHOR.findall(text))
    return bool(anchors) and not anchors.isdisjoint(_ALIAS.findall(text))


#: How many of this process's holders (the runner during a run) keep objects frozen (gc.freeze).
#: paused_gc asks this first: gc.get_freeze_count() walks every frozen object (CPython keeps them
#: in a list), ~5 ms a call while a run holds its heap frozen, once per front end: a sweep loads
#: the spec once per combination (2.8 s of a 500-combination sweep's 8.4 s).
_frozen_holders = 0


def hold_frozen(delta: int) -> None:
    """Count one more (``1``) or one fewer (``-1``) holder of objects frozen with ``gc.freeze()``."""
    global _frozen_holders
    _frozen_holders += delta


@contextlib.contextmanager
def paused_gc(*, long_lived: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while a stage builds many small containers (none cyclic).

    CPython runs a collection every 700 new containers and each one walks the young objects: on a
    10,000-step spec that alone doubles the front end's time. Reference counting still frees memory.

    `long_lived`: what was built outlives the pause (the IR and its source maps): it goes straight
    into the oldest generation. Else the first allocation after the pause starts a collection that
    walks every container made during it (~80 ms after a 10,000-step front end), and a later one of
    the middle generation walks them again. Cycles among them are found by the next full collection.
    Not done while someone else holds objects frozen (the runner does during a run).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if long_lived and not _frozen_holders and not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def without_gc(func: F) -> F:
    """Decorator: run a front-end stage with the cyclic collector paused (see :func:`paused_gc`)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paused_gc():
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def without_gc_long_lived(func: F) -> F:
    """:func:`without_gc` for a function whose result lives on: ``paused_gc(long_lived=True)``."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paused_gc(long_lived=True):
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse alias bombs before expanding anything: count the values each node expands to.

    Aliases share node objects, so sizes are memoised per node and the count costs
    one visit per distinct node, however large the expansion would be.
    """
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            active.discard(key)
            continue
        if key in size:
            continue
        if key in active:      # an alias inside its own anchor
            raise DiagnosticError([Diagnostic("MLP103", "an alias refers to the anchor that contains it",
                                              _loc(file, node.start_mark), "a spec cannot be recursive")])
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)) if id(c) not in size)
    if size[id(root)] <= MAX_NODES:
        return
    node = root
    while True:     # the first node (in document order) too big whose children are each small enough
        big = next((c for c in _children(node) if size[id(c)] > MAX_NODES), None)
        if big is None:
            break
        node = big
    raise DiagnosticError([Diagnostic(
        "MLP103", f"this value expands to {size[id(node)]:,} values through aliases (the spec, "
        f"{size[id(root)]:,}); the limit is {MAX_NODES:,}", _loc(file, node.start_mark),
        "an alias bomb? do not nest aliases (`*ref`) that multiply; a spec is small")])


def _syntax_diag(exc: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if "end of stream" in problem and exc.context_mark is not None:
        mark = exc.context_mark          # where the unclosed quote or bracket starts
    loc = _loc(file, mark) if mark else Location(file, 1, 1)
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    at_char = text[mark.index] if mark is not None and 0 <= mark.index < len(text) else ""
    if "maximum nesting depth" in problem:
        return Diagnostic("MLP103", "the YAML is nested too deeply", loc,
                          f"a spec needs a few levels; {MAX_DEPTH} is the limit")
    if at_char == "\t" or "'\\t'" in problem:
        return Diagnostic("MLP100", "a tab character where YAML expects indentation or a value", loc,
                          "indent YAML with spaces, not tabs")
    hint = "check indentation and quoting; strings with `: ` or ` #` need quotes"
    if "found duplicate anchor" in problem:
        hint = "give each anchor (`&name`) a different name"
    elif "found undefined alias" in problem:
        hint = "an alias (`*name`) must refer to an anchor (`&name`) defined above it; quote text that starts with `*`"
    elif "mapping values are not allowed" in problem:
        hint = "a value with `: ` in it needs quotes, e.g. `run: \"echo a: b\"`; or fix the indentation"
    elif "could not find expected ':'" in problem or "expected <block end>" in problem or "expected key" in problem:
        hint = "check the indentation of this line and the one above; keys of one mapping line up"
    elif "end of stream" in problem:
        hint = "a quote or bracket opened here is never closed"
    elif "another document" in problem:
        hint = "a spec is one YAML document: remove the `---` and what follows, or move it to its own file"
    elif "cannot start any token" in problem and at_char in "@`%":
        hint = f"a plain value cannot start with `{at_char}`: quote it"
    return Diagnostic("MLP100", f"YAML syntax error: {problem}{context}", loc, hint)


def load_file(path: Path, display: str | None = None) -> Loaded:
    display = display or str(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            # a FIFO would block the read forever, /dev/zero would fill the memory
            raise DiagnosticError([Diagnostic("MLP102", f"{display} is not a regular file", Location(display),
                                              "give the path of a spec file (a FIFO or a device cannot be read)")])
        if st.st_size > MAX_BYTES:
            raise _too_big(display, st.st_size)
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)    # the size may have changed since the stat
        if len(raw) > MAX_BYTES:
            raise _too_big(display, len(raw))
    except DiagnosticError:
        raise
    except FileNotFoundError:
        raise DiagnosticError([Diagnostic("MLP102", f"no such file: {display}", Location(display),
                                          "give the path of a pipeline spec, e.g. `pipeline.yaml` "
                                          "(`mlprism init` creates one)")])
    except IsADirectoryError:
        hint = (f"did you mean `{display.rstrip('/')}/pipeline.yaml`?" if (path / "pipeline.yaml").is_file()
                else "give the path of the spec file inside it")
        raise DiagnosticError([Diagnostic("MLP102", f"{display} is a directory, not a spec file", Location(display),
                                          hint)])
    except PermissionError as exc:
        raise DiagnosticError([Diagnostic(
            "MLP102", f"cannot read {display}: {exc.strerror or exc}", Location(display),
            "the spec must be readable by the user running mlprism: `chmod a+r` it (and `a+x` its directories), "
            "or run as its owner")]) from None
    except OSError as exc:
        raise DiagnosticError([Diagnostic("MLP102", f"cannot read {display}: {exc.strerror or exc}", Location(display),
                                          "check the file and the disk it is on, then run again")])
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(good, len(good))
        raise DiagnosticError([Diagnostic(
            "MLP102", f"{display} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})",
            Location(display, line, col), "save the spec as UTF-8 text; is it a binary file?")])
    return load_text(text, display)


class _Builder:
    """Plain values from the node tree, recording each key's and value's position by dotted path."""

    def __init__(self, file: str, smap: SourceMap) -> None:
        self.file = file
        self.smap = smap
        self.diags: list[Diagnostic] = []
        self.visits = 0
        self.recording = True

    def build(self, node: yaml.Node, dotted: str, depth: int, prefix: str | None = None) -> Any:
        """The value of `node`, found at `dotted` (the keys and list indexes from the root, joined by ".").

        `prefix` starts the dotted paths of its children: `dotted + "."` unless given (the root's is "";
        a key "" below the root is not the root: its children are ".child").
        """
        self.visits += 1
        if self.visits > MAX_NODES:
            raise DiagnosticError([Diagnostic(
                "MLP103", f"the YAML expands to more than {MAX_NODES} values (an alias bomb?)",
                _loc(self.file, node.start_mark),
                "do not nest aliases (`*ref`) that expand exponentially; a spec is small")])
        if depth > MAX_DEPTH:
            raise DiagnosticError([Diagnostic("MLP103", f"the YAML is nested deeper than {MAX_DEPTH} levels",
                                              _loc(self.file, node.start_mark), "flatten the structure")])
        cls = type(node)
        if self.recording:
            values = self.smap.values
            if dotted not in values:
                values[dotted] = node.start_mark
                if cls is not _ScalarNode and not node.flow_style:
                    self.smap.block.add(dotted)
        if cls is _ScalarNode:
            return node.value if node.tag == _STR else self._scalar(node)
        if prefix is None:
            prefix = dotted + "."
        if cls is _MappingNode:
            return self._mapping(node, dotted, prefix, depth)
        if node.tag != _SEQ:
            self._bad_tag(node)
            return None
        out: list[Any] = []
        add = out.append
        build = self.build
        values = self.smap.values if self.recording else None
        quick = depth < MAX_DEPTH                # an item at depth + 1 is within the limit
        for i, item in enumerate(node.value):
            if quick and type(item) is _ScalarNode and item.tag == _STR and self.visits < MAX_NODES:
                self.visits += 1                 # build()'s bookkeeping and result for a plain string, inlined
                if values is not None:
                    child = prefix + str(i)
                    if child not in values:
                        values[child] = item.start_mark
                add(item.value)
            else:
                add(build(item, prefix + str(i), depth + 1))
        return out

    def _bad_tag(self, node: yaml.Node) -> None:
        tag = node.tag
        shown = tag.replace("tag:yaml.org,2002:", "!!")
        self.diags.append(Diagnostic(
            "MLP104", f"unsupported YAML tag `{shown}`", _loc(self.file, node.start_mark),
            "remove the tag; a spec holds plain strings, numbers, booleans, lists and mappings"
            + (" (quote a string that starts with `!`)" if tag.startswith("!") else "")))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        construct = _CONSTRUCT.get(tag)
        if construct is None:
            if tag == "tag:yaml.org,2002:timestamp":
                return node.value          # keep dates as text, as written
            self._bad_tag(node)
            return None
        try:
            return construct(node)
        except (yaml.YAMLError, ValueError) as exc:
            self.diags.append(Diagnostic("MLP100", f"bad scalar `{node.value[:40]}`: {exc}",
                                         _loc(self.file, node.start_mark)))
            return None

    def _mapping(self, node: yaml.MappingNode, dotted: str, prefix: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        if node.tag != _MAP:
            self._bad_tag(node)
            return out
        merges: list[Any] = []
        keys = self.smap.keys if self.recording else None
        values = self.smap.values if self.recording else None
        quick = depth < MAX_DEPTH               # a child at depth + 1 is within the limit
        build = self.build
        for key_node, value_node in node.value:
            key_tag = key_node.tag
            if key_tag == _STR and type(key_node) is _ScalarNode:
                key = key_node.value
            else:
                if key_tag == "tag:yaml.org,2002:merge":
                    merges.append(value_node)
                    continue
                if type(key_node) is not _ScalarNode:
                    self.diags.append(Diagnostic("MLP104", "a mapping key must be a plain string, not a list or mapping",
                                                 _loc(self.file, key_node.start_mark), "quote the key"))
                    continue
                key = self._scalar(key_node)
                if isinstance(key, bool) or key is None:  # YAML 1.1 reads `on:`/`yes:`/`null:` as non-strings: keep the text
                    key = key_node.value if key_node.value not in ("", "~", "null") else "null"
                key = str(key)
            if key in seen:
                first = seen[key]
                self.diags.append(Diagnostic(
                    "MLP101", f"duplicate key `{prefix}{key}` (first defined at line {first.line + 1})",
                    _loc(self.file, key_node.start_mark), "remove one of them; YAML would silently keep the last"))
                continue
            seen[key] = mark = key_node.start_mark
            child = prefix + key
            if keys is not None and child not in keys:
                keys[child] = mark
            if quick and type(value_node) is _ScalarNode and value_node.tag == _STR and self.visits < MAX_NODES:
                self.visits += 1                  # build()'s bookkeeping and result for a plain string, inlined
                if values is not None and child not in values:
                    values[child] = value_node.start_mark
                out[key] = value_node.value
            else:
                out[key] = build(value_node, child, depth + 1)
        for merge_node in merges:      # `<<: *base` — explicit keys win, then merges in order
            merged = build(merge_node, dotted, depth + 1, prefix)
            for item in merged if isinstance(merged, list) else [merged]:
                if isinstance(item, dict):
                    for k, v in item.items():
                        out.setdefault(k, v)
                else:
                    self.diags.append(Diagnostic("MLP104", "`<<` merges mappings only",
                                                 _loc(self.file, merge_node.start_mark),
                                                 "write `<<: *anchor`, where `&anchor` marks a mapping above"))
        return out
