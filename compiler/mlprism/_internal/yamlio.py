"""Deterministic YAML out: build YAML as data, serialize here. Never text-template YAML.

Two serializers give the same bytes: PyYAML's pure-Python ``SafeDumper`` (the reference,
:class:`_Dumper`) and, when PyYAML was built with libyaml, its C emitter. The C emitter
is 10-20x faster, but libyaml and PyYAML's Python emitter disagree on a few rare inputs
(characters outside the Basic Multilingual Plane and line-break characters other than
``\\n``, long folded quoted scalars, empty or long mapping keys, ``|+`` literals at the
end of a document). :func:`dump_yaml` builds the node tree itself, checking every
string on the way, and uses the C emitter only when nothing in the data is one of those;
anything else goes through the Python dumper. The fastest tier (:class:`_Direct`) writes
the block layout itself, in one walk, with numbers, plain words and simple ``|`` literals
written as both emitters would, and libyaml asked only for the other distinct strings.
``tests/unit/compiler/test_yamlio.py`` holds the tiers equal on generated data.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

# Plain scalars a YAML 1.2 reader (kubectl, GitHub, ruamel) would not read back as a string,
# though PyYAML's YAML 1.1 resolver would: these are always written quoted.
_YAML12_NON_STRING = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE"
    r"|y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")


class _Dumper(yaml.SafeDumper):
    """Block style, insertion order kept, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_OTHER_BREAKS = re.compile("[\x85\u2028\u2029]")


def _literal(value: str) -> bool:
    """Whether a string is written as a `|` literal block.

    Not when it holds NEL, LS or PS: line breaks to PyYAML (YAML 1.1), which would indent the
    text after them, but ordinary characters to YAML 1.2 readers (GitHub, kubectl, ruamel),
    which would keep that indentation (or refuse the block). Such a string is double-quoted
    (:func:`_style`), with `\\N`, `\\L`, `\\P`, which both versions read back.
    """
    return ("\n" in value and not any(line != line.rstrip() for line in value.splitlines()) and "\t" not in value
            and _OTHER_BREAKS.search(value) is None)


def _style(value: str) -> str | None:
    if _literal(value):
        return "|"
    if _OTHER_BREAKS.search(value):     # PyYAML would fold a quoted one there too (see _literal)
        return '"'
    if _YAML12_NON_STRING.match(value):
        return "'"
    return None


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=_style(value))


_Dumper.add_representer(str, _str)
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))

_KW: dict[str, Any] = {"sort_keys": False, "default_flow_style": False, "allow_unicode": True, "width": 4096,
                       "indent": 2}

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


class _CompiledOnUse:
    """A module-level pattern compiled at its first ``match``, which then puts the compiled one in its place.

    The C-safe class below takes ~5 ms to compile, in every process that imports mlprism; only
    writing YAML matches it (and then against the compiled pattern, at full speed).
    """

    def __init__(self, name: str, pattern: str) -> None:
        self.name, self.pattern = name, pattern

    def match(self, text: str) -> re.Match[str] | None:
        compiled = globals()[self.name] = re.compile(self.pattern)
        return compiled.match(text)


# Strings on which libyaml writes exactly what PyYAML's Python emitter writes: tab, LF and
# printable characters of the Basic Multilingual Plane, except the other line breaks
# (NEL, LS, PS) and the byte-order mark.
_C_SAFE: Any = _CompiledOnUse("_C_SAFE", "[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]*\\Z")
_C_MAX_FOLDABLE = 2048        # a longer quoted or plain scalar may be folded at the width: differently
_C_MAX_KEY_BYTES = 120        # keys must be "simple" (< 128 with the tag PyYAML counts) for both
#: Values :func:`dump_yaml` can find by a placeholder (a plain scalar by construction).
_COMMENTABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_./@+-]*\Z")
_PLACEHOLDER = "_mlprism_commented_"
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER + r"(\d+)_([^\n]*)")


class _Unsafe(Exception):
    """The data holds something the C emitter may write differently: use the Python dumper."""


_CBase: Any = getattr(yaml, "CSafeDumper", None)

if _CBase is not None:
    class _CDumper(_CBase):  # type: ignore[misc, valid-type]
        """libyaml's emitter fed with nodes built by :class:`_Nodes`; scalar tags resolved once per value."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is ScalarNode:
                if not implicit[0]:
                    return _STR
                cache: dict[str, str] = self._tags
                tag = cache.get(value)
                if tag is None:
                    tag = cache[value] = super().resolve(kind, value, implicit)
                return tag
            return super().resolve(kind, value, implicit)
else:  # pragma: no cover - PyYAML without libyaml
    _CDumper = None


def float_text(value: float) -> str:
    """How PyYAML's SafeRepresenter writes a float (a plain scalar its resolver reads back as a float)."""
    if value != value:
        return ".nan"
    if value == float("inf"):
        return ".inf"
    if value == float("-inf"):
        return "-.inf"
    text = repr(value).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    return text


class _Nodes:
    """The node tree PyYAML's SafeRepresenter (with mlprism's representers) makes, built directly.

    Raises :class:`_Unsafe` for anything the C emitter might write differently, and for
    types it does not know (the Python dumper then represents them, or refuses them alike).
    `max_foldable` bounds the length of a scalar that is not a ``|`` literal (the caller
    checks longer ones against their real column).
    """

    def __init__(self, comments: Mapping[str, str] | None, max_foldable: int = _C_MAX_FOLDABLE) -> None:
        self.styles: dict[str, str | None] = {}
        self.comments = dict(comments or {})
        self.placeholders: dict[str, str] = {}       # value -> its placeholder
        self.used = 0
        self.max_foldable = max_foldable

    def style(self, value: str) -> str | None:
        try:
            return self.styles[value]
        except KeyError:
            pass
        if not _C_SAFE.match(value) or value == "\n" or value.endswith("\n\n"):
            raise _Unsafe
        style = _style(value)
        if style != "|" and len(value) >= self.max_foldable:
            raise _Unsafe
        self.styles[value] = style
        return style

    def key(self, value: Any) -> yaml.Node:
        if type(value) is str:
            if not value or "\n" in value or len(value.encode()) >= _C_MAX_KEY_BYTES or value in self.comments:
                raise _Unsafe
            return ScalarNode(_STR, value, style=self.style(value))
        if value is None or type(value) in (int, bool, float):
            return self.node(value)
        raise _Unsafe

    def node(self, value: Any) -> yaml.Node:
        t = type(value)
        if t is str:
            style = self.style(value)
            if self.comments and value in self.comments:
                value = self.placeholder(value)
            return ScalarNode(_STR, value, style=style)
        if t is dict:
            key, node = self.key, self.node
            return MappingNode(_MAP, [(key(k), node(v)) for k, v in value.items()], flow_style=False)
        if t is list or t is tuple:
            node = self.node
            return SequenceNode(_SEQ, [node(v) for v in value], flow_style=False)
        if t is bool:
            return ScalarNode(_BOOL, "true" if value else "false")
        if t is int:
            return ScalarNode(_INT, str(value))
        if value is None:
            return ScalarNode(_NULL, "null")
        if t is float:
            return ScalarNode(_FLOAT, float_text(value))
        raise _Unsafe

    def placeholder(self, value: str) -> str:
        if not _COMMENTABLE.match(value):
            raise _Unsafe
        if value not in self.placeholders:
            self.placeholders[value] = f"{_PLACEHOLDER}{len(self.placeholders)}_"
        self.used += 1
        return self.placeholders[value]


def _render(values: list[str]) -> list[str] | None:
    """How libyaml writes each string as a block-sequence item at column 0 (``- <this>``), or None.

    No length bound here: the caller checks a long scalar that could be folded against its column.
    """
    stream = io.StringIO()
    dumper = _CDumper(stream, **_KW)
    dumper._tags = {}
    dumper.open()
    dumper.serialize(_Nodes(None, max_foldable=sys.maxsize).node(values))
    dumper.close()
    text = stream.getvalue()
    if not text.startswith("- ") or not text.endswith("\n"):
        return None
    # every continuation line of an item is indented or empty: "\n- " only starts an item
    items = text[2:-1].split("\n- ")
    return items if len(items) == len(values) else None


# Strings both emitters write as themselves, in plain style, in block context: no indicator
# first (and no first character any of PyYAML's implicit resolvers keys on but letters, whose
# only resolvers are the bool/null words of _YAML12_NON_STRING, excluded by
# :func:`_plain_text`), no ": ", " #", quotes, ",[]", line breaks or runs of spaces ("{}" only
# matter inside flow collections, which are never written but empty).
_FAST_PLAIN = re.compile(r"[A-Za-z_$/][A-Za-z0-9_./${}()@+=*~-]*(?: [A-Za-z0-9_./${}()@+=*~-]+)*\Z")
_FAST_PLAIN_MAX = 1024        # far below the width: never folded at any column _DEEP allows
_WIDTH: int = _KW["width"]
_FOLD_ROOM = 256              # ": " plus the longest text of a key (< 120 bytes, quoted, escaped)
_DEEP = _WIDTH - _FOLD_ROOM - _FAST_PLAIN_MAX     # deeper collections: left to the emitter
_TRAILING_SPACE = re.compile(r"[^\S\n](?:\n|\Z)")


def _plain_text(value: str) -> bool:
    """Whether both emitters write `value` as it is (a plain scalar, never folded)."""
    return (len(value) < _FAST_PLAIN_MAX and _FAST_PLAIN.match(value) is not None
            and (len(value) > 5 or _YAML12_NON_STRING.match(value) is None))


def _literal_parts(value: str) -> tuple[str, str] | None:
    """The header (``|`` or ``|-``) and the body of the block both emitters write for a multi-line `value`.

    None when unsure: anything outside :data:`_C_SAFE`, leading spaces or a leading line
    break (an indentation indicator), ``|+`` (more than one final line break), a tab or a
    line ending in white space (not a literal, see :func:`_literal`) is left to libyaml.
    The body's lines are indented by the caller; an empty line is written empty.
    """
    if value[0] == " " or value[0] == "\n" or value.endswith("\n\n") or "\t" in value:
        return None
    if value.isascii():     # printable ASCII and line breaks: the C-safe set
        if " \n" in value or value[-1] == " " or not value.replace("\n", " ").isprintable():
            return None
    elif _C_SAFE.match(value) is None or _TRAILING_SPACE.search(value) is not None:
        return None
    return ("|", value[:-1]) if value[-1] == "\n" else ("|-", value)


def _held_once() -> tuple[int, int]:
    """``sys.getrefcount`` of a collection only its parent holds, as :class:`_Direct` meets it in a mapping and a sequence.

    A higher count means the collection may be held more than once (by the data or by
    someone else): only then does the writer look it up among those it has written. The
    count is only a hint for speed; the bytes do not depend on it.
    """
    if not hasattr(sys, "getrefcount"):          # pragma: no cover - not CPython: never look up
        return sys.maxsize, sys.maxsize
    refs = sys.getrefcount
    for _k, v in {"k": {}}.items():
        in_mapping = refs(v)
    for v in [{}]:
        in_sequence = refs(v)
    return in_mapping, in_sequence


_HELD_ONCE = _held_once()
_refs: Any = getattr(sys, "getrefcount", len)


class _Direct:
    """Block-style YAML written directly, in one walk: the layout in Python, each scalar's text proven.

    PyYAML's emitter (and libyaml's) lays out block collections by a few fixed rules
    (``key: value``; a nested mapping on the next lines, 2 further in; a sequence in a
    mapping at the key's column; the first key of a mapping in a sequence on the ``- ``
    line; empty collections as ``{}`` / ``[]``); only a scalar's own text needs the
    emitter's analysis. Numbers, booleans, null, strings of :data:`_FAST_PLAIN` and simple
    ``|`` literals are written on the way; every other distinct string leaves a slot in
    the output and is written once, by libyaml, in one sequence after the walk; the slots
    are then filled. A scalar written over several lines other than as a ``|`` literal
    (a quoted one with line breaks), a long one that might be folded at its column, or
    anything :class:`_Nodes` refuses is left to the emitter: :meth:`dump` returns None.

    A collection the data holds more than once (one object, e.g. a step every job of a
    workflow shares) is written once per column and place and its text reused (`again`);
    collections are looked up only when their reference count says they may be shared.
    """

    def __init__(self, comments: Mapping[str, str] | None) -> None:
        self.comments = dict(comments or {})

    def dump(self, data: Any, head: str = "") -> str | None:
        """The YAML text of `data` after `head` (header lines), or None: leave it to the emitter."""
        try:
            return self._dump(data, head)
        except (_Unsafe, RecursionError):
            return None

    def _dump(self, data: Any, head: str) -> str | None:
        comments = self.comments
        keys: dict[str, str] = {}         # checked key -> its text ("" while libyaml has to write it)
        values: dict[str, str] = {}       # single-line string -> its text as a value (comment included)
        literals: dict[str, tuple[str, str]] = {}   # multi-line string -> its `|` block's parts
        waiting: dict[str, None] = {}     # strings libyaml writes after the walk, in order
        slots: list[tuple[int, str, int]] = []   # (index in out, string, column; -1 for a key)
        out: list[str] = [head]
        append = out.append
        refs = _refs
        once_in_mapping, once_in_sequence = _HELD_ONCE
        # id of a collection held more than once (by its reference count) -> (column, inline,
        # first index in out, end index, text): see again()
        seen: dict[int, tuple[int, bool, int, int, str | None]] = {}

        def check(value: str) -> None:
            if not _C_SAFE.match(value) or value == "\n" or value.endswith("\n\n"):
                raise _Unsafe

        def key_text(k: Any) -> str | None:
            """A key's text, or None: it waits for libyaml."""
            if k in keys:
                return None
            if type(k) is not str or not k or "\n" in k or (comments and k in comments):
                raise _Unsafe
            check(k)
            if len(k.encode()) >= _C_MAX_KEY_BYTES:
                raise _Unsafe
            if _plain_text(k):
                keys[k] = k
                return k
            keys[k] = ""
            waiting[k] = None
            return None

        def value_text(v: str, col: int) -> str | None:
            """A string's text as a value at `col` (a literal indented), or None: it waits for libyaml."""
            parts = literals.get(v)
            if parts is None:
                if v in waiting:
                    return None
                if "\n" not in v:
                    if _plain_text(v):
                        text = values[v] = f"{v} # {comments[v]}" if comments and v in comments else v
                        return text
                    parts = None
                else:
                    parts = _literal_parts(v)
                if parts is None:
                    check(v)
                    waiting[v] = None
                    return None
                literals[v] = parts
            head, body = parts
            indent = "\n" + " " * (col + 2)
            if "\n\n" in body:
                return head + "".join([indent + line if line else "\n" for line in body.split("\n")])
            return head + indent + body.replace("\n", indent)

        def other(v: Any, t: type) -> str:
            """The text of a scalar that is not a string."""
            if t is bool:
                return "true" if v else "false"
            if t is int:
                return str(v)
            if v is None:
                return "null"
            if t is float:
                return float_text(v)
            raise _Unsafe

        def again(c: list[Any] | tuple[Any, ...] | dict[Any, Any], col: int, inline: bool) -> bool:
            """For a collection the data may hold more than once: True when it was written here.

            The first meeting writes it and notes the column, the place (a sequence item or
            not) and where its text is in `out`; a later meeting at that column and place
            writes that text again (joined once), unless the first left a slot (a string
            libyaml writes after the walk): then it, as a meeting elsewhere, is walked again
            (False). The data is alive and unchanged during the walk, so an id names one
            collection throughout.
            """
            entry = seen.get(id(c))
            if entry is None:
                start, n = len(out), len(slots)
                if type(c) is dict:
                    mapping(c, col, inline)
                else:
                    sequence(c, col, inline)
                seen[id(c)] = (col, inline, start if len(slots) == n else -1, len(out), None)
                return True
            if entry[0] != col or entry[1] is not inline or entry[2] < 0:
                return False
            text = entry[4]
            if text is None:
                text = "".join(out[entry[2]:entry[3]])
                seen[id(c)] = (col, inline, 0, 0, text)
            append(text)
            return True

        def mapping(d: dict[Any, Any], col: int, inline: bool) -> None:
            if col > _DEEP:
                raise _Unsafe
            pad = " " * col
            for k, v in d.items():
                lead = "" if inline else pad
                inline = False
                kt = keys.get(k)
                if not kt:
                    kt = key_text(k)
                    if kt is None:
                        append(lead)
                        slots.append((len(out), k, -1))
                        append(k)
                        lead = kt = ""
                t = type(v)
                if t is str:
                    vt = values.get(v)
                    if vt is None:
                        vt = value_text(v, col)
                        if vt is None:
                            append(f"{lead}{kt}: ")
                            slots.append((len(out), v, col))
                            append(v)
                            append("\n")
                            continue
                    append(f"{lead}{kt}: {vt}\n")
                elif t is dict:
                    if v:
                        append(f"{lead}{kt}:\n")
                        if refs(v) <= once_in_mapping or not again(v, col + 2, False):
                            mapping(v, col + 2, False)
                    else:
                        append(f"{lead}{kt}: {{}}\n")
                elif t is list or t is tuple:
                    if v:
                        append(f"{lead}{kt}:\n")
                        if refs(v) <= once_in_mapping or not again(v, col, False):
                            sequence(v, col, False)
                    else:
                        append(f"{lead}{kt}: []\n")
                else:
                    append(f"{lead}{kt}: {other(v, t)}\n")

        def sequence(s: list[Any] | tuple[Any, ...], col: int, inline: bool) -> None:
            if col > _DEEP:
                raise _Unsafe
            pad = " " * col
            for v in s:
                lead = "" if inline else pad
                inline = False
                t = type(v)
                if t is str:
                    vt = values.get(v)
                    if vt is None:
                        vt = value_text(v, col)
                        if vt is None:
                            append(f"{lead}- ")
                            slots.append((len(out), v, col))
                            append(v)
                            append("\n")
                            continue
                    append(f"{lead}- {vt}\n")
                elif t is dict:
                    if v:
                        append(f"{lead}- ")
                        if refs(v) <= once_in_sequence or not again(v, col + 2, True):
                            mapping(v, col + 2, True)
                    else:
                        append(f"{lead}- {{}}\n")
                elif t is list or t is tuple:
                    if v:
                        append(f"{lead}- ")
                        if refs(v) <= once_in_sequence or not again(v, col + 2, True):
                            sequence(v, col + 2, True)
                    else:
                        append(f"{lead}- []\n")
                else:
                    append(f"{lead}- {other(v, t)}\n")

        try:
            if type(data) is dict:
                mapping(data, 0, False)
            else:
                sequence(data, 0, False)
            if waiting:
                order = list(waiting)
                texts = _render(order)
                if texts is None:
                    return None
                rendered = dict(zip(order, texts, strict=True))
                limit = _WIDTH - _FOLD_ROOM
                for pos, v, col in slots:
                    text = rendered[v]
                    if "\n" in text:
                        if col < 0 or text[0] != "|":
                            return None
                        if col:
                            text = text.replace("\n  ", "\n" + " " * col + "  ")
                    elif len(text) + col > limit and (" " in text or "\\" in text):
                        return None                 # might be folded at its real column
                    elif col >= 0 and comments and text == v and v in comments:
                        text = f"{v} # {comments[v]}"
                    out[pos] = text
            return "".join(out)
        finally:
            # the nested writers refer to one another (a reference cycle): without this, everything
            # they hold (~100,000 tuples for a 10,000-job workflow) would wait for the cyclic collector,
            # whose next pass walks it all (~0.3 s after a 10,000-step compile's emit)
            keys.clear()
            values.clear()
            literals.clear()
            waiting.clear()
            seen.clear()
            slots.clear()
            out.clear()


def _dump_direct(data: Any, comments: Mapping[str, str] | None, head: str = "") -> str | None:
    if _CDumper is None or type(data) not in (dict, list, tuple) or not data:
        return None
    return _Direct(comments).dump(data, head)


def _dump_c(data: Any, comments: Mapping[str, str] | None) -> str | None:
    """The C emitter's text, or None when the data needs the Python dumper."""
    if _CDumper is None or type(data) not in (dict, list, tuple):
        return None
    nodes = _Nodes(comments)
    try:
        root = nodes.node(data)
    except (_Unsafe, RecursionError):
        return None
    stream = io.StringIO()
    dumper = _CDumper(stream, **_KW)
    dumper._tags = {}
    dumper.open()
    dumper.serialize(root)
    dumper.close()
    text = stream.getvalue()
    if nodes.used:
        if text.count(_PLACEHOLDER) != nodes.used:    # the data itself holds the placeholder text
            return None
        found = {p: v for v, p in nodes.placeholders.items()}
        tags = nodes.comments

        def put_back(m: re.Match[str]) -> str:
            value = found[f"{_PLACEHOLDER}{m.group(1)}_"]
            rest = m.group(2)
            return value + (f" # {tags[value]}" if rest.strip() == "" else rest)

        text = _PLACEHOLDER_RE.sub(put_back, text)
    return text


def _comment_by_scan(text: str, comments: Mapping[str, str]) -> str:
    """Append `# <comment>` after each plain scalar in `comments` that ends its line (found by the YAML scanner).

    Positions are the scanner's character offsets: its line numbers also count the NEL, LS
    and PS characters a quoted scalar may hold, so they need not match ``text``'s lines.
    """
    out: list[str] = []
    done = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken) and token.plain and token.value in comments:
            start, end = token.start_mark.index, token.end_mark.index
            stop = text.find("\n", end)
            stop = len(text) if stop < 0 else stop
            if "\n" not in text[start:end] and text[end:stop].strip() == "":
                out += (text[done:end], f" # {comments[token.value]}")
                done = stop
    out.append(text[done:])
    return "".join(out)


def dump_yaml(data: Any, *, header: str | None = None, comments: Mapping[str, str] | None = None) -> str:
    """Serialize `data` (dicts keep their insertion order) to YAML text, deterministically.

    Every string is quoted by the serializer as YAML needs; `header` lines are
    written as comments at the top. `comments` maps string values to a comment
    written after them (`uses: org/action@<sha> # v1.2.3`): every plain scalar equal
    to a key of `comments` that ends its line gets ` # <comment>`.
    """
    head = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    text = _dump_direct(data, comments, head)     # the header written first: no copy of a long text
    if text is not None:
        return text
    text = _dump_c(data, comments)
    if text is None:
        text = yaml.dump(data, Dumper=_Dumper, **_KW)
        if comments:
            text = _comment_by_scan(text, comments)
    return head + text


def dump_yaml_documents(docs: list[Any], *, header: str | None = None) -> str:
    parts = [dump_yaml(d) for d in docs]
    text = "---\n" + "---\n".join(parts)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    return text
