"""Plugin loading: entry points in the `mlprism` group, exactly like third-party ones."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mlprism import hookspecs
from mlprism._internal.target import TargetRegistry
from mlprism.diagnostics import Diagnostic, DiagnosticError, Severity

DISABLE_ENV = "MLPRISM_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    targets: TargetRegistry
    infos: list[PluginInfo] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)


_ENTRY_POINTS: list[Any] | None = None
_DISTS: dict[int, tuple[Any, tuple[str, str]]] = {}


def _entry_points() -> list[Any]:
    """The `mlprism` entry points, by name: looked up once per process.

    Scanning the installed distributions costs milliseconds; plugin loading and the IR cache's
    key (``runtime.ircache``) both need them, and what this process compiles with does not
    change when packages are installed while it runs.
    """
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        from importlib.metadata import entry_points

        _ENTRY_POINTS = sorted(entry_points(group="mlprism"), key=lambda ep: ep.name)
    return _ENTRY_POINTS


def dist_info(ep: Any) -> tuple[str, str] | None:
    """(name, version) of the distribution holding entry point `ep` (None: none), its metadata parsed once."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    hit = _DISTS.get(id(dist))      # by identity (kept alive here): distributions need not be hashable
    if hit is not None and hit[0] is dist:
        return hit[1]
    metadata = dist.metadata         # each of dist.name and dist.version would parse it again
    info = (metadata["Name"], metadata["Version"])
    _DISTS[id(dist)] = (dist, info)
    return info


def load_plugins(options: Sequence[str] = (), extra: Sequence[object] = ()) -> Plugins:
    """Load plugins. `options` are `-p` values: `no:NAME` blocks one, `NAME` forces one in."""
    pm = pluggy.PluginManager("mlprism")
    pm.add_hookspecs(hookspecs)
    blocked = {o[3:] for o in options if o.startswith("no:")}
    wanted = [o for o in options if not o.startswith("no:")]
    autoload = os.environ.get(DISABLE_ENV, "") in ("", "0", "false")
    plugins = Plugins(pm, TargetRegistry())
    eps = {ep.name: ep for ep in _entry_points()}
    to_load: list[str] = [n for n in eps if n not in blocked] if autoload else []
    for name in wanted:
        if name not in to_load and name not in blocked:
            to_load.append(name)
    for name in to_load:
        ep = eps.get(name)
        try:
            if ep is not None:
                obj = ep.load()
                dist, version = dist_info(ep) or ("?", "?")
                module = ep.value
            else:
                obj = importlib.import_module(name)
                dist, version, module = name, getattr(obj, "__version__", "?"), name
            pm.register(obj, name=name)
        except Exception as exc:  # a broken third-party plugin must not crash mlprism
            plugins.targets._failed.append(name)
            plugins.problems.append(Diagnostic(
                "MLP301", f"plugin `{name}` failed to load: {type(exc).__name__}: {exc}", None,
                f"reinstall or fix it, or skip it with `-p no:{name}`", Severity.WARNING))
            continue
        plugins.infos.append(PluginInfo(name, module, dist, version))
    for i, obj in enumerate(extra):
        pm.register(obj, name=f"extra-{i}")
    for impl in pm.hook.mlprism_register_targets.get_hookimpls():
        info = next((p for p in plugins.infos if p.name == impl.plugin_name), None)
        plugins.targets._current_plugin = impl.plugin_name
        plugins.targets._current_version = info.version if info else "?"
        before = dict(plugins.targets._targets)
        try:
            impl.function(registry=plugins.targets)
        except Exception as exc:
            plugins.targets._targets = before       # nothing of a failed registration stays (docs/plugins.md)
            plugins.targets._failed.append(impl.plugin_name)
            plugins.problems.append(Diagnostic(
                "MLP301", f"plugin `{impl.plugin_name}` failed to register its targets: {type(exc).__name__}: {exc}",
                None, f"skip it with `-p no:{impl.plugin_name}`", Severity.WARNING))
    return plugins


def plugin_error(plugin: str, message: str, *, raised: bool = False, why: str = "") -> DiagnosticError:
    """MLP301 naming `plugin`: one of its hooks raised (`raised`), or returned what mlprism cannot use."""
    hint = f"skip it with `-p no:{plugin}`" if raised else f"{why}fix the plugin, or skip it with `-p no:{plugin}`"
    return DiagnosticError([Diagnostic("MLP301", message, None, hint)])


def call_each(plugins: Plugins, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of `hook` in pluggy's order: [(plugin name, result)].

    Unlike calling the hook, a plugin that raises is named: an MLP301 error with the
    `-p no:NAME` hint, never an anonymous internal error.
    """
    results: list[tuple[str, Any]] = []
    for impl in reversed(getattr(plugins.manager.hook, hook).get_hookimpls()):
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
        except DiagnosticError:
            raise
        except Exception as exc:
            raise plugin_error(impl.plugin_name, f"plugin `{impl.plugin_name}` failed in {hook}: "
                               f"{type(exc).__name__}: {exc}", raised=True) from exc
        results.append((impl.plugin_name, result))
    return results


def schema_sections(plugins: Plugins) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for target in plugins.targets:
        if target.options_schema is not None:
            sections[target.name] = target.options_schema
            owners[target.name] = f"target `{target.name}` (plugin `{plugins.targets.info(target.name).plugin}`)"
    for plugin, result in call_each(plugins, "mlprism_schema_sections"):
        if not result:
            continue
        if not isinstance(result, Mapping) or not all(isinstance(k, str) and isinstance(v, Mapping)
                                                      for k, v in result.items()):
            raise plugin_error(plugin, f"plugin `{plugin}` returned {type(result).__name__} from "
                               "mlprism_schema_sections, not {section name: JSON Schema}")
        for name, schema in result.items():
            if name in owners:
                raise plugin_error(plugin, f"plugin `{plugin}` contributes a schema for `targets.{name}`, which "
                                   f"{owners[name]} already defines", why="a section has one schema: ")
            sections[name] = dict(schema)
            owners[name] = f"plugin `{plugin}`"
    return sections
