"""Stage 2 — compose: Hydra's Compose API plus OmegaConf interpolation.

The only module that imports Hydra. The spec is Hydra's primary config; its
``defaults:`` list pulls config groups from ``conf/`` beside it (and from search
paths plugins contribute); overrides use Hydra's grammar. Hydra's global state
is cleared after every compose, so two compiles in one process never leak.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, Location, did_you_mean
from mlprism._internal.load import Loaded, SourceMap, load_file

_INTERP = re.compile(r"\$\{")


@dataclass
class Composed:
    config: dict[str, Any]                 # interpolations resolved
    raw: dict[str, Any]                    # as composed, interpolations kept
    spec_path: Path
    overrides: tuple[str, ...]
    choices: dict[str, str]
    maps: list[SourceMap] = field(default_factory=list)   # in lookup order (highest precedence first)

    def locate(self, dotted: str) -> Location | None:
        return locate(dotted, self.overrides, self.maps)


def override_key(override: str) -> str:
    key = override.split("=", 1)[0]
    return key.lstrip("+~").split("@", 1)[0]


def locate(dotted: str, overrides: Sequence[str], maps: Sequence[SourceMap]) -> Location | None:
    """The most precise known origin of a dotted key: an override, else a file position."""
    for ov in reversed(overrides):
        key = override_key(ov)
        if dotted == key or dotted.startswith(key + ".") or (key.startswith(dotted + ".") and "=" in ov):
            return Location(override=ov)
    probe = dotted
    while True:
        for smap in maps:
            loc = smap.lookup(probe)
            if loc is not None:
                return loc
        if not probe:
            return None
        probe = probe.rpartition(".")[0]


def _quote_hydra(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_overrides(overrides: Sequence[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    diags = []
    for ov in overrides:
        if ov.startswith("hydra.") or ov.startswith(("+hydra", "~hydra")):
            diags.append(Diagnostic("MLP110", "overrides of Hydra's own settings are not allowed",
                                    Location(override=ov), "override keys of the spec, e.g. `params.lr=0.1`"))
            continue
        try:
            parser.parse_overrides([ov])
        except OverrideParseException as exc:
            msg = str(exc).splitlines()[0] if str(exc) else "cannot parse"
            diags.append(Diagnostic("MLP110", f"bad override: {msg}", Location(override=ov),
                                    "use KEY=VALUE (e.g. `params.lr=0.1`), `+KEY=VALUE` to add, `~KEY` to delete; "
                                    "quote values with special characters"))
    if diags:
        raise DiagnosticError(diags)


def compose(spec_path: Path, overrides: Sequence[str] = (), search_paths: Sequence[str] = (),
            display: str | None = None, loaded: Loaded | None = None) -> Composed:
    spec_path = spec_path.resolve() if not spec_path.is_absolute() else spec_path
    display = display or str(spec_path)
    loaded = loaded or load_file(spec_path, display)
    if not isinstance(loaded.data, dict):
        raise DiagnosticError([Diagnostic("MLP201", "the spec must be a mapping of keys (apiVersion, name, steps, ...)",
                                          Location(display, 1, 1))])
    if spec_path.suffix != ".yaml":
        raise DiagnosticError([Diagnostic("MLP102", f"{display}: a spec file name must end in `.yaml`", None,
                                          f"rename it to `{spec_path.stem}.yaml`")])
    _check_overrides(overrides)
    spec_dir = spec_path.parent
    conf = spec_dir / "conf"
    searchpath = [*([f"file://{conf}"] if conf.is_dir() else []), *search_paths]

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    hydra_overrides = [f"hydra.searchpath=[{','.join(_quote_hydra(p) for p in searchpath)}]", *overrides]
    if not searchpath:
        hydra_overrides = list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(spec_dir), version_base=None):
            cfg = hydra_compose(config_name=spec_path.stem, overrides=hydra_overrides, return_hydra_config=True)
    except MissingConfigException as exc:
        raise DiagnosticError([_missing_config(exc, overrides, loaded, display)])
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as exc:
        raise DiagnosticError([_composition_error(exc, overrides, loaded, display)])
    finally:
        GlobalHydra.instance().clear()

    choices = {k: str(v) for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not k.startswith("hydra/") and v is not None}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    raw = OmegaConf.to_container(cfg, resolve=False)
    maps = _group_maps(choices, searchpath, spec_path, loaded, display)
    composed = Composed({}, raw, spec_path, tuple(overrides), choices, maps)
    try:
        composed.config = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        raise DiagnosticError(_interpolation_errors(cfg, raw, composed))
    return composed


def _group_maps(choices: dict[str, str], searchpath: list[str], spec_path: Path, loaded: Loaded,
                display: str) -> list[SourceMap]:
    """Source maps of the spec and every selected config group file, highest precedence first."""
    group_maps: list[SourceMap] = []
    spec_dir = spec_path.parent
    for group, option in choices.items():
        for sp in searchpath:
            base = Path(sp.removeprefix("file://"))
            f = base / group / f"{option}.yaml"
            if f.is_file():
                try:
                    rel = str(f.relative_to(spec_dir))
                except ValueError:
                    rel = str(f)
                text = f.read_text(encoding="utf-8")
                try:
                    from mlprism._internal.load import load_text
                    sub = load_text(text, rel)
                except DiagnosticError:
                    raise
                header = re.search(r"^#\s*@package\s+(\S+)", text, re.M)
                package = header.group(1) if header else group.replace("/", ".")
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
    return out


def _culprit(message: str, overrides: Sequence[str]) -> str | None:
    for ov in overrides:
        if ov in message or override_key(ov) in message:
            return ov
    return overrides[-1] if len(overrides) == 1 else None


def _missing_config(exc: Exception, overrides: Sequence[str], loaded: Loaded, display: str) -> Diagnostic:
    msg = str(exc).splitlines()[0]
    m = re.search(r"Could not find '([^']+)'", msg)
    wanted = m.group(1) if m else ""
    group, _, option = wanted.rpartition("/")
    options_m = re.search(r"Available options:\s*(.*)", str(exc), re.S)
    options = re.findall(r"\b[\w-]+\b", options_m.group(1)) if options_m else []
    hint = did_you_mean(option, options) if option else None
    if not hint:
        hint = (f"available options for `{group}`: {', '.join(options)}" if options
                else "config groups live in `conf/<group>/<option>.yaml` beside the spec")
    ov = _culprit(msg, [o for o in overrides if "=" in o and "." not in override_key(o)] or overrides)
    if ov is not None and group and override_key(ov) == group:
        return Diagnostic("MLP112", f"config group option not found: {msg}", Location(override=ov), hint)
    loc = loaded.source_map.lookup("defaults") or Location(display)
    return Diagnostic("MLP112", f"config group option not found: {msg}", loc, hint)


def _composition_error(exc: Exception, overrides: Sequence[str], loaded: Loaded, display: str) -> Diagnostic:
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    cause = exc.__cause__
    detail = str(cause).splitlines()[0] if cause else ""
    ov = _culprit(text + detail, overrides)
    if "not in struct" in text + detail or "Could not override" in text or "Could not append" in text:
        key = override_key(ov) if ov else ""
        hint = f"use `+{key}=...` to add a new key" if key else "use `+KEY=VALUE` to add a new key"
        return Diagnostic("MLP111", f"{first}{': ' + detail if detail and detail not in first else ''}",
                          Location(override=ov) if ov else Location(display), hint)
    if "Could not delete" in text:
        return Diagnostic("MLP111", first, Location(override=ov) if ov else Location(display),
                          "`~KEY` deletes a key that exists")
    return Diagnostic("MLP113", f"{first}{': ' + detail if detail and detail not in first else ''}",
                      Location(override=ov) if ov else Location(display))


def _leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_leaves(v, (*path, str(k))))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_leaves(v, (*path, str(i))))
    elif isinstance(value, str) and _INTERP.search(value):
        out.append((path, value))
    return out


def _interpolation_errors(cfg: Any, raw: dict[str, Any], composed: Composed) -> list[Diagnostic]:
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError, OmegaConfBaseException

    diags: list[Diagnostic] = []
    for path, text in _leaves(raw):
        dotted = ".".join(path)
        try:
            node: Any = cfg
            for part in path:
                node = node[int(part)] if isinstance(node, list) or OmegaConf.is_list(node) else node[part]
            OmegaConf.to_container(OmegaConf.create({"v": node}), resolve=True) if OmegaConf.is_config(node) else None
        except GrammarParseError:
            diags.append(Diagnostic(
                "MLP121", f"`{dotted}`: `{_clip(text)}` is not a valid interpolation",
                composed.locate(dotted),
                "to keep `${...}` as literal text (e.g. a GitHub expression `${{ }}`), escape it as `\\${`"))
        except OmegaConfBaseException as exc:
            reason = str(exc).splitlines()[0]
            m = re.search(r"Interpolation key '([^']+)' not found", reason)
            hint = None
            if m:
                missing = m.group(1)
                parent, _, leaf = missing.rpartition(".")
                try:
                    siblings = OmegaConf.select(cfg, parent).keys() if parent else cfg.keys()
                    hint = did_you_mean(leaf, [str(s) for s in siblings])
                except Exception:
                    hint = None
                hint = hint or f"`{missing}` is not defined; interpolations name keys of the spec, e.g. `${{params.lr}}`"
            diags.append(Diagnostic("MLP120", f"`{dotted}`: cannot resolve `{_clip(text)}`: {reason}",
                                    composed.locate(dotted), hint))
    if not diags:
        diags.append(Diagnostic("MLP120", "an interpolation cannot be resolved", None))
    return diags


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


Resolver = Callable[[str], Location | None]
