"""Deterministic YAML out: build YAML as data, serialize here. Never text-template YAML.

Two serializers give the same bytes: PyYAML's pure-Python ``SafeDumper`` (the reference,
:class:`_Dumper`) and, when PyYAML was built with libyaml, its C emitter. The C emitter
is 10-20x faster, but libyaml and PyYAML's Python emitter disagree on a few rare inputs
(characters outside the Basic Multilingual Plane and line-break characters other than
``\\n``, long folded quoted scalars, empty or long mapping keys, ``|+`` literals at the
end of a document). :func:`dump_yaml` builds the node tree itself, checking every
string on the way, and uses the C emitter only when nothing in the data is one of those;
anything else goes through the Python dumper. ``tests/unit/compiler/test_yamlio.py``
holds the two equal on generated data.
"""

from __future__ import annotations

import io
import re
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


def _literal(value: str) -> bool:
    """Whether a string is written as a `|` literal block."""
    return "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) and "\t" not in value


def _style(value: str) -> str | None:
    if _literal(value):
        return "|"
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

# Strings on which libyaml writes exactly what PyYAML's Python emitter writes: tab, LF and
# printable characters of the Basic Multilingual Plane, except the other line breaks
# (NEL, LS, PS) and the byte-order mark.
_C_SAFE = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]*\\Z")
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


class _Nodes:
    """The node tree PyYAML's SafeRepresenter (with mlprism's representers) makes, built directly.

    Raises :class:`_Unsafe` for anything the C emitter might write differently, and for
    types it does not know (the Python dumper then represents them, or refuses them alike).
    """

    def __init__(self, comments: Mapping[str, str] | None) -> None:
        self.styles: dict[str, str | None] = {}
        self.comments = dict(comments or {})
        self.placeholders: dict[str, str] = {}       # value -> its placeholder
        self.used = 0

    def style(self, value: str) -> str | None:
        try:
            return self.styles[value]
        except KeyError:
            pass
        if not _C_SAFE.match(value) or value == "\n" or value.endswith("\n\n"):
            raise _Unsafe
        style = _style(value)
        if style != "|" and len(value) >= _C_MAX_FOLDABLE:
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
            if value != value:
                text = ".nan"
            elif value == float("inf"):
                text = ".inf"
            elif value == float("-inf"):
                text = "-.inf"
            else:
                text = repr(value).lower()
                if "." not in text and "e" in text:
                    text = text.replace("e", ".0e", 1)
            return ScalarNode(_FLOAT, text)
        raise _Unsafe

    def placeholder(self, value: str) -> str:
        if not _COMMENTABLE.match(value):
            raise _Unsafe
        if value not in self.placeholders:
            self.placeholders[value] = f"{_PLACEHOLDER}{len(self.placeholders)}_"
        self.used += 1
        return self.placeholders[value]


def _render(values: list[Any]) -> list[str] | None:
    """How libyaml writes each value as a block-sequence item at column 0 (``- <this>``), or None."""
    stream = io.StringIO()
    dumper = _CDumper(stream, **_KW)
    dumper._tags = {}
    dumper.open()
    dumper.serialize(_Nodes(None).node(values))
    dumper.close()
    text = stream.getvalue()
    if not text.startswith("- ") or not text.endswith("\n"):
        return None
    # every continuation line of an item is indented or empty: "\n- " only starts an item
    items = text[2:-1].split("\n- ")
    return items if len(items) == len(values) else None


class _Direct:
    """Block-style YAML written directly: the layout in Python, every scalar as libyaml writes it.

    PyYAML's emitter (and libyaml's) lays out block collections by a few fixed rules
    (``key: value``; a nested mapping on the next lines, 2 further in; a sequence in a
    mapping at the key's column; the first key of a mapping in a sequence on the ``- ``
    line; empty collections as ``{}`` / ``[]``); only a scalar's own text needs the
    emitter's analysis. So the distinct scalars are written once, by libyaml, as one
    sequence, and the document is assembled from those texts. A scalar written over
    several lines other than as a ``|`` literal (a quoted one with line breaks) is left
    to the emitter: :meth:`dump` returns None.
    """

    def __init__(self, comments: Mapping[str, str] | None) -> None:
        self.comments = dict(comments or {})
        self.nodes = _Nodes(None)
        self.seen: dict[Any, Any] = {}          # render key -> the value

    def collect(self, data: Any) -> None:
        seen, style = self.seen, self.nodes.style
        keys: set[str] = set()                   # checked as mapping keys

        def walk(value: Any) -> None:
            t = type(value)
            if t is str:
                if value not in seen:
                    style(value)
                    seen[value] = value
            elif t is dict:
                for k, v in value.items():
                    if k not in keys:
                        if (type(k) is not str or not k or "\n" in k or len(k.encode()) >= _C_MAX_KEY_BYTES
                                or k in self.comments):
                            raise _Unsafe
                        keys.add(k)
                        if k not in seen:
                            style(k)
                            seen[k] = k
                    walk(v)
            elif t is list or t is tuple:
                for v in value:
                    walk(v)
            elif value is None or t is bool or t is int or t is float:
                key = (t, repr(value))
                if key not in seen:
                    seen[key] = value
            else:
                raise _Unsafe

        walk(data)

    def dump(self, data: Any) -> str | None:
        try:
            self.collect(data)
        except (_Unsafe, RecursionError):
            return None
        keys = list(self.seen)
        texts = _render([self.seen[k] for k in keys])
        if texts is None:
            return None
        single: dict[Any, str] = {}
        literal: dict[Any, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if "\n" not in text:
                single[key] = text
            elif text.startswith("|"):
                literal[key] = text
            else:
                return None
        comments = {v: f"{v} # {c}" for v, c in self.comments.items() if single.get(v) == v}
        out: list[str] = []
        append = out.append

        def scalar(value: Any, col: int) -> str:
            key = value if type(value) is str else (type(value), repr(value))
            text = single.get(key)
            if text is not None:
                return comments[key] if comments and key in comments else text
            text = literal[key]
            return text.replace("\n  ", "\n" + " " * col + "  ") if col else text

        def mapping(d: dict[str, Any], col: int, inline: bool) -> None:
            pad = " " * col
            for k, v in d.items():
                lead = "" if inline else pad
                inline = False
                t = type(v)
                if t is dict:
                    if v:
                        append(f"{lead}{single[k]}:\n")
                        mapping(v, col + 2, False)
                    else:
                        append(f"{lead}{single[k]}: {{}}\n")
                elif t is list or t is tuple:
                    if v:
                        append(f"{lead}{single[k]}:\n")
                        sequence(v, col, False)
                    else:
                        append(f"{lead}{single[k]}: []\n")
                else:
                    append(f"{lead}{single[k]}: {scalar(v, col)}\n")

        def sequence(s: list[Any] | tuple[Any, ...], col: int, inline: bool) -> None:
            pad = " " * col
            for v in s:
                lead = "" if inline else pad
                inline = False
                t = type(v)
                if t is dict:
                    if v:
                        append(f"{lead}- ")
                        mapping(v, col + 2, True)
                    else:
                        append(f"{lead}- {{}}\n")
                elif t is list or t is tuple:
                    if v:
                        append(f"{lead}- ")
                        sequence(v, col + 2, True)
                    else:
                        append(f"{lead}- []\n")
                else:
                    append(f"{lead}- {scalar(v, col)}\n")

        try:
            if type(data) is dict:
                mapping(data, 0, False)
            else:
                sequence(data, 0, False)
        except RecursionError:
            return None
        return "".join(out)


def _dump_direct(data: Any, comments: Mapping[str, str] | None) -> str | None:
    if _CDumper is None or type(data) not in (dict, list, tuple) or not data:
        return None
    return _Direct(comments).dump(data)


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
    """Append `# <comment>` after each plain scalar in `comments` that ends its line (found by the YAML scanner)."""
    lines = text.split("\n")
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken) and token.plain and token.value in comments:
            start, end = token.start_mark, token.end_mark
            if start.line == end.line and lines[end.line][end.column:].strip() == "":
                lines[end.line] = lines[end.line][:end.column] + f" # {comments[token.value]}"
    return "\n".join(lines)


def dump_yaml(data: Any, *, header: str | None = None, comments: Mapping[str, str] | None = None) -> str:
    """Serialize `data` (dicts keep their insertion order) to YAML text, deterministically.

    Every string is quoted by the serializer as YAML needs; `header` lines are
    written as comments at the top. `comments` maps string values to a comment
    written after them (`uses: org/action@<sha> # v1.2.3`): every plain scalar equal
    to a key of `comments` that ends its line gets ` # <comment>`.
    """
    text = _dump_direct(data, comments)
    if text is None:
        text = _dump_c(data, comments)
    if text is None:
        text = yaml.dump(data, Dumper=_Dumper, **_KW)
        if comments:
            text = _comment_by_scan(text, comments)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    return text


def dump_yaml_documents(docs: list[Any], *, header: str | None = None) -> str:
    parts = [dump_yaml(d) for d in docs]
    text = "---\n" + "---\n".join(parts)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    return text
