"""Stage 2 — compose: Hydra's Compose API plus OmegaConf interpolation.

The only module that imports Hydra. The spec is Hydra's primary config; its
``defaults:`` list pulls config groups from ``conf/`` beside it (and from search
paths plugins contribute); overrides use Hydra's grammar. Hydra's global state
is cleared after every compose, so two compiles in one process never leak.

Speed without changing the meaning. OmegaConf builds a node object per value
and parses every string containing ``${`` with an ANTLR parser, which is slow
on a spec with a thousand steps. So:

* Hydra is fed the spec already parsed (by :mod:`mlprism._internal.load`, the
  same YAML 1.1 rules plus OmegaConf's float syntax), through its ConfigStore,
  instead of parsing the file a second time.
* Subtrees of the spec that nothing can change — no override key, no key of any
  config-group file that may be selected lies in or above them — are handed to
  Hydra as one opaque placeholder each and put back afterwards. Composition
  merges by key path, so an untouched subtree comes out exactly as it went in.
  When the set of keys that may change cannot be known (packages set with
  ``@``, nested defaults, non-file search paths), nothing is collapsed.
* Overrides that only set existing scalars of a spec without config groups
  (``params.lr=0.1``: what a sweep's combinations are) are applied to the
  loaded spec directly, as Hydra would apply them, without importing Hydra
  (see :func:`set_existing_values`; anything else still goes through Hydra).
* Interpolations are resolved only where ``${`` occurs. A plain absolute
  reference (``${params.lr}``, ``${data.raw.path}``) is resolved here, with
  OmegaConf's rules (a lone reference keeps its type; inside text it is
  ``str()``-ed); anything else (relative keys, resolvers, escapes, references
  to containers or to other complex values, errors) goes to OmegaConf itself.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mlprism._internal.load import MAX_DEPTH, Loaded, SourceMap, load_file, load_text, without_gc
from mlprism._internal.overrides import hydra_quote
from mlprism._internal.slots import slot_setters
from mlprism.diagnostics import Diagnostic, DiagnosticError, Location, Severity, did_you_mean

_INTERP = re.compile(r"\$\{")
# One plain absolute node reference: ${a.b-c.0}
_SEGMENT = r"(?:[A-Za-z_][A-Za-z0-9_-]*|[0-9]+)"
_SIMPLE_REF = re.compile(r"\$\{(" + _SEGMENT + r"(?:\." + _SEGMENT + r")*)\}")
_PRIMARY = "__mlprism_primary_spec__"
_HYDRA_GROUPS = ("job_logging", "hydra_logging", "help", "hydra_help", "output", "env", "launcher", "sweeper")
_PLACEHOLDER = "\ue000mlprism-collapsed:{}\ue000"

Key = str | int
KeyPath = tuple[Key, ...]


@dataclass
class Composed:
    config: dict[str, Any]                 # interpolations resolved
    raw: dict[str, Any]                    # as composed, interpolations kept
    spec_path: Path
    overrides: tuple[str, ...]
    choices: dict[str, str]
    maps: list[SourceMap] = field(default_factory=list)   # in lookup order (highest precedence first)
    collapsed: int = 0                     # subtrees handed to Hydra as placeholders (for tests/benchmarks)
    warnings: list[Diagnostic] = field(default_factory=list)   # what Hydra warned about, as diagnostics
    by_hydra: bool = False                 # composed by Hydra (not the identity, nor set_existing_values)
    #: the loaded spec whose keys `raw` has, each holding a container or not as there (less `defaults`), when
    #: composed without Hydra; its overrides, if any, each set one existing scalar (see set_existing_values)
    keys_of: Loaded | None = None

    def locate(self, dotted: str, prefer: str = "auto") -> Location | None:
        """Where `dotted` comes from: an override, else its position (`prefer`: "auto", "key", "value")."""
        return locate(dotted, self.overrides, self.maps, prefer)

    def locate_many(self, dotteds: Iterable[str], memo: dict[str, Location | None] | None = None) -> dict[str, Location]:
        """``{d: self.locate(d)}`` for each of `dotteds` that has a location (in that order), in bulk.

        `memo` (see :func:`locate_many`) may be shared by compositions whose `maps` are the same objects.
        """
        return locate_many(dotteds, self.overrides, self.maps, memo)


def override_key(override: str) -> str:
    key = override.split("=", 1)[0]
    return key.lstrip("+~").split("@", 1)[0]


def locate(dotted: str, overrides: Sequence[str], maps: Sequence[SourceMap], prefer: str = "auto") -> Location | None:
    """The most precise known origin of a dotted key: an override, else a file position."""
    for ov in reversed(overrides):
        key = override_key(ov)
        if dotted == key or dotted.startswith(key + ".") or (key.startswith(dotted + ".") and "=" in ov):
            return Location(override=ov)
    probe = dotted
    while True:
        for smap in maps:
            loc = smap.lookup(probe, prefer if probe == dotted else "key")
            if loc is not None:
                return loc
        if not probe:
            return None
        probe = probe.rpartition(".")[0]


def _location_maker() -> Callable[[str, int, int], Location]:
    """``Location(file, line, col)``, three times faster when it can be (see :func:`slot_setters`): a spec
    has ~10 keys per step."""
    setters = slot_setters(Location, ("file", "line", "col", "override"))
    if setters is None:
        return Location
    new = object.__new__
    set_file, set_line, set_col, set_override = setters

    def make(file: str, line: int, col: int) -> Location:
        loc = new(Location)
        set_file(loc, file)
        set_line(loc, line)
        set_col(loc, col)
        set_override(loc, None)
        return loc
    return make


_new_location = _location_maker()
_MISSING_LOC: Any = object()


def _locate_in_one_map(dotteds: Iterable[str], smap: SourceMap) -> dict[str, Location]:
    """:func:`locate_many` without overrides, memo or other maps (a compile without overrides), inlined.

    Per key, ``smap.lookup(dotted)`` (a Location made by `_new_location`), else the nearest enclosing
    key's position.
    """
    out: dict[str, Location] = {}
    key_at, value_at, block, file = smap.keys.get, smap.values.get, smap.block, smap.file
    make = _new_location
    for dotted in dotteds:
        pos = value_at(dotted)                     # SourceMap.position(dotted, "auto"): the key's position
        if pos is None or dotted in block:         # for a block collection or a key without a value
            kpos = key_at(dotted)
            if kpos is not None:
                pos = kpos
        if pos is None:
            found = locate(dotted, (), (smap,))       # not in the map: the nearest enclosing key's position
            if found is not None:
                out[dotted] = found
        elif type(pos) is Location:
            out[dotted] = pos
        else:                                        # a mark: 0-based
            out[dotted] = make(file, pos.line + 1, pos.column + 1)
    return out


def locate_many(dotteds: Iterable[str], overrides: Sequence[str], maps: Sequence[SourceMap],
                memo: dict[str, Location | None] | None = None) -> dict[str, Location]:
    """:func:`locate` (prefer "auto") of each of `dotteds`, the same answers: what `collect_locations` asks
    for every key of a spec, so the common case — the key itself is in a source map — is inlined.

    `memo` caches what the source maps say of a key (the answer when no override is about it); it
    is valid for these `maps` only: compilations of one spec that differ in overrides share it.
    """
    if not overrides and memo is None and len(maps) == 1:
        return _locate_in_one_map(dotteds, maps[0])
    out: dict[str, Location] = {}
    # locate()'s override rule, with each override's key worked out once: the last override that
    # sets the key, a key above it, or (with a value) a key below it
    keys = [(override_key(ov), "=" in ov, Location(override=ov)) for ov in reversed(overrides)]
    starts = tuple(key for key, _, _ in keys)     # a key an override sets, or one below it, starts so
    above = {key[:i] for key, has_value, _ in keys if has_value for i, c in enumerate(key) if c == "."}
    make = _new_location
    missing = _MISSING_LOC
    for dotted in dotteds:
        if keys and (dotted in above or dotted.startswith(starts)):
            below = dotted + "."
            hit = next((loc for key, has_value, loc in keys
                        if dotted == key or dotted.startswith(key + ".") or (has_value and key.startswith(below))),
                       None)
            if hit is not None:
                out[dotted] = hit
                continue
        loc = missing if memo is None else memo.get(dotted, missing)
        if loc is missing:
            for smap in maps:                             # SourceMap.lookup(dotted, "auto"), map by map
                pos = smap.position(dotted)
                if pos is not None:
                    loc = pos if isinstance(pos, Location) else make(smap.file, pos.line + 1, pos.column + 1)
                    break
            else:
                loc = locate(dotted, (), maps)        # not in any map: the nearest enclosing key's position
            if memo is not None:
                memo[dotted] = loc
        if loc is not None:
            out[dotted] = loc
    return out


_OVERRIDE_HINT = ("use KEY=VALUE (e.g. `params.lr=0.1`), `+KEY=VALUE` to add, `~KEY` to delete, GROUP=OPTION "
                  "to pick a config group option; quote values with special characters")


def _nesting(value: str) -> int:
    """How deeply brackets (`[`, `{`, `(`) nest in an override's value, quoted and escaped (`\\(`) text
    left out."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for c in value:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]})":
            depth = max(depth - 1, 0)
    return deepest


def check_override_nesting(overrides: Sequence[str]) -> None:
    """MLP103 at each override nested deeper than a spec may be (Hydra's parser, OmegaConf and the checks
    all recurse per level: a few hundred levels ran out of Python's stack, as RecursionError)."""
    diags = [Diagnostic("MLP103", f"the override's value is nested too deeply (more than {MAX_DEPTH} levels of "
                        "brackets)", Location(override=ov),
                        f"a value needs a few levels; {MAX_DEPTH} is the limit, as in the spec: put deeper data in "
                        "a file that a step reads")
             for ov in overrides if _nesting(ov.partition("=")[2]) > MAX_DEPTH]
    if diags:
        raise DiagnosticError(diags)


def sweep_without_multirun(ov: str, simple: bool = True) -> Diagnostic:
    """MLP110 for an override with several values (`params.lr=1,2`; not `simple`: `range(...)`, `choice(...)`)
    where one value is needed: every command reports it so (only `mlprism run -m` sweeps)."""
    key, _, value = ov.partition("=")
    hint = f"add -m to run every value (`mlprism run -m {shlex.quote(ov)}`)"
    if simple:
        hint += f"; for a list write `{key}=[{value}]`; for one value with a comma, quote it: `'{key}=\"{value}\"'`"
    return Diagnostic("MLP110", "several values for one key make a sweep", Location(override=ov), hint)


def _check_overrides(overrides: Sequence[str]) -> list[Any]:
    """Parse every override with Hydra's grammar; MLP110 for each one that does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    check_override_nesting(overrides)
    parser = OverridesParser.create()
    diags = []
    parsed: list[Any] = []
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            diags.append(Diagnostic("MLP110", "overrides of Hydra's own settings are not allowed",
                                    Location(override=ov), "override keys of the spec, e.g. `params.lr=0.1`"))
            continue
        if not key:
            diags.append(Diagnostic("MLP110", "an override needs a key before `=`", Location(override=ov),
                                    _OVERRIDE_HINT))
            continue
        try:
            one = parser.parse_overrides([ov])
        except HydraException as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            msg = lines[0] if lines else "cannot parse"
            if len(lines) > 1 and lines[0].startswith("Error parsing override"):
                msg = lines[1].strip()
            diags.append(Diagnostic("MLP110", f"bad override: {msg}", Location(override=ov), _OVERRIDE_HINT))
        except Exception as exc:  # the ANTLR runtime can raise plain errors on odd input
            diags.append(Diagnostic("MLP110", f"bad override: {type(exc).__name__}", Location(override=ov),
                                    _OVERRIDE_HINT))
        else:
            if one and one[0].is_sweep_override():
                from hydra.core.override_parser.types import ValueType

                diags.append(sweep_without_multirun(ov, one[0].value_type == ValueType.SIMPLE_CHOICE_SWEEP))
            parsed.extend(one)
    if diags:
        raise DiagnosticError(diags)
    return parsed


# -- what composition may touch --------------------------------------------------------------


@dataclass
class _Scan:
    """Config-group files that may be merged, and the key paths they (and overrides) may touch."""

    touched: set[KeyPath] = field(default_factory=set)
    files: dict[Path, Loaded] = field(default_factory=dict)
    errors: dict[Path, list[Diagnostic]] = field(default_factory=dict)   # files that do not load
    exact: bool = True                     # False: collapse nothing (the touched set is unknown)


def _header_package(text: str) -> str | None:
    m = re.search(r"^#\s*@package\s+(\S+)", text, re.M)
    return m.group(1) if m else None


def _leaf_paths(value: Any, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """Paths a merge of `value` may replace: its non-mapping values (a list is replaced whole)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_paths(v, (*prefix, k))
    else:
        yield prefix


def _dotted_path(dotted: str) -> KeyPath:
    return tuple(dotted.split(".")) if dotted else ()


def _default_groups(defaults: Any, within: str = "") -> tuple[list[str], list[str]]:
    """The config groups and the configs (`- base`) a `defaults` list names, as Hydra reads them; in a
    group file (`within`: its group) a group is also named relative to that group."""
    groups: list[str] = []
    configs: list[str] = []
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, str):
            if entry != "_self_":
                configs.append(entry)
        elif isinstance(entry, dict) and len(entry) == 1:
            key = str(next(iter(entry)))
            for prefix in ("override ", "optional "):
                key = key.removeprefix(prefix)
            key = key.strip().split("@", 1)[0]
            groups.append(key.lstrip("/"))
            if within and not key.startswith("/"):
                groups.append(f"{within}/{key}")
    return groups, configs


def _groups_in_use(data: dict[str, Any], file_dirs: Sequence[Path]) -> set[str]:
    """Every config group the spec's `defaults` list uses, and those the defaults lists of the files it
    selects (and of every option of a group it uses) name in turn."""
    used: set[str] = set()
    todo: list[tuple[Any, str]] = [(data.get("defaults"), "")]
    seen: set[Path] = set()
    while todo:
        defaults, within = todo.pop()
        groups, configs = _default_groups(defaults, within)
        files: list[tuple[Path, str]] = []
        for group in groups:
            if group in used:
                continue
            used.add(group)
            files += [(f, group) for base in file_dirs if (base / group).is_dir()
                      for f in sorted((base / group).glob("*.yaml"))]
        for name in configs:
            files += [(base / f"{name}.yaml", name.rpartition("/")[0]) for base in file_dirs]
        for f, group in files:
            if f in seen or not f.is_file():
                continue
            seen.add(f)
            try:
                sub = load_file(f, str(f)).data
            except DiagnosticError:
                continue                    # reported if Hydra selects the file
            if isinstance(sub, dict) and "defaults" in sub:
                todo.append((sub["defaults"], group))
    return used


def _value_overrides(data: dict[str, Any], parsed_overrides: Sequence[Any], file_dirs: Sequence[Path]) -> set[int]:
    """The overrides (their indices) that set, add or delete a key although a directory of the same name
    lies in a search path (`data/` beside the spec: `~data`, `+data.x=1`): Hydra would read one as a config
    group and fail (`~data`: "No match in the defaults list").

    Such a directory is a config group only when it is used as one: the defaults list uses the group, or
    the override picks one of its option files (`data=small` with `data/small.yaml`). Otherwise the
    override is about the spec's key, and :func:`_hydra_compose` applies it to the composed config the
    way Hydra applies every override of a key (after composition, in order), together with every other
    override of the same key, one above or one below it (so their order stays as written).
    """
    candidates: list[int] = []
    for i, ov in enumerate(parsed_overrides):
        key = str(ov.key_or_group)
        if ov.package is not None or ov.is_sweep_override() or isinstance(ov.value(), dict) or not key:
            continue
        if any((base / key).is_dir() for base in file_dirs):
            candidates.append(i)
    if not candidates:
        return set()
    used = _groups_in_use(data, file_dirs)
    values: set[int] = set()
    for i in candidates:
        ov = parsed_overrides[i]
        key = str(ov.key_or_group)
        value = ov.value()
        options = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if key in used or any(isinstance(o, str) and (base / key / f"{o}.yaml").is_file()
                              for o in options for base in file_dirs):
            continue                        # a config group, used as one
        values.add(i)
    keys = {str(parsed_overrides[i].key_or_group) for i in values}
    for i, ov in enumerate(parsed_overrides):
        key = str(ov.key_or_group)
        if i not in values and "/" not in key and ov.package is None and not ov.is_sweep_override() and any(
                key.startswith(k + ".") or k.startswith(key + ".") or k == key for k in keys) \
                and not any((base / key).exists() for base in file_dirs):
            values.add(i)                   # a key above or below one of them: applied in the same order
    return values


def _scan(data: dict[str, Any], parsed_overrides: Sequence[Any], file_dirs: Sequence[Path],
          other_paths: bool, spec_dir: Path, values: set[int] | frozenset[int] = frozenset()) -> _Scan:
    scan = _Scan(touched={("defaults",), ("hydra",)})
    groups: list[str] = []
    configs: list[str] = []
    for entry in data.get("defaults") or []:
        if isinstance(entry, str):
            if entry != "_self_":
                configs.append(entry)
        elif isinstance(entry, dict) and len(entry) == 1:
            (key,) = entry
            key = str(key)
            for prefix in ("override ", "optional "):
                key = key.removeprefix(prefix)
            if "@" in key:
                scan.exact = False
            groups.append(key.strip().lstrip("/").split("@")[0])     # `model@params.model`: conf/model/
        else:
            scan.exact = False
    for i, ov in enumerate(parsed_overrides):
        if getattr(ov, "package", None):
            scan.exact = False
        key = str(ov.key_or_group)
        scan.touched.add(_dotted_path(key))
        if i not in values:                 # (a key, not a config group: see _value_overrides)
            groups.append(key.lstrip("/"))
    if (groups or configs) and other_paths:
        scan.exact = False
    for group in groups:
        if group.startswith("hydra"):
            continue
        for base in file_dirs:
            gdir = base / group
            if gdir.is_dir():
                for f in sorted(gdir.glob("*.yaml")):
                    _scan_file(scan, f, group, spec_dir)
    for name in configs:
        found = [base / f"{name}.yaml" for base in file_dirs if (base / f"{name}.yaml").is_file()]
        if not found:
            scan.exact = False
        for f in found:
            _scan_file(scan, f, "", spec_dir)
    return scan


def _scan_file(scan: _Scan, f: Path, group: str, spec_dir: Path) -> None:
    try:
        rel = str(f.relative_to(spec_dir))
    except ValueError:
        rel = str(f)
    try:
        loaded = load_file(f, rel)
    except DiagnosticError as exc:
        scan.exact = False      # reported if Hydra selects the file (see _hydra_compose)
        scan.errors[f.resolve()] = exc.diagnostics
        return
    scan.files[f.resolve()] = loaded
    if not isinstance(loaded.data, dict):
        scan.exact = False
        return
    if "defaults" in loaded.data:
        scan.exact = False
        # the groups its own defaults list picks (`optimizer: adam` in conf/model/rf.yaml is model/optimizer):
        # loaded too, so a file Hydra fails on is named (MLP121, MLP103 in _hydra_compose)
        for entry in loaded.data["defaults"] if isinstance(loaded.data["defaults"], list) else ():
            if not (isinstance(entry, dict) and len(entry) == 1):
                continue
            name = str(next(iter(entry))).split()[-1].split("@")[0]
            sub = name.lstrip("/") if name.startswith("/") or not group else f"{group}/{name}"
            gdir = f.parents[len(group.split("/")) if group else 0] / sub       # conf/ + the group's path
            for option in sorted(gdir.glob("*.yaml")) if gdir.is_dir() and not sub.startswith("hydra") else ():
                if option.resolve() not in scan.files and option.resolve() not in scan.errors:
                    _scan_file(scan, option, sub, spec_dir)
    header = _header_package(loaded.text)
    prefixes = {(), _dotted_path(group.replace("/", "."))}
    if header is not None:
        if "_name_" in header:
            scan.exact = False
        pkg = header.replace("_global_", "").replace("_group_", group.replace("/", ".")).strip(".")
        prefixes.add(_dotted_path(pkg))
    for path in _leaf_paths(loaded.data):
        for prefix in prefixes:
            scan.touched.add(prefix + tuple(str(p) for p in path))


def _collapse(data: dict[str, Any], touched: set[KeyPath], exact: bool) -> tuple[dict[str, Any], dict[KeyPath, Any]]:
    """Replace every container subtree that composition cannot change by a placeholder string."""
    if not exact:
        return data, {}
    prefixes: set[KeyPath] = set()
    for t in touched:
        for i in range(len(t) + 1):
            prefixes.add(t[:i])
    collapsed: dict[KeyPath, Any] = {}

    def walk(value: Any, spath: KeyPath, kpath: KeyPath) -> Any:
        if spath in touched:            # everything below may change: keep it as it is
            return value
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
        if items is None:
            return value
        out: Any = {} if isinstance(value, dict) else []
        for k, v in items:
            child = (*spath, str(k))
            if child in prefixes:
                new = walk(v, child, (*kpath, k))
            elif isinstance(v, dict | list) and v:
                new = _PLACEHOLDER.format(len(collapsed))
                collapsed[(*kpath, k)] = v
            else:
                new = v
            if isinstance(out, dict):
                out[k] = new
            else:
                out.append(new)
        return out

    return walk(data, (), ()), collapsed


def _expand(raw: dict[str, Any], collapsed: dict[KeyPath, Any]) -> bool:
    """Put collapsed subtrees back; False if a placeholder is not where it was left."""
    for i, (path, value) in enumerate(collapsed.items()):
        node: Any = raw
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return False
        last = path[-1]
        try:
            if node[last] != _PLACEHOLDER.format(i):
                return False
        except (KeyError, IndexError, TypeError):
            return False
        node[last] = value
    return True


# -- interpolation -------------------------------------------------------------------------------


def _strings_with_interp(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """Every string containing `${`, with its path, in document order.

    Recursive (twice as fast: a path is built only for containers and matching strings); a value
    nested too deeply for that (only an override can nest past the loader's depth limit) is
    walked again with an explicit stack.
    """
    if isinstance(value, str):
        return [(path, value)] if "${" in value else []
    out: list[tuple[KeyPath, str]] = []

    def walk(node: Any, where: KeyPath) -> None:
        for k, v in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(v, str):
                if "${" in v:
                    out.append(((*where, k), v))
            elif isinstance(v, dict | list):
                walk(v, (*where, k))

    if isinstance(value, dict | list):
        try:
            walk(value, path)
        except RecursionError:
            return _strings_with_interp_deep(value, path)
    return out


def _strings_with_interp_deep(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """:func:`_strings_with_interp` with an explicit stack, for any depth."""
    out: list[tuple[KeyPath, str]] = []
    stack: list[tuple[KeyPath, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "${" in node:
                out.append((where, node))
        elif isinstance(node, dict):
            stack.extend((((*where, k), v) for k, v in reversed(node.items())))
        elif isinstance(node, list):
            stack.extend((((*where, i), v) for i, v in reversed(list(enumerate(node)))))
    return out


def _loaded_strings_with_interp(loaded: Loaded) -> list[tuple[KeyPath, str]]:
    """``_strings_with_interp(loaded.data)``: none when the text has neither `${` nor a backslash.

    A value holds only text of the spec: `${` appears in it as written, or through an escape
    (`"\\x24{"`); a line break in the middle is folded to a space or kept, never dropped.
    """
    text = loaded.text
    if "${" not in text and "\\" not in text:
        return []
    return _strings_with_interp(loaded.data)


#: (a weak reference to a Loaded, its _checked_strings): weak, so that the last spec compiled (its
#: data and source map: ~25 MB at 10,000 steps) is not kept alive through the emit that follows
_CHECKED: tuple[Callable[[], Any], list[tuple[KeyPath, str]]] = (lambda: None, [])


def _checked_strings(loaded: Loaded) -> list[tuple[KeyPath, str]]:
    """``_loaded_strings_with_interp(loaded)``, after ``check_interpolation_syntax`` of them (raises its
    diagnostics). The answer for the last spec asked about is kept: a sweep composes one loaded spec once
    per combination, and no stage changes a loaded spec. Callers do not change the list."""
    global _CHECKED
    checked = _CHECKED                   # one read: another thread may replace it
    if checked[0]() is loaded:
        return checked[1]
    strings = _loaded_strings_with_interp(loaded)
    bad = check_interpolation_syntax(loaded.data, loaded.source_map.lookup, strings)
    if bad:
        raise DiagnosticError(bad)
    _CHECKED = (weakref.ref(loaded), strings)
    return strings


def _is_simple(text: str) -> bool:
    """Only plain absolute references, no escapes: safe to resolve without OmegaConf's parser."""
    if "\\" in text:
        return False
    rest = _SIMPLE_REF.sub("", text)
    return "${" not in rest


def _grammar_error(text: str) -> str | None:
    """None if OmegaConf's grammar accepts `text`, else the parser's message."""
    if _is_simple(text):
        return None
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError

    try:
        grammar_parser.parse(text)
    except GrammarParseError as exc:
        return str(exc).splitlines()[0] if str(exc) else "invalid interpolation"
    except Exception as exc:  # pragma: no cover - the ANTLR runtime on pathological input
        return f"{type(exc).__name__}"
    return None


def _dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def check_interpolation_syntax(data: Any, where: Callable[[str], Location | None],
                               strings: list[tuple[KeyPath, str]] | None = None) -> list[Diagnostic]:
    """MLP121 for every string whose `${...}` OmegaConf cannot parse (e.g. GitHub's `${{ }}`).

    `strings`: ``_strings_with_interp(data)``, when the caller has it.
    """
    diags = []
    for path, text in _strings_with_interp(data) if strings is None else strings:
        problem = _grammar_error(text)
        if problem is not None:
            dotted = _dotted(path)
            diags.append(Diagnostic(
                "MLP121", f"`{dotted}`: `{_clip(text)}` is not a valid interpolation ({problem})", where(dotted),
                "to keep `${...}` as literal text (e.g. a GitHub expression `${{ }}`), escape it as `\\${`; "
                "interpolations look like `${params.lr}`"))
    return diags


#: How OmegaConf's interpolation grammar (ANTLR) reports a `${...}` it cannot parse.
_GRAMMAR_ERROR = re.compile(r"no viable alternative at input|mismatched input|extraneous input|"
                            r"token recognition error|missing '\}'")


class _Fallback(Exception):
    """This value needs OmegaConf itself."""


_MISSING = "???"


_NOT_SEEN: Any = object()


class _Resolver:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.memo: dict[KeyPath, Any] = {}
        self.active: set[KeyPath] = set()
        # a reference inside text whose target is a plain scalar (no `${`) -> that scalar: the
        # same answer wherever it appears (`${params.lr}` in 10,000 commands)
        self.scalars: dict[str, Any] = {}

    def target(self, dotted: str) -> tuple[KeyPath, Any]:
        node: Any = self.raw
        path: list[Key] = []
        for part in dotted.split("."):
            if isinstance(node, dict):
                if part not in node:
                    raise _Fallback
                node = node[part]
                path.append(part)
            elif isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise _Fallback
                node = node[int(part)]
                path.append(int(part))
            else:
                raise _Fallback
            if isinstance(node, str) and "${" in node and len(path) < len(dotted.split(".")):
                raise _Fallback          # walks through an interpolation
        return tuple(path), node

    def value_at(self, path: KeyPath, value: Any) -> Any:
        """The resolved value of a node that an interpolation points to."""
        if isinstance(value, str):
            if value == _MISSING:
                raise _Fallback
            if "${" in value:
                return self.resolve_string(path, value)
            return value
        if isinstance(value, dict | list):
            if _strings_with_interp(value):
                raise _Fallback
            return copy.deepcopy(value)
        return value

    def resolve_string(self, path: KeyPath, text: str) -> Any:
        if path in self.memo:
            return self.memo[path]
        if path in self.active or not _is_simple(text):
            raise _Fallback
        self.active.add(path)
        try:
            m = _SIMPLE_REF.fullmatch(text)
            if m:
                tpath, tvalue = self.target(m.group(1))
                result = self.value_at(tpath, tvalue)
            else:
                parts: list[str] = []
                pos = 0
                scalars = self.scalars
                for m in _SIMPLE_REF.finditer(text):
                    parts.append(text[pos:m.start()])
                    ref = m.group(1)
                    value = scalars.get(ref, _NOT_SEEN)
                    if value is _NOT_SEEN:
                        tpath, tvalue = self.target(ref)
                        value = self.value_at(tpath, tvalue)
                        if value is None or isinstance(value, dict | list):
                            raise _Fallback
                        if type(tvalue) in _SCALAR and not (isinstance(tvalue, str) and "${" in tvalue):
                            scalars[ref] = value
                    parts.append(str(value))
                    pos = m.end()
                parts.append(text[pos:])
                result = "".join(parts)
        finally:
            self.active.discard(path)
        self.memo[path] = result
        return result


@without_gc
def resolve(raw: dict[str, Any], locate_: Callable[[str], Location | None],
            strings: list[tuple[KeyPath, str]] | None = None) -> dict[str, Any]:
    """`raw` with every interpolation resolved, as OmegaConf's to_container(resolve=True) would.

    `strings`: ``_strings_with_interp(raw)``, when the caller has it. The result is a copy of `raw`
    except under `steps`: there only the containers on the way to a resolved string are copied,
    the others are `raw`'s own (the compiler reads a step's config; no part of it reaches the IR
    as it is, and copying 10,000 steps cost more than composing them).
    """
    resolver = _Resolver(raw)
    fallback: list[tuple[KeyPath, str]] = []
    resolved: dict[KeyPath, Any] = {}
    for path, text in _strings_with_interp(raw) if strings is None else strings:
        try:
            resolved[path] = resolver.resolve_string(path, text)
        except _Fallback:
            fallback.append((path, text))
    if fallback:
        resolved.update(_resolve_with_omegaconf(raw, fallback, locate_))
    config = {k: v if k == "steps" else _copy_containers(v) for k, v in raw.items()}
    own: set[int] = set()                       # the containers under `steps` copied so far
    for path, value in resolved.items():
        node: Any = config
        shared = path[0] == "steps"
        for part in path[:-1]:
            child = node[part]
            if shared and id(child) not in own:
                child = node[part] = child.copy()       # a dict or a list: `raw`'s stays as it is
                own.add(id(child))
            node = child
        node[path[-1]] = value
    return config


def _copy_containers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_containers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_containers(v) for v in value]
    return value


def _resolve_with_omegaconf(raw: dict[str, Any], leaves: list[tuple[KeyPath, str]],
                            locate_: Callable[[str], Location | None]) -> dict[KeyPath, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError, OmegaConfBaseException

    bad = check_interpolation_syntax(raw, locate_)
    if bad:
        raise DiagnosticError(bad)
    try:
        cfg = OmegaConf.create(raw)
    except OmegaConfBaseException as exc:
        raise DiagnosticError([Diagnostic("MLP120", f"the composed config cannot be built: {_first_line(exc)}",
                                          None)])
    out: dict[KeyPath, Any] = {}
    diags: list[Diagnostic] = []
    for path, text in leaves:
        dotted = _dotted(path)
        try:
            node: Any = cfg
            for part in path[:-1]:
                node = node[part]
            value = node[path[-1]]
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
            out[path] = value
        except GrammarParseError as exc:
            diags.append(Diagnostic(
                "MLP121", f"`{dotted}`: `{_clip(text)}` is not a valid interpolation ({_first_line(exc)})",
                locate_(dotted),
                "to keep `${...}` as literal text (e.g. a GitHub expression `${{ }}`), escape it as `\\${`"))
        except OmegaConfBaseException as exc:
            reason = _first_line(exc)
            diags.append(Diagnostic("MLP120", f"`{dotted}`: cannot resolve `{_clip(text)}`: {reason}",
                                    locate_(dotted), _interpolation_hint(reason, raw)))
        except RecursionError:
            diags.append(Diagnostic("MLP120", f"`{dotted}`: `{_clip(text)}` refers to itself",
                                    locate_(dotted), "an interpolation cannot depend on its own value"))
    if diags:
        raise DiagnosticError(diags)
    return out


def _interpolation_hint(reason: str, raw: dict[str, Any]) -> str | None:
    m = re.search(r"Interpolation key '([^']+)' not found", reason)
    if not m:
        if "resolver" in reason.lower() or "Unsupported interpolation type" in reason:
            return "resolvers (`${name:...}`) other than OmegaConf's and Hydra's built-ins are not available"
        if "recursive" in reason.lower():
            return "an interpolation cannot depend on its own value"
        return None
    missing = m.group(1)
    parent, _, leaf = missing.rpartition(".")
    node: Any = raw
    for part in parent.split(".") if parent else []:
        node = node.get(part) if isinstance(node, dict) else None
    siblings = [str(k) for k in node] if isinstance(node, dict) else []
    hint = did_you_mean(leaf, siblings)
    if hint and parent:
        hint = f"did you mean `${{{parent}.{hint.split('`')[1]}}}`?"
    elif hint:
        hint = f"did you mean `${{{hint.split('`')[1]}}}`?"
    return hint or f"`{missing}` is not defined; interpolations name keys of the spec, e.g. `${{params.lr}}`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- compose ---------------------------------------------------------------------------------------


def _check_defaults_and_hydra(loaded: Loaded) -> None:
    """The spec's `defaults` list has Hydra's shape, and there is no `hydra` section (it would be dropped)."""
    data, smap = loaded.data, loaded.source_map
    diags = []
    if "hydra" in data:
        diags.append(Diagnostic("MLP200", "unknown top-level key `hydra`", smap.lookup("hydra", "key"),
                                "mlprism composes the spec with Hydra but takes none of Hydra's own settings"))
    defaults = data.get("defaults", [])
    hint = ("a list of `_self_` and `GROUP: OPTION` entries, e.g. `defaults: [_self_, {env: dev}]`; "
            "config groups live in `conf/GROUP/OPTION.yaml` beside the spec")
    if not isinstance(defaults, list):
        diags.append(Diagnostic("MLP201", "`defaults` should be a list", smap.lookup("defaults", "value"), hint))
    else:
        for i, entry in enumerate(defaults):
            ok = (isinstance(entry, str) and entry.strip()) or (
                isinstance(entry, dict) and len(entry) == 1
                and all(isinstance(v, str | None) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                        for v in entry.values()))
            if not ok:
                diags.append(Diagnostic("MLP201", f"`defaults.{i}` is not a config-group entry",
                                        smap.lookup(f"defaults.{i}", "value"), hint))
    if diags:
        raise DiagnosticError(diags)


def nothing_to_compose(data: dict[str, Any], overrides: Sequence[str]) -> bool:
    """True when Hydra would return the spec as it is: no overrides, no config groups in `defaults`."""
    defaults = data.get("defaults", [])
    return (not overrides and isinstance(defaults, list) and all(d == "_self_" for d in defaults)
            and "hydra" not in data)


def check_spec_name(spec_path: Path, display: str) -> None:
    """MLP102 at the file for a spec whose name does not end in `.yaml` (`pipeline.yml`, `spec.txt`); a path
    that is no file is left to :func:`load_file` to report."""
    if spec_path.suffix != ".yaml" and spec_path.is_file():
        raise DiagnosticError([Diagnostic("MLP102", "a spec file name must end in `.yaml`", Location(display),
                                          f"rename it to `{spec_path.stem}.yaml` (mlprism reads a spec, and its "
                                          "config groups, from `.yaml` files only)")])


@without_gc
def compose(spec_path: Path, overrides: Sequence[str] = (), search_paths: Sequence[str] = (),
            display: str | None = None, loaded: Loaded | None = None, *, force_hydra: bool = False) -> Composed:
    """Compose the spec with its config groups and overrides; resolve interpolations.

    With no overrides and no config groups, Hydra's composition is the identity
    (less the `defaults` key), so Hydra is not even imported; `force_hydra`
    (used by the tests that check exactly that) composes through Hydra anyway.
    """
    spec_path = spec_path.resolve() if not spec_path.is_absolute() else spec_path
    display = display or str(spec_path)
    if loaded is None:                  # (load_pipeline checks the name before the file it hands over)
        check_spec_name(spec_path, display)
        loaded = load_file(spec_path, display)
    if loaded.data is None:
        raise DiagnosticError([Diagnostic("MLP202", "the spec is empty", Location(display, 1, 1),
                                          "a spec needs at least `apiVersion: mlprism/v1`, `name:` and `steps:`; "
                                          "`mlprism init` writes a commented one")])
    if not isinstance(loaded.data, dict):
        kind = {"list": "a list", "str": "a string", "int": "a number", "float": "a number",
                "bool": "a boolean"}.get(type(loaded.data).__name__, "a scalar")
        raise DiagnosticError([Diagnostic("MLP201", f"the spec must be a mapping of keys (apiVersion, name, steps, ...), "
                                          f"not {kind}", loaded.source_map.lookup("") or Location(display, 1, 1),
                                          "write `key: value` lines at the top level; `mlprism init` writes an example")])
    check_override_nesting(overrides)
    # overrides of the simple kind parse (see simple_overrides): Hydra's parser would accept them
    simple = simple_overrides(overrides) if overrides and not force_hydra else None
    parsed = _check_overrides(overrides) if overrides and simple is None else []
    _check_defaults_and_hydra(loaded)
    strings = _checked_strings(loaded)
    if not force_hydra and nothing_to_compose(loaded.data, overrides):
        raw = {k: v for k, v in loaded.data.items() if k != "defaults"}   # loaded.data is this compile's own
        composed = Composed({}, raw, spec_path, (), {}, [loaded.source_map], keys_of=loaded)
        composed.config = resolve(raw, composed.locate, [(p, t) for p, t in strings if p[0] != "defaults"])
        return composed
    spec_dir = spec_path.parent
    conf = spec_dir / "conf"
    searchpath = [*([f"file://{conf}"] if conf.is_dir() else []), *search_paths]
    file_dirs = [spec_dir, *(Path(p.removeprefix("file://")) for p in searchpath if p.startswith("file://"))]
    other_paths = any(not p.startswith("file://") for p in searchpath)
    if simple is not None:
        direct = set_existing_values(spec_path, loaded, overrides, simple, strings,
                                     file_dirs if not other_paths else None)
        if direct is not None:
            return direct
        parsed = _check_overrides(overrides)
    values = _value_overrides(loaded.data, parsed, file_dirs)
    scan = _scan(loaded.data, parsed, file_dirs, other_paths, spec_dir, values)
    skeleton, collapsed = _collapse(loaded.data, scan.touched, scan.exact)
    hydra_warnings: list[Diagnostic] = []
    as_values = [parsed[i] for i in sorted(values)]
    cfg, choices = _hydra_compose(spec_path, skeleton, overrides, searchpath, loaded, display, scan, hydra_warnings,
                                  as_values)

    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    if collapsed and not _expand(raw, collapsed):   # pragma: no cover - a placeholder moved: compose in full
        cfg, choices = _hydra_compose(spec_path, loaded.data, overrides, searchpath, loaded, display, scan,
                                      as_values=as_values)
        raw = OmegaConf.to_container(cfg, resolve=False)
        collapsed = {}
    maps = _group_maps(choices, searchpath, spec_path, loaded, scan)
    composed = Composed({}, raw, spec_path, tuple(overrides), choices, maps, len(collapsed), hydra_warnings, True)
    composed.config = resolve(raw, composed.locate)
    return composed


_SCALAR = (bool, int, float, str)

# -- overrides that set existing values: without Hydra ---------------------------------------------
#
# Hydra's override grammar (hydra/grammar/Override{Lexer,Parser}.g4), the part `simple_overrides`
# reads: a key of identifiers joined by dots, `=`, then one value token — INT, FLOAT, BOOL, ID or a
# quoted string without backslashes — or an unquoted run of identifier characters, digits and
# `-/.+%*@?|:`, which the lexer splits into several tokens and the parser joins back into that text.
_INT_UNSIGNED = r"(?:0|[1-9](?:_?[0-9])*)"
_DIGITS = r"[0-9](?:_?[0-9])*"
_POINT_FLOAT = rf"(?:{_INT_UNSIGNED}\.|(?:{_INT_UNSIGNED})?\.{_DIGITS})"
_EXPONENT_FLOAT = rf"(?:(?:{_INT_UNSIGNED}|{_POINT_FLOAT})[eE][+-]?{_DIGITS})"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_-]*"


class _Grammar(NamedTuple):
    tokens: tuple[tuple[re.Pattern[str], Callable[[str], Any] | None], ...]   # one token each, typed
    unquoted: re.Pattern[str]           # several tokens the `primitive` rule joins as they are
    quoted: re.Pattern[str]             # quoted: no escapes, nothing to interpolate
    key: re.Pattern[str]                # a key: ID or DOT_PATH
    identifier: re.Pattern[str]         # ID


@functools.cache
def _override_grammar() -> _Grammar:
    """The patterns of :func:`simple_override`, compiled at first use (~2 ms: not on every start-up)."""
    tokens: tuple[tuple[re.Pattern[str], Callable[[str], Any] | None], ...] = (   # the lexer's order breaks ties
        (re.compile(rf"[+-]?(?:{_POINT_FLOAT}|{_EXPONENT_FLOAT}|[Ii][Nn][Ff]|[Nn][Aa][Nn])"), float),   # FLOAT
        (re.compile(rf"[+-]?{_INT_UNSIGNED}"), int),                                                     # INT
        (re.compile(r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]"), lambda text: text.lower() == "true"),     # BOOL
        (re.compile(r"[Nn][Uu][Ll][Ll]"), None),                                                          # NULL
        (re.compile(r"[/\-+.%*@?|:]"), None),        # one UNQUOTED_CHAR or COLON: left to Hydra's parser
        (re.compile(_IDENTIFIER), str),                                                                   # ID
    )
    return _Grammar(tokens, re.compile(r"[A-Za-z0-9_/\-+.%*@?|:]+"), re.compile(r"'[^'\\$]*'|\"[^\"\\$]*\""),
                    re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*"), re.compile(_IDENTIFIER))


def simple_override(override: str) -> tuple[str, Any] | None:
    """`(key, value)` of `KEY=VALUE` exactly as Hydra's parser reads it, for the plain forms only
    (no `+`/`~`/`@`, no lists, dicts, sweeps, functions, escapes, spaces or interpolations); else None.

    Each form is one Hydra gives a known Python value: ``alpha=1`` 1, ``lr=1e-3`` 0.001, ``on=TRUE``
    True, ``opt=adam`` and ``path=data/x.csv`` and ``v='0.3'`` strings (``hydra_value`` writes the
    values of a sweep so). ``tests/unit/test_sweep_compile.py`` checks it against Hydra's parser.
    """
    grammar = _override_grammar()
    tokens, unquoted, quoted, dotted_key = grammar.tokens, grammar.unquoted, grammar.quoted, grammar.key
    key, eq, text = override.partition("=")
    if not eq or not dotted_key.fullmatch(key) or key == "hydra" or key.startswith("hydra."):
        return None
    if quoted.fullmatch(text):
        return key, text[1:-1]
    for pattern, convert in tokens:
        if pattern.fullmatch(text):            # one token: typed (the lexer takes the longest match)
            return (key, convert(text)) if convert is not None else None
    if unquoted.fullmatch(text):               # several tokens: the parser joins their texts
        return key, text
    return None


def simple_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]] | None:
    """:func:`simple_override` of each, or None if one is not simple."""
    out = []
    for ov in overrides:
        pair = simple_override(ov)
        if pair is None:
            return None
        out.append(pair)
    return out


def _plain_for_omegaconf(value: Any) -> bool:
    """True for what OmegaConf gives back from ``to_container(resolve=False)`` as it was given: dicts with
    identifiers as keys, lists, strings (not `???`, OmegaConf's missing value; `${`: only plain references), numbers,
    booleans and None."""
    if isinstance(value, dict):
        plain_key = _override_grammar().identifier
        return all(type(k) is str and plain_key.fullmatch(k) and _plain_for_omegaconf(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_for_omegaconf(v) for v in value)
    if type(value) is str:
        return value != _MISSING and ("${" not in value or _is_simple(value))
    return value is None or type(value) in (bool, int, float)


def _could_be_a_group(key: str, file_dirs: Sequence[Path]) -> bool:
    """Whether Hydra could read `key` as a config group: a directory of that name in a search path, or
    a group of Hydra's ConfigStore (only if Hydra is imported: nothing else fills it)."""
    names = (key, key.replace(".", "/"))
    if any((d / name).exists() for d in file_dirs for name in names):
        return True
    store = sys.modules.get("hydra.core.config_store")
    if store is None:
        return False
    for name in names:
        node: Any = store.ConfigStore.instance().repo
        for part in name.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


def set_existing_values(spec_path: Path, loaded: Loaded, overrides: Sequence[str], pairs: Sequence[tuple[str, Any]],
                        strings: list[tuple[KeyPath, str]], file_dirs: Sequence[Path] | None) -> Composed | None:
    """What :func:`compose` returns through Hydra for overrides that only set existing scalars of a spec
    without config groups, made without Hydra — or None when that is not certain (compose with Hydra).

    Certain when: the spec has no `defaults`; each override is simple (`pairs`: see
    :func:`simple_overrides`), sets a scalar to a scalar (not None), through mappings only, and no
    other override sets the same key, one above or one below it; no config group could be named
    like the key (`file_dirs`: every search path's directory; None when one is not a directory);
    no string of the spec calls a resolver (importing Hydra registers some: `now`, `hydra`).
    Hydra then composes the spec as it is and applies each override with ``OmegaConf.update``: an
    AnyNode (the spec reaches Hydra as a plain dict) holds the parser's value as it is. What passes
    through OmegaConf on the way (see :func:`_collapse`: the top-level values, and those on the way
    to each key) must come back from ``to_container`` unchanged: plain values only.
    """
    data = loaded.data
    if file_dirs is None or "defaults" in data or any(":" in text and not _is_simple(text) for _, text in strings):
        return None
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys) or any(a.startswith(b + ".") for a in keys for b in keys):
        return None
    changes: list[tuple[KeyPath, Any]] = []
    for key, value in pairs:
        if type(value) not in _SCALAR or _could_be_a_group(key, file_dirs):
            return None
        path = tuple(key.split("."))
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or type(node.get(path[-1])) not in _SCALAR:
            return None
        changes.append((path, value))
    touched = {("defaults",), ("hydra",), *(path for path, _ in changes)}
    skeleton, _ = _collapse(data, touched, True)
    if not _plain_for_omegaconf(skeleton):
        return None
    raw = dict(data)                                   # loaded.data is the spec's for every compile: copied
    for path, value in changes:
        node = raw
        for part in path[:-1]:
            node[part] = node = dict(node[part])        # copy the path
        node[path[-1]] = value
    changed = {path for path, _ in changes}
    composed = Composed({}, raw, spec_path, tuple(overrides), {}, [loaded.source_map], keys_of=loaded)
    composed.config = resolve(raw, composed.locate, [(p, t) for p, t in strings if p not in changed])
    return composed


def _changed_values(ref: Composed, ref_parsed: Sequence[Any], overrides: Sequence[str],
                    parsed: Sequence[Any], file_dirs: Sequence[Path]) -> list[tuple[list[str], Any]] | None:
    """The (key path, value) pairs that turn `ref.raw` into what Hydra composes with `overrides`, or None.

    Only when exactly that is certain: the lists have the same length and differ only where both set
    the same existing scalar (`KEY=VALUE`, no `+`/`~`/`@`, not a config group) to a scalar, and no
    other override touches that key or a key above or below it. Hydra applies such an override,
    after everything else, with ``OmegaConf.update(cfg, KEY, VALUE)``: the node (an AnyNode: the
    spec reaches Hydra as a plain dict) then holds ``VALUE`` — the parser's value — as it is, and
    nothing else changes.
    """
    if len(overrides) != len(ref.overrides) or len(parsed) != len(overrides) or len(ref_parsed) != len(overrides):
        return None
    keys = [override_key(ov) for ov in overrides]
    changes: list[tuple[list[str], Any]] = []
    for i, (ov, old) in enumerate(zip(overrides, ref.overrides, strict=True)):
        if ov == old:
            continue
        new_p, old_p = parsed[i], ref_parsed[i]
        key = str(new_p.key_or_group)
        for p in (new_p, old_p):
            if (p.type.name != "CHANGE" or p.package is not None or p.value_type is None
                    or p.value_type.name != "ELEMENT" or str(p.key_or_group) != key):
                return None
        value = new_p.value()
        if type(value) not in _SCALAR or (isinstance(value, str) and ("$" in value or "\\" in value)):
            return None
        if key in ref.choices or not key or key.startswith("hydra") or any(
                (d / key).exists() or (d / key.replace(".", "/")).exists() for d in file_dirs):
            return None         # (could be) a config group: Hydra would pick an option instead
        for j, other in enumerate(keys):
            if j != i and (other == key or other.startswith(key + ".") or key.startswith(other + ".")):
                return None
        path = key.split(".")
        node: Any = ref.raw
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node or type(node[path[-1]]) not in _SCALAR:
            return None
        changes.append((path, value))
    return changes


def compose_variant(ref: Composed, ref_parsed: Sequence[Any], overrides: Sequence[str],
                    search_paths: Sequence[str] = ()) -> Composed | None:
    """What :func:`compose` returns for the spec `ref` was composed from (the same `loaded` and
    `search_paths`) with `overrides` instead, derived from `ref` without Hydra — or None when that
    is not certain to be the same (then call :func:`compose`).

    `ref_parsed` are `ref.overrides` as :func:`_check_overrides` parses them. Raises what compose
    raises for a bad override (MLP110): compose's checks before Hydra passed for `ref` and do not
    depend on the overrides. Sweeps use this: their combinations differ in a few params only.
    """
    if not ref.overrides or ref.warnings or ref.spec_path.suffix != ".yaml":
        return None                 # ref came without Hydra, or Hydra warned: compose in full
    conf = ref.spec_path.parent / "conf"
    searchpath = [*([f"file://{conf}"] if conf.is_dir() else []), *search_paths]
    if any(not p.startswith("file://") for p in searchpath):
        return None                 # a config group could live where we cannot look
    parsed = _check_overrides(overrides)
    file_dirs = [ref.spec_path.parent, *(Path(p.removeprefix("file://")) for p in searchpath)]
    changes = _changed_values(ref, ref_parsed, overrides, parsed, file_dirs)
    if changes is None:
        return None
    raw = dict(ref.raw)
    for path, value in changes:
        node = raw
        for part in path[:-1]:
            node[part] = node = dict(node[part])      # copy the path: `ref.raw` stays as it is
        node[path[-1]] = value
    composed = Composed({}, raw, ref.spec_path, tuple(overrides), dict(ref.choices), list(ref.maps), ref.collapsed)
    composed.config = resolve(raw, composed.locate)
    return composed


def _hydra_compose(spec_path: Path, primary: dict[str, Any], overrides: Sequence[str], searchpath: list[str],
                   loaded: Loaded, display: str, scan: _Scan | None = None,
                   warned: list[Diagnostic] | None = None, as_values: Sequence[Any] = ()) -> tuple[Any, dict[str, str]]:
    """Compose with Hydra; `as_values` (parsed overrides, see :func:`_value_overrides`) are not given to
    Hydra but applied afterwards, as Hydra applies the overrides of keys."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    held = {ov.input_line for ov in as_values}
    hydra_overrides = [ov for ov in overrides if ov not in held]
    if "hydra" not in repr(primary.get("defaults", "")):
        # Hydra's own config groups only fill the `hydra` node, which is dropped below: skip loading them.
        hydra_overrides[:0] = [f"~hydra/{group}" for group in _HYDRA_GROUPS]
    if searchpath:
        hydra_overrides.insert(0, f"hydra.searchpath=[{','.join(hydra_quote(p, resolved=False) for p in searchpath)}]")
    store = ConfigStore.instance()
    GlobalHydra.instance().clear()
    caught: list[warnings.WarningMessage] = []
    try:
        store.store(name=_PRIMARY, node=primary)
        with warnings.catch_warnings(record=True) as caught, \
                initialize_config_dir(config_dir=str(spec_path.parent), version_base=None):
            warnings.simplefilter("always")
            cfg = hydra_compose(config_name=_PRIMARY, overrides=hydra_overrides, return_hydra_config=True)
        if as_values:
            from hydra._internal.config_loader_impl import ConfigLoaderImpl

            ConfigLoaderImpl._apply_overrides_to_config(list(as_values), cfg)   # cfg is in struct mode, as there
    except Exception as exc:
        # A config-group file that does not load: our own diagnostics are more precise than Hydra's.
        text = f"{exc} {exc.__cause__ or ''}"
        for path, diags in (scan.errors.items() if scan else ()):
            if str(path) in text or path.name in text:
                raise DiagnosticError(diags)
        if "maximum recursion depth" in text:
            # a file nested too deeply: Hydra's message does not name it, ours (MLP103) do
            deep = [d for diags in (scan.errors.values() if scan else ()) for d in diags if d.code == "MLP103"]
            if deep:
                raise DiagnosticError(deep)
        if scan is not None and _GRAMMAR_ERROR.search(text):
            # a `${` OmegaConf cannot parse in a group file: Hydra names no file, MLP121 does (as in the spec)
            bad = [d for f in scan.files.values() if isinstance(f.data, dict)
                   for d in check_interpolation_syntax(f.data, f.source_map.lookup)]
            if bad:
                raise DiagnosticError(bad)
        if isinstance(exc, MissingConfigException):
            raise DiagnosticError([_missing_config(exc, overrides, loaded, display, spec_path.stem)])
        if isinstance(exc, ConfigCompositionException | HydraException | OmegaConfBaseException):
            raise DiagnosticError([_composition_error(exc, overrides, loaded, display, spec_path.stem)])
        if isinstance(exc, ValueError | TypeError | KeyError | AttributeError | RecursionError | OSError):
            message = _clean(_first_line(exc), spec_path.stem)
            ov = _culprit(message, overrides) or (overrides[-1] if overrides and "override" in message.lower()
                                                   else None)
            raise DiagnosticError([Diagnostic(
                "MLP113", f"Hydra could not compose the config: {message}",
                Location(override=ov) if ov else _spec_loc(loaded, display),
                "quote an option that looks like a number: `env='1'`" if "must be a string" in message else None)])
        raise
    finally:
        GlobalHydra.instance().clear()
        store.repo.pop(f"{_PRIMARY}.yaml", None)
    choices = {k: str(v) for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not k.startswith("hydra/") and v is not None}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    if warned is not None:
        for w in caught:
            text = _clean(str(w.message), spec_path.stem).split(" See https://")[0].strip()
            warned.append(Diagnostic("MLP113", f"Hydra: {text}", _spec_loc(loaded, display), None,
                                     Severity.WARNING))
    return cfg, choices


def _group_maps(choices: dict[str, str], searchpath: list[str], spec_path: Path, loaded: Loaded,
                scan: _Scan) -> list[SourceMap]:
    """Source maps of the spec and every selected config group file, highest precedence first."""
    group_maps: list[SourceMap] = []
    spec_dir = spec_path.parent
    bases = [spec_dir, *(Path(sp.removeprefix("file://")) for sp in searchpath if sp.startswith("file://"))]
    for key, option in choices.items():
        # `group@package` when the defaults list puts the option elsewhere (`model@params.model: rf`, and the
        # groups nested in it): Hydra's key names the final package, `_global_` for the top
        group, _, package = key.partition("@")
        for base in bases:
            f = base / group / f"{option}.yaml"
            if f.is_file():
                try:
                    rel = str(f.relative_to(spec_dir))
                except ValueError:
                    rel = str(f)
                sub = scan.files.get(f.resolve()) or load_text(f.read_text(encoding="utf-8"), rel)
                package = package or _header_package(sub.text) or group.replace("/", ".")
                prefix = "" if package == "_global_" else package.replace("_group_", group).replace("/", ".")
                group_maps.append(_prefixed(sub.source_map, prefix))
                break
    defaults = loaded.data.get("defaults") or []
    self_last = not defaults or defaults[-1] == "_self_" or "_self_" not in defaults
    spec_map = loaded.source_map
    return [spec_map, *group_maps] if self_last else [*group_maps, spec_map]


def _prefixed(smap: SourceMap, prefix: str) -> SourceMap:
    if not prefix:
        return smap
    out = SourceMap(smap.file)
    out.keys = {(f"{prefix}.{k}" if k else prefix): v for k, v in smap.keys.items()}
    out.values = {(f"{prefix}.{k}" if k else prefix): v for k, v in smap.values.items()}
    out.block = {(f"{prefix}.{k}" if k else prefix) for k in smap.block}
    return out


def _spec_loc(loaded: Loaded, display: str) -> Location:
    """Where to point when Hydra fails without naming a culprit: the defaults list, else the top of the spec."""
    return loaded.source_map.lookup("defaults", "key") or Location(display, 1, 1)


def _culprit(message: str, overrides: Sequence[str]) -> str | None:
    for ov in overrides:
        if ov in message or f"'{override_key(ov)}'" in message:
            return ov
    for ov in overrides:
        if override_key(ov) in message:
            return ov
    return overrides[-1] if len(overrides) == 1 else None


def _clean(text: str, stem: str) -> str:
    return text.replace(_PRIMARY, stem)


def loaded_dir(loaded: Loaded, display: str) -> Path:
    """The spec's directory (the display path is relative to the working directory, or absolute)."""
    return Path(display).parent


def _missing_config(exc: Exception, overrides: Sequence[str], loaded: Loaded, display: str, stem: str) -> Diagnostic:
    full = _clean(str(exc), stem)
    msg = full.splitlines()[0] if full else "config not found"
    m = re.search(r"Could not (?:find|load) '([^']+)'", msg)
    wanted = m.group(1) if m else ""
    group, _, option = wanted.rpartition("/")
    options_m = re.search(r"Available options[^:]*:\s*(.*?)(?:\n\S|\Z)", full, re.S)
    options = re.findall(r"[\w.-]+", options_m.group(1)) if options_m else []
    if not options and group:   # Hydra does not always list them: look at the group's directories
        options = group_options(loaded_dir(loaded, display) / "conf" / group)
    hint = did_you_mean(option, options) if option else None
    if not hint and group and not options:       # a misspelled group: the groups beside it
        parent, _, name = group.rpartition("/")
        above = loaded_dir(loaded, display) / "conf" / parent
        groups = sorted(p.name for p in above.iterdir() if p.is_dir()) if above.is_dir() else []
        near = did_you_mean(name, groups)
        hint = near and f"{near[:-1]} (a config group in `conf/{parent + '/' if parent else ''}`)?"
    if not hint:
        hint = (f"available options for `{group}`: {', '.join(options)}" if options
                else f"config groups live in `conf/{group or '<group>'}/<option>.yaml` beside the spec")
    group_ovs = [o for o in overrides if "=" in o and override_key(o).replace("/", ".") == group.replace("/", ".")]
    if group and group_ovs:
        return Diagnostic("MLP112", f"config group option not found: {msg}", Location(override=group_ovs[-1]), hint)
    loc = _defaults_entry(loaded, {group}, bool(options), wanted)
    in_file = re.search(r"In '([^']+)'", full)
    if loc is None and in_file:          # a group file's own defaults list names it (Hydra: "In 'model/rf'")
        loc = _defaults_entry_in_group_file(loaded_dir(loaded, display), in_file.group(1), group, bool(options))
    loc = loc or _spec_loc(loaded, display)
    return Diagnostic("MLP112", f"config group option not found: {msg}", loc, hint)


def group_options(group_dir: Path) -> list[str]:
    """A config group's options: the names of the `.yaml` files in its directory (none if it is not one)."""
    return sorted(f.stem for f in group_dir.glob("*.yaml") if f.is_file()) if group_dir.is_dir() else []


def _defaults_entry(loaded: Loaded, groups: set[str], known: bool, wanted: str = "") -> Location | None:
    """Where `loaded`'s defaults list names one of `groups` (the last such entry), or is the string `wanted`:
    an unknown group at its name, an unknown option of a `known` group at the option."""
    loc = None
    for i, entry in enumerate(loaded.data.get("defaults") or []):
        if isinstance(entry, dict) and any(str(k).split()[-1].lstrip("/").split("@")[0] in groups for k in entry):
            loc = (loaded.source_map.lookup(f"defaults.{i}.{next(iter(entry))}", "value" if known else "key")
                   or loaded.source_map.lookup(f"defaults.{i}"))
        elif wanted and isinstance(entry, str) and entry == wanted:
            loc = loaded.source_map.lookup(f"defaults.{i}")
    return loc


def _defaults_entry_in_group_file(spec_dir: Path, cfg: str, group: str, known: bool) -> Location | None:
    """Where `conf/<cfg>.yaml`'s defaults list names `group` (relative to the file's own group, as Hydra
    reads it: `optimizer: adam` in conf/model/rf.yaml is the group model/optimizer)."""
    try:
        sub = load_file(spec_dir / "conf" / f"{cfg}.yaml", f"conf/{cfg}.yaml")
    except DiagnosticError:
        return None
    if not isinstance(sub.data, dict):
        return None
    parent = cfg.rpartition("/")[0]
    return _defaults_entry(sub, {group, group[len(parent) + 1:] if parent and group.startswith(parent + "/") else group},
                           known)


def _composition_error(exc: Exception, overrides: Sequence[str], loaded: Loaded, display: str,
                       stem: str) -> Diagnostic:
    text = _clean(str(exc), stem)
    first = text.splitlines()[0] if text else type(exc).__name__
    cause = exc.__cause__
    detail = _clean(str(cause), stem).splitlines()[0] if cause and str(cause) else ""
    ov = _culprit(text + detail, overrides)
    message = f"{first}{': ' + detail if detail and detail not in first else ''}"
    if "not in struct" in text + detail or "Could not override" in text or "Could not append" in text:
        key = override_key(ov) if ov else ""
        hint = _missing_key_hint(key, loaded.data) if key else None
        hint = hint or (f"use `+{key}=...` to add a new key" if key else "use `+KEY=VALUE` to add a new key")
        if key and "not in struct" in text + detail:
            message = f"cannot override `{key}`: the spec has no such key"
        placed = re.search(r"Did you mean to override (\S+?)\?", text)
        if placed and ov:          # `model=xgb` for `model@params.model: rf` in defaults
            hint = f"the defaults list places this group with a package: `{placed.group(1)}={ov.split('=', 1)[1]}`"
        elif "Could not append" in text and ov:
            hint = (f"`{key}` exists already: set it with `{ov.lstrip('+')}`, or add or set it with "
                    f"`++{ov.lstrip('+')}`")
        return Diagnostic("MLP111", message, Location(override=ov) if ov else _spec_loc(loaded, display), hint)
    if "Could not delete" in text:
        key = override_key(ov) if ov else ""
        near = _missing_key_hint(key, loaded.data) if key else None
        near = near.split(" (use `+", 1)[0] if near else None     # (adding a key is no answer to deleting one)
        return Diagnostic("MLP111", f"cannot delete `{key}`: the spec has no such key" if key else first,
                          Location(override=ov) if ov else _spec_loc(loaded, display),
                          near if near and near.startswith("did you mean") else "`~KEY` deletes a key that exists")
    if "Multiple values for" in text or ("Could not" in text and ov is not None):
        return Diagnostic("MLP110", message, Location(override=ov) if ov else _spec_loc(loaded, display), _OVERRIDE_HINT)
    return Diagnostic("MLP113", message, Location(override=ov) if ov else _spec_loc(loaded, display))


def _missing_key_hint(key: str, data: Any) -> str | None:
    """`did you mean params.lr?` for an override naming a key that does not exist."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part not in node:
            near = did_you_mean(part, [str(k) for k in node])
            if near:
                fixed = ".".join([*parts[:i], near.split("`")[1], *parts[i + 1:]])
                return f"did you mean `{fixed}`? (use `+{key}=...` to add a new key)"
            where = f"`{'.'.join(parts[:i])}` has no key" if i else "the spec has no top-level key"
            return f"{where} `{part}`; use `+{key}=...` to add it"
        node = node[part]
    return None


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


Resolver = Callable[[str], Location | None]
