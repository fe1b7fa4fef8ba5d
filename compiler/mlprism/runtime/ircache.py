"""A cache of compiled pipelines, so a no-op ``mlprism run`` does not pay for Hydra again.

Composing a spec with Hydra and OmegaConf costs about a second per thousand
steps; loading the IR it produced costs milliseconds. An entry in
``.mlprism/ir/`` is keyed by everything composition reads: the bytes of the spec
and of every YAML file in ``conf/`` and in plugins' config search paths, the
overrides, the plugin selection and the versions (and file times) of the code
that compiles. Config groups found beside the spec are checked after the fact:
the entry lists their files and is used only while they are unchanged.

Pipelines are pickled by field values and rebuilt by a generated function per IR class
(``_build_Step`` …): loading is about twice as fast as dataclasses' own way. A sweep's
combinations (``load_pipelines_cached``) share one entry.

Specs (or overrides) that call resolvers (``${oc.env:…}``, ``${now:…}``) can read
the environment or the clock, so they are never cached. ``MLPRISM_NO_IR_CACHE=1``
turns the cache off.
"""

from __future__ import annotations

import copyreg
import dataclasses
import gc
import itertools
import json
import operator
import os
import pickle
import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic
from mlprism.ir import IR_VERSION, Pipeline
from mlprism.runtime.hashing import hash_bytes

__all__ = ["load_pipeline_cached", "load_pipelines_cached"]

_RESOLVER = re.compile(rb"\$\{\s*[A-Za-z_][\w.]*\s*:")
_KEEP = 16
FORMAT = 3


def _yaml_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


_ENTRY_POINTS: list[tuple[list[Any], list[str], str | None]] | None = None


def _entry_point_sources() -> list[tuple[list[Any], list[str], str | None]]:
    """Each `mlprism` entry point: [name, value, version], its package's directories, its module's file.

    Looked up once per process, from the same scan of the entry points as the plugins
    (``plugins._entry_points``): what this process compiles with does not change when packages
    are installed while it runs. Their files' times are read every time.
    """
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        import importlib.util

        from mlprism._internal.plugins import _entry_points, dist_info

        found = []
        for ep in _entry_points():
            info = dist_info(ep)
            spec = importlib.util.find_spec(ep.module) if "." not in ep.module else None
            dirs = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
            origin = spec.origin if spec and not dirs else None
            found.append(([ep.name, ep.value, info[1] if info else None], dirs, origin))
        _ENTRY_POINTS = found
    return _ENTRY_POINTS


def _code_stamp() -> list[Any]:
    """Versions and file times of the code that compiles (editable installs change without a version bump)."""
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
    for head, dirs, origin in _entry_point_sources():
        entry: list[Any] = list(head)
        for loc in dirs:
            with os.scandir(loc) as it:
                entry += sorted([e.name, e.stat().st_mtime_ns] for e in it if e.name.endswith(".py"))
        if origin:
            entry.append(Path(origin).stat().st_mtime_ns)
        stamp.append(entry)
    return stamp


def load_pipeline_cached(spec: str | os.PathLike[str], overrides: Sequence[str] = (),
                         plugin_options: Sequence[str] = (), *, check_inputs: bool = True,
                         state_dir: Path | None = None) -> tuple[Pipeline, list[Diagnostic]]:
    """Like ``mlprism._internal.compiler.load_pipeline``, through the cache when it is safe."""
    return _Loader(spec, plugin_options, check_inputs, state_dir, batch=False).load(overrides)


def load_pipelines_cached(spec: str | os.PathLike[str], overrides_list: Sequence[Sequence[str]],
                          plugin_options: Sequence[str] = (), *, check_inputs: bool = True,
                          state_dir: Path | None = None) -> list[tuple[Pipeline, list[Diagnostic]]]:
    """``[load_pipeline_cached(spec, o, …) for o in overrides_list]``: the same pipelines, warnings and
    errors (those of the first list that fails), for much less.

    A sweep compiles one spec with one list of overrides per combination. Here the code stamp and
    the spec's hash are worked out once, the spec is loaded once (or not at all: the last load in
    this process is reused while the spec's bytes are the same), and combinations that only set
    other values of the same params are derived from the first one without Hydra (see
    ``compiler.Shared``). All the lists' pipelines are kept as one cache entry (not one each: a
    large sweep would push the other entries out), their equal parts stored once, so a rerun
    loads one file.
    """
    loader = _Loader(spec, plugin_options, check_inputs, state_dir, batch=True)
    lists = [list(o) for o in overrides_list]
    keys = [loader.key(o) for o in lists]
    batch_key = None
    if len(lists) > 1 and loader.enabled and all(k is not None for k in keys):
        batch_key = hash_bytes(json.dumps(["batch", keys]).encode())
        hits = _lookup_many(loader.state_dir, batch_key, loader.spec_path.parent, len(lists))
        if hits is not None:
            try:
                return [(loader.checked(hit), []) for hit in hits]
            except _Refused:
                pass    # the compiler decides (and reports) for these; go one by one
    # with a batch entry, not one per list too: a sweep of many combinations would push the others out
    results = [loader.load(o, key, store=batch_key is None) for o, key in zip(lists, keys, strict=True)]
    if batch_key is not None:
        if not any(warnings for _, warnings in results):
            _store_many(loader.state_dir, batch_key, loader.spec_path.parent, [p for p, _ in results])
        else:           # as one by one: each list without warnings
            for key, (pipeline, warnings) in zip(keys, results, strict=True):
                if not warnings:
                    _store(loader.state_dir, str(key), loader.spec_path.parent, pipeline)
    return results


class _Refused(Exception):
    """A cached pipeline the compiler would refuse now: compile it to get its diagnostics."""


class _Loader:
    """Loads one spec with one or more lists of overrides, working out what they share once."""

    def __init__(self, spec: str | os.PathLike[str], plugin_options: Sequence[str], check_inputs: bool,
                 state_dir: Path | None, *, batch: bool) -> None:
        self.spec = spec
        self.batch = batch      # several lists: compile them with a compiler.Shared
        self.spec_path = Path(spec).absolute()
        self.plugin_options = tuple(plugin_options)
        self.check_inputs = check_inputs
        self.state_dir = state_dir or self.spec_path.parent / ".mlprism"
        self.enabled = os.environ.get("MLPRISM_NO_IR_CACHE") != "1"
        self._files: list[Any] | None = None
        self._files_read = False
        self._stamp: list[Any] | None = None
        self._shared: Any = None
        self._inputs_ok: Any = None

    def key(self, overrides: Sequence[str]) -> str | None:
        if any("${" in o for o in overrides):
            return None
        if not self._files_read:
            try:
                self._files = _file_parts(self.spec_path)
            except OSError:
                self._files = None
            self._files_read = True
        if self._files is None:
            return None         # unreadable (the compiler reports it), or resolvers: never cached
        if self._stamp is None:
            self._stamp = _code_stamp()
        parts: list[Any] = [self._stamp, list(overrides), list(self.plugin_options),
                            os.environ.get("MLPRISM_DISABLE_PLUGIN_AUTOLOAD", ""), self._display(), *self._files]
        return hash_bytes(json.dumps(parts, default=str).encode())

    def _display(self) -> str:
        """The spec's name in the IR's locations, as the compiler writes it (so it is part of the key)."""
        from mlprism._internal.compiler import spec_display

        return spec_display(self.spec)

    def checked(self, hit: Pipeline) -> Pipeline:
        """`hit` if the compiler would accept it now, else raise _Refused or the compiler's diagnostics."""
        if hit.overrides:
            from mlprism._internal.validate import declared_secret_values, secret_override_errors

            if secret_override_errors(hit.overrides, declared_secret_values(hit.environment.secrets, os.environ)):
                raise _Refused  # an override now holds a secret's value: the compiler refuses it (MLP204)
        if self.check_inputs:
            from mlprism._internal.compiler import _paths_checked
            from mlprism._internal.lower import missing_inputs
            from mlprism.diagnostics import DiagnosticError

            paths = _paths_checked(hit)
            if paths != self._inputs_ok:        # the same paths were just found: the answer is the same
                diags = missing_inputs(hit, self.spec_path.parent)
                if diags:
                    raise DiagnosticError(diags)
                self._inputs_ok = paths
        return hit

    def load(self, overrides: Sequence[str], key: str | bool | None = False, *,
             store: bool = True) -> tuple[Pipeline, list[Diagnostic]]:
        from mlprism._internal.compiler import Shared, get_plugins, load_pipeline

        if key is False:
            key = self.key(overrides)
        if key is not None and self.enabled:
            hit = _lookup(self.state_dir, str(key), self.spec_path.parent)
            if hit is not None:
                try:
                    return self.checked(hit), []
                except _Refused:
                    pass
        if self._shared is None:
            self._shared = Shared()
            self._reuse_loaded()
        compiled = load_pipeline(self.spec, overrides, plugins=get_plugins(self.plugin_options),
                                 check_inputs=self.check_inputs, shared=self._shared)
        self._keep_loaded()
        if store and key is not None and self.enabled and not compiled.warnings:
            _store(self.state_dir, str(key), self.spec_path.parent, compiled.pipeline)
        return compiled.pipeline, list(compiled.warnings)

    def _spec_hash(self) -> str | None:
        return self._files[0][1] if self._files_read and self._files else None

    def _reuse_loaded(self) -> None:
        """What the last compilation in this process kept of the spec (``Shared.reusable``: the loaded spec,
        its source map's answers, the step graph), if the spec's bytes have not changed since.

        A sweep compiles the spec (``mlprism run``'s first load) and then each combination: the
        loaded spec is a function of its bytes and display name, and no stage changes it.
        """
        digest = self._spec_hash()
        kept = _LOADED.get(self.spec_path)
        if digest is not None and kept is not None and kept[0] == digest:
            self._shared = kept[1].reusable()

    def _keep_loaded(self) -> None:
        digest = self._spec_hash()
        if digest is None or not any(spec_path == self.spec_path for spec_path, _ in self._shared.loaded):
            return
        _LOADED.clear()
        _LOADED[self.spec_path] = (digest, self._shared.reusable())


#: what the last compilation kept of its spec, with the hash of the spec's bytes (see _Loader._reuse_loaded)
_LOADED: dict[Path, tuple[str, Any]] = {}


def _file_parts(spec_path: Path) -> list[Any] | None:
    """The spec's and conf/'s YAML files with their hashes; None if any calls a resolver (never cached)."""
    parts: list[Any] = []
    files = [spec_path, *_yaml_files(spec_path.parent / "conf")]
    for f in files:
        data = f.read_bytes()
        if _RESOLVER.search(data):
            return None
        parts.append([str(f.relative_to(spec_path.parent)) if f != spec_path else "<spec>", hash_bytes(data)])
    return parts


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


def _builder(cls: type) -> Any:
    """A function of a frozen slotted dataclass's field values (in order) that makes the object.

    What ``_rebuild`` does, unrolled: its slots are set through their descriptors, one call per
    object instead of a loop. Named ``_build_<Class>`` in this module, so pickle refers to it.
    """
    names = _field_names(cls)
    scope: dict[str, Any] = {"new": _new, "cls": cls}
    args = ", ".join(f"v{i}" for i in range(len(names)))
    lines = [f"def _build_{cls.__name__}({args}):", "    obj = new(cls)"]
    for i, name in enumerate(names):
        scope[f"set{i}"] = getattr(cls, name).__set__
        lines.append(f"    set{i}(obj, v{i})")
    lines.append("    return obj")
    exec("\n".join(lines), scope)     # the text is built from a dataclass's field names only
    func = scope[f"_build_{cls.__name__}"]
    func.__module__ = __name__
    func.__qualname__ = func.__name__
    return func


def _ir_classes() -> list[type]:
    """The IR's frozen slotted dataclasses (and Location) whose own pickling calls fields() per object."""
    import mlprism.ir as ir

    setstate = getattr(dataclasses, "_dataclass_setstate", None)
    if setstate is None:        # pragma: no cover - another Python's dataclasses: pickle them its way
        return []
    return [value for value in vars(ir).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value)
            and getattr(value, "__setstate__", None) is setstate
            and all(isinstance(getattr(value, n, None), types.MemberDescriptorType) for n in _field_names(value))]


_BUILDERS: dict[type, Any] = {}
for _cls in _ir_classes():
    _BUILDERS[_cls] = globals()[f"_build_{_cls.__name__}"] = _builder(_cls)


def _reducer(cls: type) -> Any:
    names = _field_names(cls)
    get = operator.attrgetter(*names) if names else (lambda obj: ())
    build = _BUILDERS.get(cls)
    if build is not None and globals().get(build.__name__) is build:
        if len(names) == 1:
            return lambda obj: (build, (get(obj),))
        return lambda obj: (build, get(obj))
    if len(names) == 1:
        return lambda obj: (_rebuild, (cls, (get(obj),)))
    return lambda obj: (_rebuild, (cls, get(obj)))


def _dispatch_table() -> dict[type, Any]:
    """Reducers for the IR's frozen slotted dataclasses (whose own pickling calls fields() per object)."""
    table: dict[type, Any] = dict(copyreg.dispatch_table)
    for cls in _ir_classes():
        table[cls] = _reducer(cls)
    return table


class _Pickler(pickle.Pickler):
    """Pickles the IR's frozen slotted dataclasses by field values, for fast loading (a no-op run loads the IR)."""

    def __init__(self, file: Any, protocol: int) -> None:
        super().__init__(file, protocol)
        self.dispatch_table = _dispatch_table()


def _read(path: Path) -> Any:
    paused = gc.isenabled()
    gc.disable()                # the IR is acyclic: collecting while its ~10 objects per step arrive is waste
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    finally:
        if paused:
            gc.enable()


def _lookup(state_dir: Path, key: str, spec_dir: Path) -> Pipeline | None:
    entry = _read(state_dir / "ir" / f"{key}.pickle")
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("pipeline"), Pipeline):
        return None
    return entry["pipeline"] if _deps_hold([entry["pipeline"]], [entry.get("deps")], spec_dir) else None


def _deps_hold(pipelines: Sequence[Pipeline], deps: Sequence[Any], spec_dir: Path) -> bool:
    """Whether the config-group files each pipeline was composed from are still as recorded."""
    try:
        return all(_group_deps(p, spec_dir) == d for p, d in zip(pipelines, deps, strict=True))
    except OSError:
        return False


def _lookup_many(state_dir: Path, key: str, spec_dir: Path, count: int) -> list[Pipeline] | None:
    """The pipelines of a batch entry (see _store_many), or None."""
    entry = _read(state_dir / "ir" / f"{key}.pickle")
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    pipelines, deps = entry.get("pipelines"), entry.get("deps")
    if (not isinstance(pipelines, list) or not isinstance(deps, list) or len(pipelines) != count
            or len(deps) != count or not all(isinstance(p, Pipeline) for p in pipelines)):
        return None
    return pipelines if _deps_hold(pipelines, deps, spec_dir) else None


def _shared_parts(pipelines: list[Pipeline]) -> list[Pipeline]:
    """Equal pipelines where the parts equal to the first one's are the first one's objects.

    Pickled together, each shared part is then written (and loaded) once. Steps, frozen dataclass
    values and locations are shared; each pipeline keeps its own dicts. A sweep's combinations
    mostly hold the same objects already (compiled with one ``compiler.Shared``): those are told
    apart by identity, in bulk, and only the others compared.
    """
    if len(pipelines) < 2:
        return pipelines
    first = pipelines[0]
    steps = {s.name: s for s in first.steps}
    names = [s.name for s in first.steps]
    locations = first.locations
    location_keys = list(locations)
    location_values = list(locations.values())
    keys: dict[str, str] | None = None
    out = [first]
    for p in pipelines[1:]:
        changes: dict[str, Any] = {}
        if len(p.steps) == len(names) and all(map(operator.eq, names, (s.name for s in p.steps))):
            shared_list = _shared_items(first.steps, p.steps)       # the same names in the same order
            if shared_list is not None:
                changes["steps"] = tuple(shared_list)
        else:
            shared_steps = tuple(b if (b := steps.get(s.name)) is s or (b is not None and b == s) else s
                                 for s in p.steps)
            if any(a is not b for a, b in zip(shared_steps, p.steps, strict=True)):
                changes["steps"] = shared_steps
        if len(p.locations) == len(location_keys) and all(map(operator.is_, location_keys, p.locations)):
            values = _shared_items(location_values, list(p.locations.values()))   # the same keys, in order
            if values is not None:
                changes["locations"] = dict(zip(location_keys, values, strict=True))
        else:
            if keys is None:
                keys = {k: k for k in locations}
            changes["locations"] = {keys.get(k, k): (b if (b := locations.get(k)) is loc or b == loc else loc)
                                    for k, loc in p.locations.items()}
        for f in ("edges", "data", "environment", "sweep", "registry", "deploy", "monitor", "triggers", "tracking"):
            a, b = getattr(p, f), getattr(first, f)
            if a is not b and a == b:
                changes[f] = b
        # each part replaced is equal to the one it replaces: so is the pipeline
        out.append(dataclasses.replace(p, **changes) if changes else p)
    return out


def _shared_items(firsts: Sequence[Any], others: Sequence[Any]) -> list[Any] | None:
    """`others` (as long as `firsts`) with each item equal to the one of `firsts` at its place replaced by
    that one, or None when that changes nothing (every item the same object or unequal)."""
    same = list(map(operator.is_, firsts, others))
    if all(same):
        return None
    out: list[Any] | None = None
    for i in itertools.compress(range(len(same)), map(operator.not_, same)):
        if firsts[i] == others[i]:
            if out is None:
                out = list(others)
            out[i] = firsts[i]
    return out


def _store_many(state_dir: Path, key: str, spec_dir: Path, pipelines: list[Pipeline]) -> None:
    try:
        entry = {"format": FORMAT, "pipelines": _shared_parts(pipelines),
                 "deps": [_group_deps(p, spec_dir) for p in pipelines]}
    except (OSError, TypeError, ValueError):
        return
    _write(state_dir, key, entry)


def _store(state_dir: Path, key: str, spec_dir: Path, pipeline: Pipeline) -> None:
    try:
        entry = {"format": FORMAT, "pipeline": pipeline, "deps": _group_deps(pipeline, spec_dir)}
    except OSError:
        return
    _write(state_dir, key, entry)


def _write(state_dir: Path, key: str, entry: dict[str, Any]) -> None:
    directory = state_dir / "ir"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ignore = state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# mlprism's local state: never commit it\n*\n")
        tmp = directory / f".{os.urandom(16).hex()}.tmp"
        with open(tmp, "wb") as f:
            _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(entry)
        os.replace(tmp, directory / f"{key}.pickle")
        entries = sorted(directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[_KEEP:]:
            old.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass    # the cache is an optimisation only
