"""A cache of compiled pipelines, so a no-op ``mlprism run`` does not pay for Hydra again.

Composing a spec with Hydra and OmegaConf costs about a second per thousand
steps; loading the IR it produced costs milliseconds. An entry in
``.mlprism/ir/`` is keyed by everything composition reads: the bytes of the spec
and of every YAML file in ``conf/`` and in plugins' config search paths, the
overrides, the plugin selection and the versions (and file times) of the code
that compiles. Config groups found beside the spec are checked after the fact:
the entry lists their files and is used only while they are unchanged.

Specs (or overrides) that call resolvers (``${oc.env:…}``, ``${now:…}``) can read
the environment or the clock, so they are never cached. ``MLPRISM_NO_IR_CACHE=1``
turns the cache off.
"""

from __future__ import annotations

import copyreg
import dataclasses
import gc
import json
import operator
import os
import pickle
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic
from mlprism.ir import IR_VERSION, Pipeline
from mlprism.runtime.hashing import hash_bytes

__all__ = ["load_pipeline_cached"]

_RESOLVER = re.compile(rb"\$\{\s*[A-Za-z_][\w.]*\s*:")
_KEEP = 16
FORMAT = 2


def _yaml_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _code_stamp() -> list[Any]:
    """Versions and file times of the code that compiles (editable installs change without a version bump)."""
    import importlib.metadata
    import importlib.util

    import mlprism

    stamp: list[Any] = [mlprism.__version__, IR_VERSION, FORMAT]
    base = Path(mlprism.__file__).parent
    for sub in ("_internal", "ir"):
        for p in sorted((base / sub).glob("*.py")):
            stamp.append([p.name, p.stat().st_mtime_ns])
    schemas = importlib.util.find_spec("mlprism_schemas")
    if schemas and schemas.submodule_search_locations:
        for loc in schemas.submodule_search_locations:
            for p in sorted(Path(loc).glob("*.json")):
                stamp.append([p.name, p.stat().st_mtime_ns])
    for ep in sorted(importlib.metadata.entry_points(group="mlprism"), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        entry: list[Any] = [ep.name, ep.value, dist.version if dist else None]
        spec = importlib.util.find_spec(ep.module) if "." not in ep.module else None
        if spec and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                with os.scandir(loc) as it:
                    entry += sorted([e.name, e.stat().st_mtime_ns] for e in it if e.name.endswith(".py"))
        elif spec and spec.origin:
            entry.append(Path(spec.origin).stat().st_mtime_ns)
        stamp.append(entry)
    return stamp


def load_pipeline_cached(spec: str | os.PathLike[str], overrides: Sequence[str] = (),
                         plugin_options: Sequence[str] = (), *, check_inputs: bool = True,
                         state_dir: Path | None = None) -> tuple[Pipeline, list[Diagnostic]]:
    """Like ``mlprism._internal.compiler.load_pipeline``, through the cache when it is safe."""
    from mlprism._internal.compiler import get_plugins, load_pipeline

    spec_path = Path(spec).absolute()
    state_dir = state_dir or spec_path.parent / ".mlprism"
    key = None
    try:
        key = _key(spec_path, overrides, plugin_options)
    except OSError:
        key = None              # the compiler will report the unreadable file
    if key is not None and os.environ.get("MLPRISM_NO_IR_CACHE") != "1":
        hit = _lookup(state_dir, key, spec_path.parent)
        if hit is not None and hit.overrides:
            from mlprism._internal.validate import declared_secret_values, secret_override_errors

            if secret_override_errors(hit.overrides, declared_secret_values(hit.environment.secrets, os.environ)):
                hit = None      # an override now holds a secret's value: the compiler refuses it (MLP204)
        if hit is not None:
            if check_inputs:
                from mlprism._internal.lower import missing_inputs
                from mlprism.diagnostics import DiagnosticError

                diags = missing_inputs(hit, spec_path.parent)
                if diags:
                    raise DiagnosticError(diags)
            return hit, []
    compiled = load_pipeline(spec, overrides, plugins=get_plugins(tuple(plugin_options)), check_inputs=check_inputs)
    if key is not None and os.environ.get("MLPRISM_NO_IR_CACHE") != "1" and not compiled.warnings:
        _store(state_dir, key, spec_path.parent, compiled.pipeline)
    return compiled.pipeline, list(compiled.warnings)


def _key(spec_path: Path, overrides: Sequence[str], plugin_options: Sequence[str]) -> str | None:
    parts: list[Any] = [_code_stamp(), list(overrides), list(plugin_options),
                        os.environ.get("MLPRISM_DISABLE_PLUGIN_AUTOLOAD", "")]
    if any("${" in o for o in overrides):
        return None
    files = [spec_path, *_yaml_files(spec_path.parent / "conf")]
    for f in files:
        data = f.read_bytes()
        if _RESOLVER.search(data):
            return None
        parts.append([str(f.relative_to(spec_path.parent)) if f != spec_path else "<spec>", hash_bytes(data)])
    return hash_bytes(json.dumps(parts, default=str).encode())


def _group_deps(pipeline: Pipeline, spec_dir: Path) -> dict[str, str | None]:
    """Hashes of the YAML files of chosen config groups that live beside the spec (not in conf/)."""
    deps: dict[str, str | None] = {}
    for group in pipeline.config_choices:
        d = spec_dir / group
        for f in _yaml_files(d):
            deps[str(f.relative_to(spec_dir))] = hash_bytes(f.read_bytes())
        if not d.is_dir():
            deps[group] = None
    return deps


_FIELDS: dict[type, tuple[str, ...]] = {}
_new = object.__new__
_set = object.__setattr__


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _rebuild(cls: type, values: tuple[Any, ...]) -> Any:
    """Unpickle a frozen slotted dataclass: what dataclasses' own __setstate__ does, without its per-object fields()."""
    obj = _new(cls)
    for name, value in zip(_field_names(cls), values):  # noqa: B905 (written by _Pickler from the same fields)
        _set(obj, name, value)
    return obj


def _reducer(cls: type) -> Any:
    names = _field_names(cls)
    get = operator.attrgetter(*names) if names else (lambda obj: ())
    if len(names) == 1:
        return lambda obj: (_rebuild, (cls, (get(obj),)))
    return lambda obj: (_rebuild, (cls, get(obj)))


def _dispatch_table() -> dict[type, Any]:
    """Reducers for the IR's frozen slotted dataclasses (whose own pickling calls fields() per object)."""
    import mlprism.ir as ir

    table: dict[type, Any] = dict(copyreg.dispatch_table)
    setstate = getattr(dataclasses, "_dataclass_setstate", None)
    for value in vars(ir).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value) and setstate is not None \
                and getattr(value, "__setstate__", None) is setstate:
            table[value] = _reducer(value)
    return table


class _Pickler(pickle.Pickler):
    """Pickles the IR's frozen slotted dataclasses by field values, for fast loading (a no-op run loads the IR)."""

    def __init__(self, file: Any, protocol: int) -> None:
        super().__init__(file, protocol)
        self.dispatch_table = _dispatch_table()


def _lookup(state_dir: Path, key: str, spec_dir: Path) -> Pipeline | None:
    path = state_dir / "ir" / f"{key}.pickle"
    paused = gc.isenabled()
    gc.disable()                # the IR is acyclic: collecting while its ~10 objects per step arrive is waste
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    finally:
        if paused:
            gc.enable()
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("pipeline"), Pipeline):
        return None
    try:
        if _group_deps(entry["pipeline"], spec_dir) != entry.get("deps"):
            return None
    except OSError:
        return None
    return entry["pipeline"]


def _store(state_dir: Path, key: str, spec_dir: Path, pipeline: Pipeline) -> None:
    directory = state_dir / "ir"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# mlprism's local state: never commit it\n*\n")
        entry = {"format": FORMAT, "pipeline": pipeline, "deps": _group_deps(pipeline, spec_dir)}
        tmp = directory / f".{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(entry)
        os.replace(tmp, directory / f"{key}.pickle")
        entries = sorted(directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[_KEEP:]:
            old.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass    # the cache is an optimisation only
