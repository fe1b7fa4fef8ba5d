"""The pipeline of stages: load → compose → validate → lower → graph → passes → emit.

Each stage lives in its own module; this one only strings them together.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlprism._internal import graph as graph_stage
from mlprism._internal.compose import Composed, check_spec_name, compose
from mlprism._internal.features import capability_errors, feature_uses
from mlprism._internal.load import Loaded, load_file, without_gc, without_gc_long_lived
from mlprism._internal.lower import collect_locations, lower, missing_inputs
from mlprism._internal.plugins import (
    Plugins,
    call_each,
    load_plugins,
    plugin_error,
    schema_sections,
)
from mlprism._internal.target import EmitContext, GeneratedFile
from mlprism._internal.validate import (
    Protected,
    escaping_paths,
    full_schema,
    schema_errors,
    secret_override_errors,
    secret_value_errors,
    secret_values_in,
    semantic_errors,
    unused_sweep_errors,
)
from mlprism._internal.write import normalize
from mlprism.diagnostics import (
    CODES,
    Diagnostic,
    DiagnosticError,
    Diagnostics,
    Location,
    Severity,
    did_you_mean,
)
from mlprism.ir import Pipeline

_PLUGINS: dict[tuple[str, ...], Plugins] = {}


def get_plugins(options: Sequence[str] = ()) -> Plugins:
    """Plugins for these `-p` options, loaded once per process."""
    key = (os.environ.get("MLPRISM_DISABLE_PLUGIN_AUTOLOAD", ""), *options)
    if key not in _PLUGINS:
        _PLUGINS[key] = load_plugins(options)
    return _PLUGINS[key]


@dataclass
class Compiled:
    pipeline: Pipeline
    warnings: list[Diagnostic]
    spec_path: Path
    #: seconds spent in each front-end stage, in order (`mlprism validate --timings` prints them)
    timings: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Seconds per stage: `lap(name)` closes the stage that ran since the previous lap."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._t
        self._t = now


def display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def spec_display(spec: str | os.PathLike[str]) -> str:
    """The spec's name as its diagnostics and the IR's locations show it: as given, or relative to the
    working directory when given as an absolute path."""
    return str(spec) if not Path(spec).is_absolute() else display_path(Path(spec))


class Shared:
    """Work that compiling one spec several times, with different overrides, need not repeat.

    Pass the same object to :func:`load_pipeline` for each compilation (a sweep's combinations);
    each result is the same as without it. Shared: the loaded spec (read and parsed once), the
    composition by Hydra when a later one only sets other values of the same keys (see
    :func:`compose.compose_variant`), what the source maps say of each key, the keys of a spec
    composed without Hydra and their locations (see :meth:`collect_locations`), the step graph when
    the steps' names, files and `needs` are the same, and the input checks when every path they
    look at is the same (the file system is looked at once). Not for specs edited in between.
    """

    def __init__(self) -> None:
        self.loaded: dict[tuple[Path, str], Loaded] = {}
        self.composed: Any = None                   # (Composed, its parsed overrides, search paths)
        self.location_memos: list[tuple[list[Any], dict[str, Location | None]]] = []
        self.graph: tuple[Any, tuple[str, ...], tuple[Any, ...]] | None = None
        self.inputs_ok: Any = None
        self.key_locations: _KeyLocations | None = None

    def reusable(self) -> Shared:
        """A new Shared with what holds as long as the spec's bytes are the same: the loaded spec, what its
        source map says of each key, the step graph (a function of the steps' names, files and needs).
        Not a composition by Hydra (it reads config groups) nor the input checks (the file system)."""
        kept = Shared()
        kept.loaded = dict(self.loaded)
        own = [loaded.source_map for loaded in self.loaded.values()]
        kept.location_memos = [(maps, memo) for maps, memo in self.location_memos
                               if all(any(m is o for o in own) for m in maps)]
        kept.graph = self.graph
        kept.key_locations = self.key_locations
        return kept

    def load(self, spec_path: Path, display: str) -> Loaded:
        key = (spec_path, display)
        if key not in self.loaded:
            self.loaded[key] = load_file(spec_path, display)
        return self.loaded[key]

    def compose(self, spec_path: Path, overrides: Sequence[str], search: list[str], display: str,
                loaded: Loaded) -> Composed:
        from mlprism._internal.compose import _check_overrides, compose_variant

        if self.composed is not None:
            ref, ref_parsed, ref_search, ref_loaded = self.composed
            if ref_loaded is loaded and ref_search == search:
                variant = compose_variant(ref, ref_parsed, overrides, search)
                if variant is not None:
                    return variant
        composed = compose(spec_path, list(overrides), search, display=display, loaded=loaded)
        if composed.by_hydra and composed.overrides and not composed.warnings:
            self.composed = (composed, _check_overrides(composed.overrides), list(search), loaded)
        return composed

    def location_memo(self, maps: list[Any]) -> dict[str, Location | None]:
        for known, memo in self.location_memos:
            if len(known) == len(maps) and all(a is b for a, b in zip(known, maps, strict=True)):
                return memo
        memo = {}
        self.location_memos.append((maps, memo))
        return memo

    def collect_locations(self, composed: Composed) -> dict[str, Location]:
        """``collect_locations(composed.raw, …)``: the locations of the spec's keys.

        A spec composed without Hydra has the loaded spec's keys (``Composed.keys_of``): they are
        collected once, with their locations without overrides, and each override that sets a
        scalar only changes the locations of its key and the keys above it (see ``locate``).
        """
        memo = self.location_memo(composed.maps)
        known = self.key_locations
        loaded = composed.keys_of
        if (loaded is not None and known is not None and known.loaded is loaded
                and len(known.maps) == len(composed.maps) and all(a is b for a, b in zip(known.maps, composed.maps, strict=True))):
            derived = known.with_overrides(composed.overrides, memo)
            if derived is not None:
                return derived
        asked: list[list[str]] = []
        one_map = not composed.overrides and len(composed.maps) == 1     # locate_many's path for that, no memo

        def locate_many(dotteds: list[str]) -> dict[str, Location]:
            asked.append(dotteds)
            return composed.locate_many(dotteds, None if one_map else memo)

        locations = collect_locations(composed.raw, composed.locate, locate_many=locate_many)
        if loaded is not None and asked:
            self.key_locations = _KeyLocations(loaded, list(composed.maps), asked[0],
                                               None if composed.overrides else dict(locations))
        return locations

    def build_graph(self, pipeline: Pipeline) -> Pipeline:
        """graph_stage.build: it reads the steps' names (in order), outputs, metrics, inputs and needs only."""
        key = tuple((s.name, s.inputs, s.outputs, s.metrics, s.needs) for s in pipeline.steps)
        if self.graph is not None and self.graph[0] == key:
            by_name = {s.name: s for s in pipeline.steps}
            return replace(pipeline, steps=tuple(by_name[n] for n in self.graph[1]), edges=self.graph[2])
        built = graph_stage.build(pipeline, pipeline.location)
        self.graph = (key, tuple(s.name for s in built.steps), built.edges)
        return built

    def check_inputs(self, pipeline: Pipeline, spec_dir: Path) -> list[Diagnostic]:
        """missing_inputs + escaping_paths: both read only the paths in this key (and the file system)."""
        key = (spec_dir, _paths_checked(pipeline))
        if self.inputs_ok == key:
            return []
        diags = missing_inputs(pipeline, spec_dir) + escaping_paths(pipeline, spec_dir)
        if not diags:
            self.inputs_ok = key
        return diags


@dataclass
class _KeyLocations:
    """The keys `collect_locations` found in a spec composed without Hydra, and their locations without overrides."""

    loaded: Loaded
    maps: list[Any]
    dotteds: list[str]
    plain: dict[str, Location] | None              # without overrides: worked out when first needed
    known: set[str] = field(default_factory=set)

    def with_overrides(self, overrides: Sequence[str], memo: dict[str, Location | None]) -> dict[str, Location] | None:
        """The locations with these overrides (each sets an existing scalar: nothing lies below its key), or
        None where an override would give a location to a key that has none (it would come in another order)."""
        from mlprism._internal.compose import locate_many, override_key

        if self.plain is None:
            self.plain = locate_many(self.dotteds, (), self.maps, memo)
        if not self.known:
            self.known = set(self.dotteds)
        out = dict(self.plain)
        for ov in overrides:                # locate's rule: the last override that sets the key or one below it
            if "=" not in ov:
                return None
            loc = Location(override=ov)
            probe = override_key(ov)
            while probe:
                if probe in self.known:
                    if probe not in out:
                        return None
                    out[probe] = loc
                probe = probe.rpartition(".")[0]
        return out


def _paths_checked(pipeline: Pipeline) -> Any:
    """Everything `missing_inputs` and `escaping_paths` read of a pipeline (keep in step with them)."""
    monitor = pipeline.monitor
    return (tuple((d.name, d.path, d.external) for d in pipeline.data),
            tuple((s.name, s.inputs, s.outputs, s.metrics) for s in pipeline.steps),
            pipeline.registry.artifact if pipeline.registry else None, pipeline.environment.requirements,
            (monitor.drift.reference, monitor.drift.current) if monitor else None)


@without_gc_long_lived
def load_pipeline(spec: str | os.PathLike[str], overrides: Sequence[str] = (), *,
                  plugins: Plugins | None = None, check_inputs: bool = True, shared: Shared | None = None) -> Compiled:
    """Run every front-end stage. Raises DiagnosticError with all errors found.

    `shared`: the same object for several compilations of one spec (see :class:`Shared`).
    """
    plugins = plugins or get_plugins()
    display = spec_display(spec)
    spec_path = Path(spec).absolute()
    warnings: list[Diagnostic] = list(plugins.problems)
    clock = _Clock()
    # 1. load (source map, duplicate keys, limits)
    check_spec_name(spec_path, display)
    loaded = shared.load(spec_path, display) if shared else load_file(spec_path, display)
    # a declared secret's value in an override: refused before anything can print or record it
    secret_errors = secret_override_errors(overrides, secret_values_in(loaded.data, os.environ))
    if secret_errors:
        raise DiagnosticError(secret_errors)
    # 2. compose (Hydra + OmegaConf)
    search = config_searchpath(plugins, spec_path.parent)
    clock.lap("load")
    try:
        if shared:
            composed = shared.compose(spec_path, overrides, search, display, loaded)
        else:
            composed = compose(spec_path, list(overrides), search, display=display, loaded=loaded)
    except DiagnosticError as exc:
        if all(d.hint for d in exc.diagnostics):
            raise
        raise DiagnosticError([with_default_hint(d) for d in exc.diagnostics]) from exc.__cause__
    warnings.extend(composed.warnings)
    config = composed.config
    # ... or in the composed spec (`${oc.env:NAME}`, a literal): it would reach every generated file
    secret_errors = secret_value_errors(config, secret_values_in(config, os.environ), composed.locate)
    if secret_errors:
        raise DiagnosticError(secret_errors)
    clock.lap("compose")
    # 3. validate
    sections = schema_sections(plugins)
    errors = schema_errors(config, full_schema(sections), composed.locate)
    if not errors:
        composed_from = [m.file for m in composed.maps if m is not loaded.source_map]
        errors = semantic_errors(config, composed.locate, Protected(spec_path.name, composed_from))
    if not errors:
        errors = unused_sweep_errors(composed.raw, composed.locate)
    if errors:
        raise DiagnosticError(errors)
    for name in (config.get("targets") or {}):
        if name not in plugins.targets and name not in sections:
            warnings.append(Diagnostic("MLP300", f"no installed target is named `{name}`; its section is ignored",
                                       composed.locate(f"targets.{name}"),
                                       did_you_mean(name, plugins.targets.names()) or "`mlprism plugins` lists targets",
                                       Severity.WARNING))
    clock.lap("validate")
    # 4. lower
    if shared:
        locations = shared.collect_locations(composed)
    else:
        locations = collect_locations(composed.raw, composed.locate, locate_many=composed.locate_many)
    pipeline = lower(config, composed.raw, spec_file=spec_path.name, overrides=tuple(overrides),
                     choices=composed.choices, locations=locations)
    clock.lap("lower")
    # 5. graph
    pipeline = shared.build_graph(pipeline) if shared else graph_stage.build(pipeline, pipeline.location)
    clock.lap("graph")
    if check_inputs:
        if shared:
            diags = shared.check_inputs(pipeline, spec_path.parent)
        else:
            diags = missing_inputs(pipeline, spec_path.parent) + escaping_paths(pipeline, spec_path.parent)
        if diags:
            raise DiagnosticError(diags)
        clock.lap("inputs")
    # 6. passes
    pipeline = run_passes(pipeline, plugins)
    clock.lap("passes")
    return Compiled(pipeline, warnings, spec_path, clock.laps)


_ENV_MISSING = re.compile(r"Environment variable '([^']+)' not found")
_NOT_CONTAINER = re.compile(r"node `([^`]+)` is not a container and thus cannot contain `([^`]+)`")


def with_default_hint(diag: Diagnostic) -> Diagnostic:
    """`diag` with a hint, when composing (Hydra, OmegaConf) gave it none: every user error has one."""
    if diag.hint or not diag.is_error:
        return diag
    text = diag.message
    hint = None
    if diag.code == "MLP120":
        env = _ENV_MISSING.search(text)
        node = _NOT_CONTAINER.search(text)
        if env:
            hint = (f"set `{env.group(1)}` in the environment, or give a default: "
                    f"`${{oc.env:{env.group(1)},default}}`")
        elif node:
            hint = f"`{node.group(1)}` is a value, not a mapping: refer to it as `${{{node.group(1)}}}`"
        elif "should return a string" in text:
            hint = ("a key named by an inner interpolation must be text: `${params.${params.which}}` needs "
                    "`which: lr`, the name of a param")
        else:
            hint = ("an interpolation names a key of the spec (`${params.NAME}`) or reads the environment "
                    "(`${oc.env:NAME,default}`); write a literal `${` as `\\${`")
    elif diag.code in CODES:
        hint = f"see {diag.code} in docs/reference/error-codes.md; rerun with --debug for the details"
    return replace(diag, hint=hint) if hint else diag


def config_searchpath(plugins: Plugins, spec_dir: Path) -> list[str]:
    """The plugins' Hydra search paths for a spec in `spec_dir`; a plugin returning something else is named."""
    search: list[str] = []
    for plugin, result in call_each(plugins, "mlprism_config_searchpath", spec_dir=spec_dir):
        if not result:
            continue
        if isinstance(result, str) or not isinstance(result, list | tuple) or \
                not all(isinstance(p, str) for p in result):
            raise plugin_error(plugin, f"plugin `{plugin}` returned {type(result).__name__} from "
                               "mlprism_config_searchpath, not a list of search-path URLs")
        search.extend(result)
    return search


def run_passes(pipeline: Pipeline, plugins: Plugins) -> Pipeline:
    hook = plugins.manager.hook
    for impl in hook.mlprism_transform_ir.get_hookimpls():
        try:
            result = impl.function(pipeline=pipeline)
        except DiagnosticError:
            raise
        except Exception as exc:
            raise plugin_error(impl.plugin_name, f"plugin `{impl.plugin_name}` failed in mlprism_transform_ir: "
                               f"{type(exc).__name__}: {exc}", raised=True)
        if result is not None:
            if not isinstance(result, Pipeline):
                raise plugin_error(impl.plugin_name, f"plugin `{impl.plugin_name}` returned "
                                   f"{type(result).__name__} from mlprism_transform_ir, not a Pipeline")
            counts = Counter(step.name for step in result.steps)
            unknown = sorted({n for step in result.steps for n in step.needs if n not in counts})
            twice = sorted(n for n, k in counts.items() if k > 1)
            if unknown or twice:
                what = (f"steps named twice: {', '.join(f'`{n}`' for n in twice)}" if twice else
                        f"`needs` naming no step: {', '.join(f'`{n}`' for n in unknown)}")
                raise plugin_error(impl.plugin_name, f"plugin `{impl.plugin_name}` returned a pipeline "
                                   f"from mlprism_transform_ir with {what}")
            pipeline = graph_stage.build(result, pipeline.location)
    diags = Diagnostics()
    call_each(plugins, "mlprism_validate_ir", pipeline=pipeline, diagnostics=diags)
    diags.raise_if_errors()
    return pipeline


def target_options(pipeline: Pipeline, target: Any) -> dict[str, Any]:
    """The spec's `targets.<name>` section with the schema's top-level defaults filled in."""
    options = dict(pipeline.targets.get(target.name) or {})
    schema = target.options_schema or {}
    for key, prop in (schema.get("properties") or {}).items():
        if key not in options and isinstance(prop, dict) and "default" in prop:
            options[key] = prop["default"]
    return options


@without_gc
def emit(pipeline: Pipeline, target_name: str, plugins: Plugins, project_path: str = ".") -> dict[str, GeneratedFile]:
    from mlprism._version import __version__

    target = plugins.targets.get(target_name)
    caps = capability_errors(pipeline, target_name, target.capabilities,
                             {t.name: t.capabilities for t in plugins.targets})
    if caps:
        raise DiagnosticError(caps)
    ctx = EmitContext(options=target_options(pipeline, target), project_path=project_path,
                      mlprism_version=__version__)
    try:
        files = target.emit(pipeline, ctx)
    except DiagnosticError:
        raise
    except (Exception, SystemExit) as exc:      # sys.exit() in a target is its crash too: not a silent exit 0
        info = plugins.targets.info(target_name)
        raise DiagnosticError([Diagnostic("MLP001", f"target `{target_name}` (plugin `{info.plugin}`) crashed while emitting: "
                                          f"{type(exc).__name__}: {exc}", None,
                                          "this is a bug in the target; rerun with --debug and report it")]) from exc
    return normalize(files, target_name, plugins.targets.info(target_name).plugin)


#: Below this many steps a target emits in milliseconds: forking would cost more than it saves.
PARALLEL_EMIT_MIN_STEPS = 500

# What forked emit workers inherit (set just before the pool forks them; never pickled).
_FORKED: tuple[Pipeline, Plugins, str] | None = None


_Emitted = tuple["dict[str, GeneratedFile] | None", list[Diagnostic], float]


def _emit_timed(pipeline: Pipeline, target_name: str, plugins: Plugins, project_path: str) -> _Emitted:
    start = time.perf_counter()
    try:
        files: dict[str, GeneratedFile] | None = emit(pipeline, target_name, plugins, project_path)
        diags: list[Diagnostic] = []
    except DiagnosticError as exc:
        files, diags = None, exc.diagnostics
    return files, diags, time.perf_counter() - start


def _emit_in_worker(target_name: str) -> _Emitted:
    assert _FORKED is not None
    return _emit_timed(_FORKED[0], target_name, _FORKED[1], _FORKED[2])


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):      # pragma: no cover - not Linux
        return os.cpu_count() or 1


def emit_many(pipeline: Pipeline, names: Sequence[str], plugins: Plugins, project_path: str = ".", *,
              jobs: int | None = None, min_steps: int = PARALLEL_EMIT_MIN_STEPS,
              timings: dict[str, float] | None = None) -> tuple[dict[str, dict[str, GeneratedFile]], list[Diagnostic]]:
    """Emit several targets: ({target: files} for those that succeeded, every target's errors).

    `timings`, when given, gets each target's emission time (`emit <target>`: seconds, measured
    where it ran) and, for parallel emission, the wall time of all of them (`emit`).

    Emitters are pure functions of the IR, so targets can be emitted side by side: with more
    than one target, a pipeline of at least `min_steps` steps and `jobs` > 1 (default: the CPUs
    this process may use), each target is emitted in a worker process forked from this one
    (the IR is inherited, not copied or pickled; only the generated files come back). The
    bytes are the same as emitting one after the other. Serial where fork is unavailable or
    this process runs other threads (forking those is unsafe).
    """
    global _FORKED
    import threading

    jobs = available_cpus() if jobs is None else jobs
    workers = min(jobs, len(names))
    parallel = (workers > 1 and len(pipeline.steps) >= min_steps and threading.active_count() == 1
                and hasattr(os, "fork"))
    results: dict[str, _Emitted] = {}
    start = time.perf_counter()
    if parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _FORKED = (pipeline, plugins, project_path)
        feature_uses(pipeline)       # every target's emit asks (MLP302): answered once here, inherited
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for name, result in zip(names, pool.map(_emit_in_worker, names), strict=True):
                    results[name] = result
        finally:
            _FORKED = None
    else:
        for name in names:
            results[name] = _emit_timed(pipeline, name, plugins, project_path)
    if timings is not None:
        timings.update({f"emit {name}": results[name][2] for name in names})
        if parallel:
            timings[f"emit ({workers} workers)"] = time.perf_counter() - start
    outputs = {name: files for name, (files, _, _) in results.items() if files is not None}
    errors = [d for name in names for d in results[name][1]]
    return outputs, errors


def project_path_for(spec_path: Path) -> str:
    """The spec's directory relative to the enclosing git repository's root, or `.`."""
    spec_dir = spec_path.parent.resolve()
    for parent in [spec_dir, *spec_dir.parents]:
        if (parent / ".git").exists():
            rel = spec_dir.relative_to(parent).as_posix()
            return rel or "."
    return "."
